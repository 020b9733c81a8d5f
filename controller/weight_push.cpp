#include "controller/weight_push.h"

#include <ATen/ATen.h>

#include "core/check.h"
#include "generator/engine.h"
#include "model/llama_config.h"

namespace llamarl::controller {

ReplicaWeightSync::ReplicaWeightSync(Communicator& world, const LlamaConfig& config, const Placement& placement,
                                     bool baseline, std::chrono::milliseconds timeout,
                                     const at::TensorOptions& generator, bool generator_fp8)
    : world_(world), placement_(placement), baseline_(baseline), timeout_(timeout), device_(generator.device()) {
  const bool fp8 = generator_fp8 && !baseline;  // the baseline moves plain dtypes only
  const at::ScalarType wire_dtype = fp8 ? at::kByte : generator.dtype().toScalarType();
  ShardLayout src = ZeroFlatLayout(LlamaParamSpecs(config), placement.num_trainers, at::kFloat);
  ShardLayout dst = TensorParallelLayout(config, TensorParallelOptions{placement.tp_size, wire_dtype, true});
  plan_ = TransferPlan::Build(src, dst, fp8 ? TransferEncoding::kFp8E4m3 : TransferEncoding::kPlain);
  for (int r = 0; r < placement.NumReplicas(); ++r) {
    replica_placements_.push_back(TransferPlacement{placement.TrainerRanks(), placement.ReplicaRanks(r)});
    if (baseline_) baselines_.push_back(std::make_unique<GatherBroadcastSync>(world, plan_, replica_placements_.back()));
  }
}

ReplicaWeightSync::~ReplicaWeightSync() = default;

int64_t ReplicaWeightSync::PushReplica(int replica, int64_t version, const at::Tensor* flat_shard, Engine* engine) {
  if (version == 0) {
    LLAMARL_ASSERT(!engine || engine->Version() == 0, "a push of version 0 to an engine at version ", engine->Version());
    return version;
  }
  const TransferPlacement& where = replica_placements_[size_t(replica)];
  if (!baseline_) {
    TransferOptions options;
    options.timeout = timeout_;
    std::vector<at::Tensor> src;
    if (flat_shard) src.push_back(*flat_shard);
    // A generator receives straight into its engine's weights: its thread runs this between decode
    // steps, so no staging copy of the weights is needed.
    if (engine) return PushWeightsIntoEngine(world_, *plan_, where, version, src, *engine, options);
    PushWeights(world_, *plan_, where, version, src, nullptr, options);
    return version;
  }
  TransferBuffers buffers;
  if (flat_shard) buffers.src.push_back(*flat_shard);
  const int dst_rank = LayoutRankOf(where.dst_ranks, world_.Rank());
  if (engine) buffers.dst = AllocateBuffers(plan_->dst(), dst_rank, at::TensorOptions().device(device_));
  baselines_[size_t(replica)]->Run(buffers, timeout_);
  if (!engine) return version;
  // The baseline carries no version header: every rank of the synchronous loop knows it.
  std::vector<std::pair<std::string, at::Tensor>> shards;
  const auto& specs = plan_->dst().Rank(dst_rank).buffers;
  for (size_t i = 0; i < specs.size(); ++i) shards.emplace_back(specs[i].name, buffers.dst[i]);
  CopyWeightsInto(*engine, shards, version);
  return engine->Version();
}

}  // namespace llamarl::controller
