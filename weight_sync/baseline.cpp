#include "weight_sync/baseline.h"

#include "core/check.h"

#include <ATen/ATen.h>

namespace llamarl {
namespace {

constexpr int kGatherTag = 0x5710;

at::Tensor RegionView(const at::Tensor& flat, const Region& g) {
  return flat.as_strided({g.Rows(), g.Cols()}, {g.stride, 1}, flat.storage_offset() + g.offset);
}

at::Tensor ParamView(const at::Tensor& full, const Region& g) {
  return full.narrow(0, g.row_begin, g.Rows()).narrow(1, g.col_begin, g.Cols());
}

}  // namespace

GatherBroadcastSync::GatherBroadcastSync(Communicator& comm, std::shared_ptr<const TransferPlan> plan,
                                         TransferPlacement placement)
    : comm_(comm), plan_(std::move(plan)), placement_(std::move(placement)) {
  CheckPlacement(*plan_, placement_, comm_);
  LLAMARL_CHECK(plan_->encoding() == TransferEncoding::kPlain, "gather-broadcast sync: the plan is ",
                ToString(plan_->encoding()), "; the baseline moves plain dtypes only (build the plan with ",
                "TransferEncoding::kPlain)");
  const int me = comm_.Rank(), root = placement_.src_ranks[0];
  my_src_ = LayoutRankOf(placement_.src_ranks, me);
  my_dst_ = LayoutRankOf(placement_.dst_ranks, me);
  const bool member = me == root || my_dst_ >= 0;
  bcast_ = comm_.Split(member ? 0 : -1, me == root ? 0 : 1 + me);
}

at::Tensor GatherBroadcastSync::GatherOnRoot(int64_t param, const std::vector<at::Tensor>& src,
                                             std::chrono::milliseconds timeout) {
  const ShardLayout& layout = plan_->src();
  const ParamSpec& p = layout.params()[size_t(param)];
  const int root = placement_.src_ranks[0];
  at::Tensor full;
  if (my_src_ == 0) full = at::empty({p.Rows(), p.Cols()}, src[0].options());
  std::vector<WorkPtr> works;
  std::vector<std::pair<at::Tensor, Region>> received;
  for (int s = 0; s < layout.NumRanks(); ++s) {
    for (const Region& g : layout.Rank(s).regions) {
      if (g.param != param) continue;
      if (s == my_src_ && my_src_ == 0) {
        ParamView(full, g).copy_(RegionView(src[size_t(g.buffer)].view(-1), g));
      } else if (s == my_src_) {
        works.push_back(comm_.Send(RegionView(src[size_t(g.buffer)].view(-1), g).contiguous(), root, {kGatherTag}));
      } else if (my_src_ == 0) {
        at::Tensor piece = at::empty({g.Rows(), g.Cols()}, src[0].options());
        works.push_back(comm_.Recv(piece, placement_.src_ranks[size_t(s)], {kGatherTag}));
        received.push_back({piece, g});
      }
    }
  }
  WaitAll(works, timeout);
  for (auto& [piece, g] : received) ParamView(full, g).copy_(piece);
  return full;
}

void GatherBroadcastSync::Run(TransferBuffers& buffers, std::chrono::milliseconds timeout) {
  const ShardLayout& dst = plan_->dst();
  if (my_dst_ >= 0) {
    LLAMARL_CHECK(buffers.dst.size() == dst.Rank(my_dst_).buffers.size(), "gather-broadcast sync: destination rank ",
                  my_dst_, " expects ", dst.Rank(my_dst_).buffers.size(), " buffers, got ", buffers.dst.size());
  }
  // Every rank of a broadcast holds `full` on its buffers' device, so that all route it alike.
  const at::Device device = !buffers.dst.empty()   ? buffers.dst[0].device()
                            : !buffers.src.empty() ? buffers.src[0].device()
                                                   : at::Device(at::kCPU);
  for (int64_t i = 0; i < int64_t(dst.params().size()); ++i) {
    const ParamSpec& p = dst.params()[size_t(i)];
    at::Tensor full;
    if (my_src_ >= 0) full = GatherOnRoot(i, buffers.src, timeout);
    if (!bcast_) continue;
    full = full.defined() ? full.to(dst.dtype())
                          : at::empty({p.Rows(), p.Cols()}, at::TensorOptions().dtype(dst.dtype()).device(device));
    bcast_->Broadcast(full, {0})->Wait(timeout);
    if (my_dst_ < 0) continue;
    for (const Region& g : dst.Rank(my_dst_).regions)
      if (g.param == i) RegionView(buffers.dst[size_t(g.buffer)].view(-1), g).copy_(ParamView(full, g));
  }
}

}  // namespace llamarl
