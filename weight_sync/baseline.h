// The weight sync of systems without DDMA, kept as the benchmark's baseline: for every parameter in
// turn, the source ranks send their pieces to source rank 0, which assembles the full tensor, casts it
// to the destination dtype and broadcasts it to every destination rank; each destination then keeps
// its own slice. Everything funnels through one rank, one parameter at a time.
//
// Construction is collective over `comm` (it splits off the broadcast group: source rank 0 plus the
// destination ranks). Run is collective over the placement's ranks.
#pragma once

#include "weight_sync/ddma.h"

#include <memory>

namespace llamarl {

class GatherBroadcastSync {
 public:
  GatherBroadcastSync(Communicator& comm, std::shared_ptr<const TransferPlan> plan, TransferPlacement placement);
  // Same buffers and result as ExecuteTransfer.
  void Run(TransferBuffers& buffers, std::chrono::milliseconds timeout = std::chrono::milliseconds::max());

 private:
  at::Tensor GatherOnRoot(int64_t param, const std::vector<at::Tensor>& src, std::chrono::milliseconds timeout);

  Communicator& comm_;
  std::shared_ptr<const TransferPlan> plan_;
  TransferPlacement placement_;
  std::unique_ptr<Communicator> bcast_;  // source rank 0 (its rank 0) and the destinations; null elsewhere
  int my_src_ = -1, my_dst_ = -1;
};

}  // namespace llamarl
