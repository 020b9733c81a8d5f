// Versioned weight pushes from trainer ranks to generator ranks, on top of ExecuteTransfer.
//
// Ordering contract (where it bites):
//   - Policy version v names the weights after the trainer's v-th optimizer.step() (v = 0: the
//     initial checkpoint). The trainer calls PushWeights(version = v) only after step v returned on
//     every trainer rank and before step v + 1 starts writing the master weights: the push reads the
//     source buffers while it runs, so an optimizer step during a push would tear the weights.
//   - A push lands in the WeightReceiver's staging buffers, never in the weights the generator is
//     decoding with. The generator's loop calls UpdateEngine (or ApplyTo) between two decode steps
//     (the in-flight update, Engine::UpdateWeights: the engine's one way to take new weights). A
//     generator whose own thread executes the push between two decode steps receives it straight
//     into the engine instead (PushWeightsIntoEngine: no staging copy of the weights). From
//     the next decode step on, every sampled token is stamped with the applied version. A rollout that
//     straddles an update therefore carries per-token versions (DESIGN.md, rollouts).
//   - HeldVersion() is the version the generator samples with (-1 before the first apply);
//     StagedVersion() the newest received but not yet applied (-1 when none). A newer push overwrites
//     an unapplied one: the generator only ever applies the newest weights.
//   - Every push carries a header (version, plan id) from source rank 0 to every destination rank; a
//     destination that executes a different plan throws before unpacking anything.
// Thread safety: WeightReceiver's methods may be called from two threads (a receiving thread and the
// decode loop); staging is guarded by a mutex, so ApplyTo waits for a receive in progress and vice
// versa. PushWeights itself uses the communicator and follows its threading rules.
#pragma once

#include "weight_sync/ddma.h"
#include "weight_sync/fp8_scales.h"

#include <functional>
#include <memory>
#include <mutex>
#include <string>

namespace llamarl {

class Engine;

class WeightReceiver {
 public:
  // Staging buffers for destination rank `dst_rank` of the plan, allocated with `options`' device.
  WeightReceiver(std::shared_ptr<const TransferPlan> plan, int dst_rank,
                 const at::TensorOptions& options = at::TensorOptions());

  const TransferPlan& plan() const { return *plan_; }
  int dst_rank() const { return dst_rank_; }
  int64_t HeldVersion() const;
  int64_t StagedVersion() const;

  // Hands every staged buffer to `apply` as (buffer name, shard) — for the tensor-parallel layouts the
  // name is the HF parameter name and the shard has this rank's local shape — then makes the staged
  // version the held one and returns it. Does nothing and returns HeldVersion() when nothing new is
  // staged. `apply` copies what it needs: the shard is reused by the next push. Plain plans only.
  int64_t ApplyTo(const std::function<void(const std::string& name, const at::Tensor& shard)>& apply);
  // The same for fp8 plans (TransferEncoding::kFp8E4m3): the shard holds e4m3fn bits (uint8) and
  // `scales` its float32 scales (per row, or [1] for 1-D parameters), ready for an fp8 GEMM or for
  // kernels::CastFromFp8E4m3(shard, scales, dtype).
  using Fp8ApplyFn = std::function<void(const std::string& name, const at::Tensor& shard, const at::Tensor& scales)>;
  int64_t ApplyFp8To(const Fp8ApplyFn& apply);
  // The in-flight update of a generator: when the staged push is newer than engine.Version(), hands
  // all its shards (this rank's tensor-parallel shards, by HF name) to engine.UpdateWeights with the
  // staged version, which becomes the held one; otherwise changes nothing. Returns engine.Version().
  // Between two Engine::Step() calls only; collective over the engine's TP group like UpdateWeights.
  // Plain plans only.
  int64_t UpdateEngine(Engine& engine);

 private:
  int64_t ApplyStaged(const Fp8ApplyFn& apply);  // scales undefined for plain plans
  friend int64_t PushWeights(Communicator&, const TransferPlan&, const TransferPlacement&, int64_t,
                             const std::vector<at::Tensor>&, WeightReceiver*, const TransferOptions&);
  std::shared_ptr<const TransferPlan> plan_;
  int dst_rank_;
  mutable std::mutex mutex_;
  std::vector<at::Tensor> staging_;
  std::vector<at::Tensor> staging_scales_;  // fp8 plans only
  int64_t held_version_ = -1;
  int64_t staged_version_ = -1;
};

// Collective over the placement's ranks. Sources pass their shards in `src_buffers` (empty on ranks
// that only generate) and `version` (ignored elsewhere: destinations learn it from the header);
// destinations pass their receiver (null on ranks that only train). Returns the pushed version.
int64_t PushWeights(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement,
                    int64_t version, const std::vector<at::Tensor>& src_buffers, WeightReceiver* receiver,
                    const TransferOptions& options = {});

// PushWeights for a destination that receives straight into its engine's parameter storage (the
// transfer is Engine::UpdateWeights's writer), with no staging copy of the weights: the push is the
// in-flight update itself, so it runs on the thread that drives the engine, between two Step()
// calls, collective over the engine's TP group like UpdateWeights. The other ranks of the placement
// call PushWeights in the same collective (a colocated rank passes its source shards here too). A
// push not newer than the engine's version is received into scratch buffers and dropped. An fp8 plan
// (TransferEncoding::kFp8E4m3, destination dtype Byte) goes through Engine::UpdateWeightsFp8: an fp8
// engine receives its projections' bits and scales in place. Returns engine.Version().
int64_t PushWeightsIntoEngine(Communicator& comm, const TransferPlan& plan, const TransferPlacement& placement,
                              int64_t version, const std::vector<at::Tensor>& src_buffers, Engine& engine,
                              const TransferOptions& options = {});

}  // namespace llamarl
