// What the training side of every placement shares: the job context, building the Trainer (SFT warm
// start or resume from a checkpoint), checkpoints with the controller's state, and the per-step
// metrics row aggregated over the trainer ranks.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "controller/dataset.h"
#include "controller/job.h"
#include "controller/length_histogram.h"
#include "controller/recipe.h"
#include "controller/rollout.h"
#include "controller/run_dir.h"
#include "core/communicator.h"
#include "report/trace.h"
#include "trainer/trainer.h"

namespace llamarl {
class MetricsWriter;
}  // namespace llamarl

namespace llamarl::controller {

inline double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Everything a role needs, built identically on every rank from the recipe.
struct JobContext {
  Communicator& world;
  RecipeConfig recipe;
  Placement placement;
  LlamaConfig config;
  Tokenizer tokenizer;
  DatasetSplits data;
  JobTimeouts timeouts;
  GroupRouting routing;
  std::string resume_dir;         // non-empty: continue the run in this directory ...
  std::string resume_checkpoint;  // ... from this checkpoint (the newest whole one, controller/run_dir.h)
  c10::Device device = c10::Device(c10::kCPU);  // where this rank's tensors live (RunOptions::device)
  MetricsWriter* metrics = nullptr;  // the controller's (null on other ranks)
  Tracer* tracer = nullptr;          // this rank's
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();

  double ElapsedS() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  const std::vector<int64_t>& eos_ids() const { return config.eos_token_ids; }
  bool IsController() const { return world.Rank() == placement.FirstTrainer(); }
};

// The phase this thread is in ("generate", "train", "sync", "wait", ...), for failure messages; the
// scope also records a trace span when the job has a tracer and `trace` is true (false for short
// bookkeeping such as writing metrics, named only so that its failures say where they happened).
class ScopedPhase {
 public:
  ScopedPhase(JobContext& job, const char* phase, bool trace = true);
  ~ScopedPhase();
  ScopedPhase(const ScopedPhase&) = delete;
  ScopedPhase& operator=(const ScopedPhase&) = delete;

 private:
  const char* previous_;
  int uncaught_;
  std::unique_ptr<Tracer::Span> span_;
};
// The step this thread works on (`kind` "RL" or "SFT"), for failure messages. Inside it, work
// outside a named phase is in phase "rl" / "sft" rather than "startup".
class ScopedStep {
 public:
  ScopedStep(const char* kind, int64_t step);
  ~ScopedStep();
  ScopedStep(const ScopedStep&) = delete;
  ScopedStep& operator=(const ScopedStep&) = delete;

 private:
  const char* previous_kind_;
  const char* previous_phase_;
  int64_t previous_step_;
  int uncaught_;
};
// The innermost phase an exception escaped from, else the current one.
const char* CurrentPhase();
// " at RL step 41" for the step an exception escaped from (else the current one); "" outside steps.
std::string CurrentStepText();
// Forgets the phase and step a previous run failed in (RunTraining calls it first).
void ResetPhase();

// Where RL starts: a fresh run after its warm start, or the step after a checkpoint.
struct TrainingStart {
  std::unique_ptr<Trainer> trainer;
  int64_t rl_step = 0;  // first RL step to run
  Cursor cursor;        // the dataset cursor at the start of rl_step
  bool resumed = false;
  Json extra;           // the checkpoint's controller state (SaveRunCheckpoint), when resumed
};

// Collective over `dp` (the trainer ranks). Resumes from job.resume_checkpoint when set; otherwise runs recipe.sft.steps of SFT (written to metrics with phase
// "sft") and builds the RL trainer from the warm-started weights.
// Reads each rank's shard from `weights`; after an SFT warm start `weights` becomes the warm-started
// model (which a colocated engine then loads).
TrainingStart StartTraining(JobContext& job, Communicator& dp, LlamaWeightSource& weights);

// RUN_DIR/checkpoints/step_<rl_step>: the trainer's atomic checkpoint with {"rl_step", "cursor"} as
// extra. Collective over dp; the controller deletes all but the newest recipe.checkpoint.keep.
// `parked`: the finished groups waiting for the trainer (async.deterministic), saved as
// kParkedGroupsFile with {"parked": {"groups": n, "next_index": admission index after them}} in extra.
// Returns the checkpoint's directory.
std::string SaveRunCheckpoint(JobContext& job, Trainer& trainer, int64_t next_rl_step, const Cursor& cursor,
                              const std::vector<RolloutGroup>* parked = nullptr, int64_t next_index = 0);
constexpr const char* kParkedGroupsFile = "parked_groups.bin";
// The groups a checkpoint's kParkedGroupsFile holds (count, then per group its byte size and its
// EncodeRolloutGroup bytes); throws naming the file when it is malformed.
std::vector<RolloutGroup> ReadParkedGroups(const std::string& checkpoint_dir);

// Per-step training-side timings of one rank (seconds).
struct StepTimings {
  double wait_s = 0;   // waiting for rollouts (split) / generating (colocated)
  double gen_s = 0;    // generation (colocated) or mean group latency (split)
  double score_s = 0;
  double train_s = 0;
  double sync_s = 0;
};

// async.on_stale "recompute": replaces the log-probs of `groups`' samples with the trainer's current
// policy's (Trainer::ScoreLogprobs), so the step treats them as sampled by it. Collective over the
// trainer ranks (a rank with nothing to rescore still takes part).
void RescoreLogprobs(JobContext& job, Trainer& trainer, const std::vector<RolloutGroup*>& groups);

// One optimizer step on the groups of RL step `step`, traced as the "train" phase; adds its seconds
// to timings->train_s. At recipe.debug.nan_at_step every reward becomes NaN, so the loss and the
// gradient are not finite and the trainer's skip-and-count path runs (a test hook).
TrainStepMetrics TrainOnGroups(JobContext& job, Trainer& trainer, const std::vector<RolloutGroup>& groups,
                               int64_t step, StepTimings* timings);

// The metrics row of one RL step (contract in report/metrics.h), aggregated over dp; collective.
Json StepMetricsRow(Communicator& dp, const std::vector<RolloutGroup>& groups, const StalenessStats& staleness,
                    const TrainStepMetrics& train, const StepTimings& timings);

// Collective over `dp`: each dp rank's peak resident memory since its previous call (the start for the
// first), as {"peak_rss_bytes_rank<world rank>": bytes, ...} plus "peak_rss_bytes" (their max); each
// rank then starts a new window (core/process_memory.h).
Json PeakRssRow(Communicator& dp, int world_rank);

// Every rank's histogram summed (collective over `comm`): e.g. the lengths of all samples the
// ranks trained on. The counts travel as one tensor as long as the longest rank's.
LengthHistogram SumOverRanks(Communicator& comm, const LengthHistogram& local, std::chrono::milliseconds timeout);

// Mean of per-replica (sum, count) evaluation results, with the sums of the eval.samples scores.
struct EvalTally {
  double sum = 0, pass_at_k_sum = 0, mean_at_k_sum = 0;
  int64_t count = 0;
  int64_t replicas = 0;
  double Mean() const { return count > 0 ? sum / double(count) : 0.0; }
  // {"eval_reward_mean"} and, when eval.samples k > 0, {"eval_pass_at_k", "eval_mean_at_k", "eval_samples"}.
  Json ToJson(int64_t samples) const;
};

}  // namespace llamarl::controller
