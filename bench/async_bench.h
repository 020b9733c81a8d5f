// `llamarl bench async`: the same recipe for the same number of RL steps, run twice on the same ranks
// in one process:
//   sync   the synchronous colocated baseline (every rank generates its share of the batch, waits
//          for the slowest, trains, then gather-and-broadcast weight sync: DeepSpeed-Chat's design);
//   async  asynchronous split placement (generators never wait for a training step unless the
//          staleness bound forces them; DDMA weight pushes).
// The default recipe (recipes/bench_async.json) has long-tailed generation lengths (a fraction of
// the arithmetic items asks to show every step, and operand counts have a geometric tail), which is
// what makes synchronous batches wait.
#pragma once

#include "core/communicator.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace llamarl::bench {

struct AsyncBenchOptions {
  std::string recipe = "recipes/bench_async.json";  // relative to the working directory
  std::vector<std::string> overrides;  // --set key=value, applied to both runs
  int64_t steps = 0;                   // > 0 replaces the recipe's steps
  std::string run_dir = "runs/bench_async";  // RUN_DIR/warm_start, then RUN_DIR/sync and RUN_DIR/async
  int threads = 0;  // intra-op threads per rank in both modes; 0 = the machine's cores / ranks
};

// When the recipe has an SFT warm start it runs once, colocated on every rank, into
// RUN_DIR/warm_start (exported in f32 to RUN_DIR/warm_start/hf), and both modes start RL from it:
// the same policy at RL step 0, so that what differs afterwards is the mode's doing.
// Both modes train full batches (rollout.prompts_per_step groups every step), so they train the same
// number of samples; what differs is how long it takes and, if a mode were biased, which responses.
//
// Collective over `world` (2 ranks or more). Print-free; rank 0 returns
// {"steps", "ranks", "threads_per_rank", "warm_start": {"sft_steps", "ranks", "dir", "seconds"} (or {}), "sync": {"step_s", "trained_samples", "trained_tokens",
//  "tokens_per_s" (trained), "samples_per_s", "reward_start", "reward_end", "idle_fraction_trainer",
//  "idle_fraction_generator", "response_lengths" (trained samples: {"count", "mean", "p50", "p90",
//  "p99", "max"}), "generated_lengths" (split: every sample generated), "staleness_tokens" (trained
//  tokens by staleness: index = versions behind), "dropped_stale", "stale_trained",
//  "stale_recomputed", "reward_curve": {"train": [[seconds since RL start, reward mean], ...],
//  "eval": [[seconds, held-out reward], ...]}, ...}, "async": {...the same...},
//  "speedup" (async trained tokens/s / sync trained tokens/s), "step_speedup" (sync step_s / async
//  step_s)}; other ranks return an empty object.
nlohmann::json RunAsyncBench(Communicator& world, const AsyncBenchOptions& options = {});

// One mode's figures from a finished run directory (metrics.jsonl and summary.json): the "sync" or
// "async" object above. Throws naming the file when the run has no RL step.
nlohmann::json SummariseBenchRun(const std::string& run_dir);

}  // namespace llamarl::bench
