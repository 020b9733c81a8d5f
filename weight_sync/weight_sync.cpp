#include "weight_sync/weight_sync.h"

#include <ATen/ATen.h>

#include <utility>

#include "core/check.h"
#include "generator/engine.h"

namespace llamarl {
namespace {

constexpr int kHeaderTag = 0x5702;

}  // namespace

WeightReceiver::WeightReceiver(std::shared_ptr<const TransferPlan> plan, int dst_rank,
                               const at::TensorOptions& options)
    : plan_(std::move(plan)), dst_rank_(dst_rank) {
  LLAMARL_CHECK(plan_ != nullptr, "WeightReceiver: the plan is null");
  staging_ = AllocateBuffers(plan_->dst(), dst_rank_, options);
  if (plan_->encoding() == TransferEncoding::kFp8E4m3) staging_scales_ = AllocateScaleBuffers(*plan_, dst_rank_, options);
}

int64_t WeightReceiver::HeldVersion() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return held_version_;
}

int64_t WeightReceiver::StagedVersion() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return staged_version_;
}

int64_t WeightReceiver::ApplyTo(const std::function<void(const std::string&, const at::Tensor&)>& apply) {
  LLAMARL_CHECK(plan_->encoding() == TransferEncoding::kPlain, "WeightReceiver::ApplyTo: the plan is ",
                ToString(plan_->encoding()), ", whose shards need their scales; use ApplyFp8To");
  return ApplyStaged([&](const std::string& name, const at::Tensor& shard, const at::Tensor&) { apply(name, shard); });
}

int64_t WeightReceiver::ApplyFp8To(const Fp8ApplyFn& apply) {
  LLAMARL_CHECK(plan_->encoding() == TransferEncoding::kFp8E4m3, "WeightReceiver::ApplyFp8To: the plan is ",
                ToString(plan_->encoding()), " and has no scales; use ApplyTo");
  return ApplyStaged(apply);
}

int64_t WeightReceiver::UpdateEngine(Engine& engine) {
  LLAMARL_CHECK(plan_->encoding() == TransferEncoding::kPlain, "WeightReceiver::UpdateEngine: the plan is ",
                ToString(plan_->encoding()), "; the engine takes plain shards (build the plan without fp8)");
  std::lock_guard<std::mutex> lock(mutex_);
  if (staged_version_ <= engine.Version()) return engine.Version();
  // The engine copies the shards in before CopyWeightsInto returns; the lock keeps the next receive out
  // of the staging buffers until then.
  std::vector<std::pair<std::string, at::Tensor>> shards;
  const auto& specs = plan_->dst().Rank(dst_rank_).buffers;
  for (size_t i = 0; i < specs.size(); ++i) shards.emplace_back(specs[i].name, staging_[i]);
  CopyWeightsInto(engine, shards, staged_version_);
  held_version_ = staged_version_;
  staged_version_ = -1;
  return engine.Version();
}

int64_t WeightReceiver::ApplyStaged(const Fp8ApplyFn& apply) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (staged_version_ < 0) return held_version_;
  const auto& specs = plan_->dst().Rank(dst_rank_).buffers;
  for (size_t i = 0; i < specs.size(); ++i)
    apply(specs[i].name, staging_[i], staging_scales_.empty() ? at::Tensor() : staging_scales_[i]);
  held_version_ = staged_version_;
  staged_version_ = -1;
  return held_version_;
}

namespace {

// Source rank 0 tells every destination the version and the plan it executes; returns the pushed
// version on every rank of the placement.
int64_t ExchangeHeader(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement,
                       int64_t version, int my_dst, const TransferOptions& options) {
  const int me = comm.Rank(), root = placement.src_ranks[0];
  LLAMARL_CHECK(me != root || version >= 0, "PushWeights: the policy version must be >= 0, got ", version);
  at::Tensor header = at::tensor(std::vector<int64_t>{version, plan.Id()}, at::kLong);
  std::vector<P2POp> ops;
  if (me == root) {
    for (int dst : placement.dst_ranks)
      if (dst != me) ops.push_back(P2POp::Send(header, dst, kHeaderTag));
  } else if (my_dst >= 0) {
    header = at::zeros({2}, at::kLong);
    ops.push_back(P2POp::Recv(header, root, kHeaderTag));
  }
  if (!ops.empty()) comm.SendRecvBatch(ops)->Wait(options.timeout);
  const int64_t pushed = header[0].item<int64_t>(), plan_id = header[1].item<int64_t>();
  LLAMARL_CHECK(plan_id == plan.Id(), "PushWeights: destination rank ", my_dst, " executes plan ", plan.Id(),
                " but source rank 0 sent plan ", plan_id, "; every rank must build the plan from the same layouts ",
                "(same model config, layouts and rank counts)");
  return pushed;
}

}  // namespace

