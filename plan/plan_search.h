// The placement search of `llamarl plan`: for a model, a GPU profile and a GPU count it evaluates
// every asynchronous split placement (G GPUs generate with tensor parallelism TP in bf16 or fp8,
// the other N - G train under ZeRO-3/HSDP, with or without activation checkpointing) and every
// synchronous colocated one (all N GPUs generate, then train, with the trainer state kept on the
// GPU or offloaded to the host), keeps the fastest of each that fits, and explains the rest.
// Step time of the async design: max(generate, train) + DDMA weight push (neither side runs during
// the push; max_policy_lag >= 1 lets generation of step k+1 overlap training on step k).
// Step time of the sync design: generate + train + reshard trainer shards into the generator layout
// + offload and reload of the trainer state when it does not stay on the GPU.
// LibTorch-free.
#pragma once

#include "plan/plan_cost.h"

#include <optional>
#include <string>
#include <vector>

namespace llamarl {

struct PlanRequest {
  PlanModel model;
  HardwareProfile hardware;
  PlanAssumptions assumptions;
  int64_t num_gpus = 0;
  std::vector<WeightDtype> generator_dtypes;  // empty: bf16, and fp8 where the hardware has it
};

struct AsyncPlan {
  GeneratorSetup generator_setup;
  TrainerSetup trainer_setup;
  GeneratorCost generator;
  TrainerCost trainer;
  WeightSyncCost weight_sync;
  double step_s = 0;
  std::string Describe() const;  // "8 generate (8 x TP=1 fp8) + 8 train (ZeRO-3/8, ckpt)"
};

struct SyncPlan {
  GeneratorSetup generator_setup;  // all GPUs
  TrainerSetup trainer_setup;      // the same GPUs
  bool offload = false;            // trainer state moved to host memory while generating
  GeneratorCost generator;
  TrainerCost trainer;
  double reshard_s = 0, offload_s = 0, step_s = 0;
  std::string Describe() const;
};

// Candidates that did not fit, grouped by which part failed; `example` is the first one's numbers.
struct Rejection {
  std::string kind;
  int64_t count = 0;
  std::string example;
};

struct PlanResult {
  std::optional<AsyncPlan> async;
  std::optional<SyncPlan> sync;
  std::vector<AsyncPlan> async_runners_up;  // the next fastest split placements that fit
  std::vector<Rejection> rejections;
  int64_t num_candidates = 0;
  std::vector<std::string> advice;  // set when a design does not fit: what would
  bool Fits() const { return async.has_value() || sync.has_value(); }
  double Speedup() const;  // sync step / async step; 0 unless both fit
};

PlanResult SearchPlan(const PlanRequest& request);

// TP sizes a generator may use: powers of two inside one node that split the attention heads and
// either split or replicate the KV heads.
std::vector<int64_t> TensorParallelSizes(const LlamaConfig& config, const HardwareProfile& hw);
// ZeRO-3 shard group sizes for `num_gpus` trainers: divisors that are whole nodes (or the node
// fraction when fewer GPUs than a node), and num_gpus itself.
std::vector<int64_t> ShardGroupSizes(int64_t num_gpus, const HardwareProfile& hw);

}  // namespace llamarl
