#include "weight_sync/fp8_scales.h"

#include "core/check.h"
#include "kernels/fp8.h"
#include "kernels/scalar_math.h"

#include <ATen/ATen.h>

#include <algorithm>

namespace llamarl {
namespace {

// Below 32767 (the least MPI_TAG_UB MPI guarantees), apart from the tags of ddma.cpp.
constexpr int kAmaxTag = 0x5703;

bool OneDim(const ParamSpec& param) { return param.shape.size() < 2; }

at::Tensor RegionView(const at::Tensor& flat, const Region& g) {
  return flat.as_strided({g.Rows(), g.Cols()}, {g.stride, 1}, flat.storage_offset() + g.offset);
}

// The region of destination `rank` that fills buffer `buffer` (one per buffer under fp8).
const Region& BufferRegion(const ShardLayout& dst, int rank, size_t buffer) {
  const auto& regions = dst.Rank(rank).regions;
  auto it = std::find_if(regions.begin(), regions.end(), [&](const Region& g) { return size_t(g.buffer) == buffer; });
  LLAMARL_ASSERT(it != regions.end(), "fp8 plan: buffer ", buffer, " of destination rank ", rank,
                 " holds no region");
  return *it;
}

// Absolute maxima of the scale groups this rank holds part of (zero elsewhere), float32.
std::vector<at::Tensor> LocalAmax(const ShardLayout& src, int rank, const std::vector<at::Tensor>& flat) {
  std::vector<at::Tensor> amax(src.params().size());
  for (const Region& g : src.Rank(rank).regions) {
    const ParamSpec& p = src.params()[size_t(g.param)];
    const at::Tensor view = RegionView(flat[size_t(g.buffer)], g);
    at::Tensor& m = amax[size_t(g.param)];
    if (!m.defined()) m = at::zeros({NumScaleGroups(p)}, view.options().dtype(at::kFloat));
    at::Tensor part = OneDim(p) ? view.abs().max().to(at::kFloat).reshape({1}) : view.abs().amax({1}).to(at::kFloat);
    at::Tensor groups = OneDim(p) ? m : m.narrow(0, g.row_begin, g.Rows());
    groups.copy_(at::maximum(groups, part));  // maximum propagates NaN, which the finite check reports
  }
  return amax;
}

// Sends this rank's partial maxima of every shared group to the other holder and folds theirs in.
void ExchangeSharedAmax(const SourceScalesArgs& args, std::vector<at::Tensor>& amax) {
  std::vector<P2POp> ops;
  std::vector<std::pair<const AmaxShare*, at::Tensor>> received;
  for (const AmaxShare& share : args.plan->amax_shares()) {
    if (share.src_rank_a != args.my_src && share.src_rank_b != args.my_src) continue;
    const int other = share.src_rank_a == args.my_src ? share.src_rank_b : share.src_rank_a;
    std::vector<at::Tensor> mine;
    for (const auto& [param, group] : share.groups) mine.push_back(amax[size_t(param)].narrow(0, group, 1));
    at::Tensor send = at::cat(mine);
    received.push_back({&share, at::empty_like(send)});
    const int peer = (*args.src_ranks)[size_t(other)];
    ops.push_back(P2POp::Send(send, peer, kAmaxTag));
    ops.push_back(P2POp::Recv(received.back().second, peer, kAmaxTag));
  }
  if (ops.empty()) return;
  args.comm->SendRecvBatch(ops)->Wait(args.timeout);
  for (const auto& [share, theirs] : received) {
    for (size_t i = 0; i < share->groups.size(); ++i) {
      at::Tensor mine = amax[size_t(share->groups[i].first)].narrow(0, share->groups[i].second, 1);
      mine.copy_(at::maximum(mine, theirs.narrow(0, int64_t(i), 1)));
    }
  }
}

}  // namespace

std::vector<at::Tensor> ComputeSourceScales(const SourceScalesArgs& args) {
  const ShardLayout& src = args.plan->src();
  std::vector<at::Tensor> amax = LocalAmax(src, args.my_src, *args.src_flat);
  ExchangeSharedAmax(args, amax);
  for (size_t p = 0; p < amax.size(); ++p) {
    at::Tensor& m = amax[p];
    if (!m.defined()) continue;
    LLAMARL_CHECK(at::isfinite(m).all().item<bool>(), "weight sync fp8: parameter '", src.params()[p].name,
                  "' holds non-finite values on source rank ", args.my_src, " (amax ", m.max().item<float>(),
                  "), which leave no usable e4m3 scale; fix the overflow upstream or transfer without fp8");
    // The convention of kernels::CastToFp8E4m3: the largest magnitude maps to 448, zero rows get 1.
    m = at::where(m.gt(0), m.div(kernels::kFp8E4m3Max), at::ones_like(m));
  }
  return amax;
}

at::Tensor EncodePiece(const at::Tensor& piece, const ParamSpec& param, const at::Tensor& param_scales,
                       int64_t first_row) {
  const at::Tensor scales = OneDim(param) ? param_scales : param_scales.narrow(0, first_row, piece.size(0));
  return kernels::CastToFp8E4m3(piece, scales).data;
}

at::Tensor PackScales(const TransferPlan& plan, const PairPlan& pair, const std::vector<at::Tensor>& scales) {
  std::vector<at::Tensor> parts;
  for (const TransferBlock& b : pair.blocks) {
    if (!b.carries_scales) continue;
    const at::Tensor& s = scales[size_t(b.param)];
    parts.push_back(OneDim(plan.src().params()[size_t(b.param)]) ? s : s.narrow(0, b.row_begin, b.rows));
  }
  return parts.empty() ? at::empty({0}, at::kFloat) : at::cat(parts);
}

void UnpackScales(const TransferPlan& plan, const PairPlan& pair, const at::Tensor& wire,
                  const std::vector<at::Tensor>& dst_scales) {
  const auto& regions = plan.dst().Rank(pair.dst_rank).regions;
  int64_t pos = 0;
  for (const TransferBlock& b : pair.blocks) {
    if (!b.carries_scales) continue;
    const Region& g = regions[size_t(b.dst_region)];
    const bool one_dim = OneDim(plan.dst().params()[size_t(b.param)]);
    const int64_t n = one_dim ? 1 : b.rows;
    dst_scales[size_t(g.buffer)].narrow(0, one_dim ? 0 : b.row_begin - g.row_begin, n).copy_(wire.narrow(0, pos, n));
    pos += n;
  }
  LLAMARL_ASSERT(pos == wire.numel(), "fp8 scales: unpacked ", pos, " of ", wire.numel());
}

std::vector<at::Tensor> AllocateScaleBuffers(const TransferPlan& plan, int rank, const at::TensorOptions& options) {
  LLAMARL_CHECK(plan.encoding() == TransferEncoding::kFp8E4m3, "AllocateScaleBuffers: the plan's encoding is ",
                ToString(plan.encoding()), "; only fp8_e4m3 plans have scales");
  const ShardLayout& dst = plan.dst();
  std::vector<at::Tensor> out;
  for (size_t i = 0; i < dst.Rank(rank).buffers.size(); ++i) {
    const Region& g = BufferRegion(dst, rank, i);
    out.push_back(at::zeros({OneDim(dst.params()[size_t(g.param)]) ? 1 : g.Rows()}, options.dtype(at::kFloat)));
  }
  return out;
}

void CheckScaleBuffers(const TransferPlan& plan, int rank, const std::vector<at::Tensor>& scales) {
  const ShardLayout& dst = plan.dst();
  const auto& specs = dst.Rank(rank).buffers;
  LLAMARL_CHECK(scales.size() == specs.size(), "weight sync fp8: destination rank ", rank, " expects ", specs.size(),
                " scale buffers (one per buffer), got ", scales.size(), "; allocate them with AllocateScaleBuffers");
  for (size_t i = 0; i < specs.size(); ++i) {
    const Region& g = BufferRegion(dst, rank, i);
    const int64_t n = OneDim(dst.params()[size_t(g.param)]) ? 1 : g.Rows();
    const at::Tensor& t = scales[i];
    LLAMARL_CHECK(t.defined() && t.is_contiguous() && t.scalar_type() == at::kFloat && t.dim() == 1 && t.numel() == n,
                  "weight sync fp8: scale buffer ", i, " ('", specs[i].name, "') of destination rank ", rank,
                  " must be a contiguous float32 [", n, "] tensor, got ",
                  t.defined() ? c10::toString(t.scalar_type()) : "undefined", " ", t.defined() ? t.sizes() : at::IntArrayRef{},
                  "; allocate them with AllocateScaleBuffers");
  }
}

}  // namespace llamarl