int64_t PushWeights(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement,
                    int64_t version, const std::vector<at::Tensor>& src_buffers, WeightReceiver* receiver,
                    const TransferOptions& options) {
  CheckPlacement(plan, placement, comm);
  const int me = comm.Rank();
  const int my_dst = LayoutRankOf(placement.dst_ranks, me);
  LLAMARL_CHECK(my_dst < 0 || receiver != nullptr, "PushWeights: communicator rank ", me, " is destination rank ",
                my_dst, " of the placement but passed no WeightReceiver");
  LLAMARL_CHECK(receiver == nullptr || receiver->dst_rank() == my_dst, "PushWeights: the receiver is for destination ",
                "rank ", receiver ? receiver->dst_rank() : -1, " but communicator rank ", me, " is destination rank ",
                my_dst);
  const int64_t pushed = ExchangeHeader(comm, plan, placement, version, my_dst, options);
  TransferBuffers buffers{src_buffers, {}, {}};
  std::unique_lock<std::mutex> lock;
  if (receiver) {
    LLAMARL_CHECK(receiver->plan().Id() == plan.Id(), "PushWeights: the receiver was built for plan ",
                  receiver->plan().Id(), ", not for plan ", plan.Id());
    lock = std::unique_lock<std::mutex>(receiver->mutex_);
    buffers.dst = receiver->staging_;
    buffers.dst_scales = receiver->staging_scales_;
  }
  ExecuteTransfer(comm, plan, placement, buffers, options);
  if (receiver) receiver->staged_version_ = pushed;
  return pushed;
}

int64_t PushWeightsIntoEngine(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement,
                              int64_t version, const std::vector<at::Tensor>& src_buffers, Engine& engine,
                              const TransferOptions& options) {
  CheckPlacement(plan, placement, comm);
  const bool fp8 = plan.encoding() == TransferEncoding::kFp8E4m3;
  const int my_dst = LayoutRankOf(placement.dst_ranks, comm.Rank());
  LLAMARL_CHECK(my_dst >= 0, "PushWeightsIntoEngine: communicator rank ", comm.Rank(),
                " is not a destination of the placement; call PushWeights");
  const int64_t pushed = ExchangeHeader(comm, plan, placement, version, my_dst, options);
  TransferBuffers buffers{src_buffers, {}, {}};
  if (pushed <= engine.Version()) {
    // Not newer: received (the transfer is collective) and dropped.
    buffers.dst = AllocateBuffers(plan.dst(), my_dst, at::TensorOptions().device(engine.device()));
    if (fp8) buffers.dst_scales = AllocateScaleBuffers(plan, my_dst, at::TensorOptions().device(engine.device()));
    ExecuteTransfer(comm, plan, placement, buffers, options);
    return engine.Version();
  }
  if (fp8) {
    // The engine's fp8 projections take the bits and their scales in place; the rest is decoded.
    engine.UpdateWeightsFp8(plan.dst().Rank(my_dst).buffers, [&](std::vector<at::Tensor>& data,
                                                                  std::vector<at::Tensor>& scales) {
      buffers.dst = data;
      buffers.dst_scales = scales;
      ExecuteTransfer(comm, plan, placement, buffers, options);
    }, pushed);
    return engine.Version();
  }
  engine.UpdateWeights(plan.dst().Rank(my_dst).buffers, plan.dst().dtype(), [&](std::vector<at::Tensor>& targets) {
    buffers.dst = targets;
    ExecuteTransfer(comm, plan, placement, buffers, options);
  }, pushed);
  return engine.Version();
}

}  // namespace llamarl
