// `llamarl bench train`: tokens/s of a full trainer step (packing, forward, tiled token log-probs,
// loss, backward, gradient reduction, AdamW) for ZeRO-3 sharded training (no activation
// checkpointing), the same with checkpointing (the recompute's cost) and the replicated
// data-parallel baseline, measured in the same run on the same batches, and the fraction of the
// machine's GEMM peak, itself measured in the same run (the best of several large at::mm).
#pragma once

#include "core/communicator.h"
#include "model/llama_config.h"

#include <nlohmann/json.hpp>

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace llamarl::bench {

struct TrainBenchOptions {
  std::string model_dir;            // empty: DefaultTrainBenchConfig() with random weights
  std::string algorithm = "grpo";   // any TrainerConfig algorithm
  int64_t samples_per_rank = 4;     // rollouts per rank per step (groups of 4 straddle ranks)
  int64_t prompt_len = 64;
  int64_t response_len = 192;
  int64_t micro_batch_tokens = 1024;
  int64_t steps = 2;                // timed steps per variant after one warm-up step; the fastest counts
  int64_t gemm_size = 1024;         // n of the n x n x n at::mm (compute dtype) that measures the peak
  uint64_t seed = 0;
  std::string compute_dtype = "float32";        // TrainerConfig::compute_dtype: float32 or bfloat16
  c10::Device device = c10::Device(c10::kCPU);  // every rank's (TrainerConfig::device)
};

// The default benchmark model: Llama-shaped, ~20M parameters (vocab 8192, hidden 384, 10 layers,
// 6 heads, 2 kv heads, tied embeddings).
LlamaConfig DefaultTrainBenchConfig();

// Collective over `dp` (the trainer ranks; one rank works). Print-free; every rank returns the same
// JSON: {"model_params", "model", "ranks", "tokens_per_step", "tokens_per_s" (zero3),
// "baseline_tokens_per_s" (replicated), "speedup_vs_baseline", "step_seconds", "baseline_step_seconds",
// "checkpointed_tokens_per_s" and "checkpointed_step_seconds" (zero3 with activation checkpointing),
// "gemm_gflops" (per rank), "achieved_gflops" (6 * params * tokens / step time, all ranks),
// "fraction_of_peak" (achieved / (gemm_gflops * ranks)), "threads", and the options}. Throws naming
// the option when one is out of range.
nlohmann::json RunTrainBench(Communicator& dp, const TrainBenchOptions& options = {});

}  // namespace llamarl::bench
