// Weight pushes from the trainer ranks to every generator replica: the trainers' ZeRO flat shards
// (ZeroFlatLayout over the trainer ranks, f32) to each replica's tensor-parallel shards
// (TensorParallelLayout, f32), one push per replica in replica order.
//   DDMA (weight_sync/weight_sync.h): every trainer shard writes straight into the generator shards
//   that need its bytes, received into the engine's own weights (PushWeightsIntoEngine) by the
//   generator's thread between two decode steps.
//   Baseline (weight_sync/baseline.h, the synchronous colocated mode): gather every parameter on the
//   first trainer rank and broadcast it, then apply.
//
// Ordering: a push of version v happens after Trainer::Step returned v on every trainer rank and
// before the next Step (weight_sync/weight_sync.h); the engine stamps every later token with v.
// Collective: the trainer ranks and the replica's ranks call PushReplica(r) together.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <memory>
#include <vector>

#include "controller/recipe.h"
#include "core/communicator.h"
#include "weight_sync/baseline.h"
#include "weight_sync/weight_sync.h"

namespace llamarl {
class Engine;
struct LlamaConfig;
}  // namespace llamarl

namespace llamarl::controller {

class ReplicaWeightSync {
 public:
  // Collective over `world` (the baseline splits broadcast groups). `baseline` picks gather-broadcast.
  // Weights travel in `generator`'s dtype (the engines' compute dtype) to its device (the job's): the
  // trainers' f32 shards are converted as they are sent. With `generator_fp8` (generator.weight_dtype
  // float8_e4m3) DDMA sends e4m3fn bits with per-row scales of the full weights (an fp8 plan), which
  // the engines' fp8 projections receive in place; the baseline sends `generator`'s dtype and the
  // engines quantise on receipt.
  ReplicaWeightSync(Communicator& world, const LlamaConfig& config, const Placement& placement, bool baseline,
                    std::chrono::milliseconds timeout, const at::TensorOptions& generator = at::TensorOptions(),
                    bool generator_fp8 = false);
  ~ReplicaWeightSync();

  // `flat_shard`: this rank's trainer shard (null on generator-only ranks); `engine`: this rank's
  // engine when it belongs to replica `replica` (null otherwise). Returns the engine's version after
  // applying (or `version` on trainer-only ranks).
  // Version 0 is the recipe's checkpoint as loaded, which every engine loaded itself at version 0
  // (no warm start, no resume): every rank skips that push alike, so no rank moves or stages the
  // model's bytes for it (it cost a generator a whole model-sized receive buffer at start-up).
  int64_t PushReplica(int replica, int64_t version, const at::Tensor* flat_shard, Engine* engine);

 private:
  Communicator& world_;
  Placement placement_;
  bool baseline_;
  std::chrono::milliseconds timeout_;
  c10::Device device_;  // where the generators hold the weights
  std::shared_ptr<const TransferPlan> plan_;
  std::vector<TransferPlacement> replica_placements_;
  std::vector<std::unique_ptr<GatherBroadcastSync>> baselines_;  // one per replica (baseline mode)
};

}  // namespace llamarl::controller
