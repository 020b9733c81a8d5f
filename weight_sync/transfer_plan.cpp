#include "weight_sync/transfer_plan.h"

#include "core/check.h"

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>

#include <algorithm>
#include <iterator>
#include <map>
#include <set>

namespace llamarl {
namespace {

int64_t Overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1) { return std::max<int64_t>(0, std::min(a1, b1) - std::max(a0, b0)); }

int64_t IntersectionArea(const Region& a, const Region& b) {
  return Overlap(a.row_begin, a.row_end, b.row_begin, b.row_end) * Overlap(a.col_begin, a.col_end, b.col_begin, b.col_end);
}

void CheckSameParams(const ShardLayout& src, const ShardLayout& dst, TransferEncoding encoding) {
  const auto& a = src.params();
  const auto& b = dst.params();
  LLAMARL_CHECK(a.size() == b.size(), "transfer plan ", src.kind(), " -> ", dst.kind(), ": the source has ", a.size(),
                " parameters, the destination ", b.size(), "; both layouts must be built from the same model config");
  for (size_t i = 0; i < a.size(); ++i) {
    LLAMARL_CHECK(a[i].name == b[i].name && a[i].shape == b[i].shape, "transfer plan ", src.kind(), " -> ", dst.kind(),
                  ": parameter ", i, " is '", a[i].name, "' ", c10::IntArrayRef(a[i].shape), " in the source but '",
                  b[i].name, "' ", c10::IntArrayRef(b[i].shape),
                  " in the destination; both layouts must be built from the same model config");
  }
  if (encoding == TransferEncoding::kFp8E4m3) {
    const auto s = src.dtype();
    LLAMARL_CHECK(s == at::kFloat || s == at::kBFloat16 || s == at::kHalf, "transfer plan ", src.kind(), " -> ",
                  dst.kind(), ": fp8 e4m3 needs Float, BFloat16 or Half source weights, got ", s,
                  "; cast the source or transfer without fp8");
    LLAMARL_CHECK(dst.dtype() == at::kByte, "transfer plan ", src.kind(), " -> ", dst.kind(), ": fp8 e4m3 destination ",
                  "buffers hold the e4m3fn bits in uint8, so the destination layout's dtype must be Byte, got ",
                  dst.dtype(), "; build the destination layout with at::kByte");
    return;
  }
  LLAMARL_CHECK(src.dtype() == dst.dtype() || (c10::isFloatingType(src.dtype()) && c10::isFloatingType(dst.dtype())),
                "transfer plan ", src.kind(), " -> ", dst.kind(), ": cannot convert ", src.dtype(), " to ", dst.dtype(),
                "; only same-dtype transfers, floating casts (e.g. Float -> BFloat16) and fp8 e4m3 (TransferEncoding::",
                "kFp8E4m3, to a Byte layout) are supported");
}

// fp8 scales are one vector per destination buffer, so each buffer must hold exactly one region.
void CheckOneRegionPerBuffer(const ShardLayout& dst) {
  for (int r = 0; r < dst.NumRanks(); ++r) {
    const RankShards& rank = dst.Rank(r);
    std::vector<int> count(rank.buffers.size(), 0);
    for (const auto& g : rank.regions) ++count[size_t(g.buffer)];
    for (size_t b = 0; b < count.size(); ++b)
      LLAMARL_CHECK(count[b] == 1, "transfer plan: fp8 e4m3 gives every destination buffer one scale vector, but ",
                    "buffer '", rank.buffers[b].name, "' of rank ", r, " of layout ", dst.kind(), " holds ", count[b],
                    " regions; use a destination layout with one parameter region per buffer (tensor-parallel or "
                    "row-shard layouts)");
  }
}

// Regions of every rank of `layout`, grouped by parameter: (rank, region).
std::vector<std::vector<std::pair<int, Region>>> ByParam(const ShardLayout& layout) {
  std::vector<std::vector<std::pair<int, Region>>> out(layout.params().size());
  for (int r = 0; r < layout.NumRanks(); ++r)
    for (const auto& g : layout.Rank(r).regions) out[size_t(g.param)].push_back({r, g});
  return out;
}

// Every parameter's source regions cover it exactly once (areas add up and no two overlap).
void CheckPartition(const ShardLayout& src, const std::vector<std::vector<std::pair<int, Region>>>& by_param) {
  for (size_t i = 0; i < by_param.size(); ++i) {
    const auto& regions = by_param[i];
    int64_t area = 0;
    for (size_t a = 0; a < regions.size(); ++a) {
      area += regions[a].second.Numel();
      for (size_t b = a + 1; b < regions.size(); ++b)
        LLAMARL_CHECK(IntersectionArea(regions[a].second, regions[b].second) == 0, "transfer plan: source layout ",
                      src.kind(), " holds elements of '", src.params()[i].name, "' twice (ranks ",
                      regions[a].first, " and ", regions[b].first,
                      "); a source must hold every element exactly once (use one replica as the source)");
    }
    LLAMARL_CHECK(area == src.params()[i].Numel(), "transfer plan: source layout ", src.kind(), " covers ", area,
                  " of the ", src.params()[i].Numel(), " elements of '", src.params()[i].name,
                  "'; every element must be held by exactly one source rank");
  }
}

void CheckDestinationRank(const ShardLayout& dst, int rank) {
  const auto& regions = dst.Rank(rank).regions;
  for (size_t a = 0; a < regions.size(); ++a)
    for (size_t b = a + 1; b < regions.size(); ++b)
      LLAMARL_CHECK(regions[a].param != regions[b].param || IntersectionArea(regions[a], regions[b]) == 0,
                    "transfer plan: destination layout ", dst.kind(), " rank ", rank, " holds elements of '",
                    dst.params()[size_t(regions[a].param)].name, "' in two regions; each element once per rank");
}

int64_t RegionsNumel(const ShardLayout& layout) {
  int64_t n = 0;
  for (int r = 0; r < layout.NumRanks(); ++r)
    for (const auto& g : layout.Rank(r).regions) n += g.Numel();
  return n;
}

TransferBlock Intersect(const Region& s, const Region& d, int64_t dst_region, bool one_dim) {
  const int64_t r0 = std::max(s.row_begin, d.row_begin), c0 = std::max(s.col_begin, d.col_begin);
  TransferBlock b;
  b.param = s.param;
  b.row_begin = r0;
  b.col_begin = c0;
  b.dst_region = dst_region;
  b.carries_scales = c0 == d.col_begin && (!one_dim || r0 == d.row_begin);
  b.rows = std::min(s.row_end, d.row_end) - r0;
  b.cols = std::min(s.col_end, d.col_end) - c0;
  b.src_buffer = s.buffer;
  b.src_offset = s.offset + (r0 - s.row_begin) * s.stride + (c0 - s.col_begin);
  b.src_stride = s.stride;
  b.dst_buffer = d.buffer;
  b.dst_offset = d.offset + (r0 - d.row_begin) * d.stride + (c0 - d.col_begin);
  b.dst_stride = d.stride;
  return b;
}

// Source ranks holding part of each scale group of `param` that more than one rank holds: rows that
// a narrower-than-full region covers (2-D and up), or the whole parameter (1-D).
std::map<int64_t, std::set<int>> SharedGroups(const ParamSpec& param, const std::vector<std::pair<int, Region>>& regions) {
  std::map<int64_t, std::set<int>> holders;
  if (param.shape.size() < 2) {
    for (const auto& [rank, g] : regions) holders[0].insert(rank);
  } else {
    for (const auto& [rank, g] : regions) {
      if (g.Cols() == param.Cols()) continue;
      for (int64_t row = g.row_begin; row < g.row_end; ++row)
        for (const auto& [other, h] : regions)
          if (row >= h.row_begin && row < h.row_end) holders[row].insert(other);
    }
  }
  for (auto it = holders.begin(); it != holders.end();) it = it->second.size() > 1 ? std::next(it) : holders.erase(it);
  return holders;
}

}  // namespace

const char* ToString(TransferEncoding encoding) {
  return encoding == TransferEncoding::kFp8E4m3 ? "fp8_e4m3" : "plain";
}

int64_t NumScaleGroups(const ParamSpec& param) { return param.shape.size() < 2 ? 1 : param.Rows(); }

void TransferPlan::BuildAmaxShares() {
  const auto by_param = ByParam(src_);
  std::map<std::pair<int, int>, AmaxShare> shares;
  for (size_t p = 0; p < by_param.size(); ++p) {
    for (const auto& [group, ranks] : SharedGroups(src_.params()[p], by_param[p])) {
      for (auto a = ranks.begin(); a != ranks.end(); ++a) {
        for (auto b = std::next(a); b != ranks.end(); ++b) {
          AmaxShare& share = shares[{*a, *b}];
          share.src_rank_a = *a;
          share.src_rank_b = *b;
          share.groups.push_back({int64_t(p), group});
        }
      }
    }
  }
  for (auto& entry : shares) amax_shares_.push_back(std::move(entry.second));
}

uint64_t Fnv1a64(const void* data, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

std::shared_ptr<const TransferPlan> TransferPlan::Build(const ShardLayout& src, const ShardLayout& dst,
                                                       TransferEncoding encoding) {
  CheckSameParams(src, dst, encoding);
  if (encoding == TransferEncoding::kFp8E4m3) CheckOneRegionPerBuffer(dst);
  const auto src_by_param = ByParam(src);
  CheckPartition(src, src_by_param);
  std::shared_ptr<TransferPlan> plan(new TransferPlan(src, dst, encoding));
  for (int s = 0; s < src.NumRanks(); ++s) {
    for (int d = 0; d < dst.NumRanks(); ++d) {
      if (s == 0) CheckDestinationRank(dst, d);
      PairPlan pair{s, d, {}, 0};
      const auto& dst_regions = dst.Rank(d).regions;
      for (size_t i = 0; i < dst_regions.size(); ++i) {
        const Region& dr = dst_regions[i];
        const bool one_dim = src.params()[size_t(dr.param)].shape.size() < 2;
        for (const auto& [rank, sr] : src_by_param[size_t(dr.param)]) {
          if (rank != s || IntersectionArea(sr, dr) == 0) continue;
          const TransferBlock& b = pair.blocks.emplace_back(Intersect(sr, dr, int64_t(i), one_dim));
          pair.numel += b.Numel();
          if (b.carries_scales) pair.num_scales += one_dim ? 1 : b.rows;
        }
      }
      if (!pair.blocks.empty()) plan->pairs_.push_back(std::move(pair));
    }
  }
  // With the source a partition, each destination element is covered exactly once; the totals must
  // agree (an internal invariant, checked because every later copy relies on it).
  LLAMARL_ASSERT(plan->DstNumel() == RegionsNumel(dst), "transfer plan blocks cover ", plan->DstNumel(),
                 " destination elements, the destination regions hold ", RegionsNumel(dst));
  if (encoding == TransferEncoding::kFp8E4m3) plan->BuildAmaxShares();
  std::string key = src.Fingerprint() + "->" + dst.Fingerprint();
  if (encoding != TransferEncoding::kPlain) key += std::string(" as ") + ToString(encoding);
  plan->id_ = int64_t(Fnv1a64(key.data(), key.size()) >> 1);
  return plan;
}

int64_t TransferPlan::DstNumel() const {
  int64_t n = 0;
  for (const auto& p : pairs_) n += p.numel;
  return n;
}

int64_t TransferPlan::DstBytes() const { return DstNumel() * int64_t(c10::elementSize(dst_.dtype())); }

std::shared_ptr<const TransferPlan> PlanCache::Get(const ShardLayout& src, const ShardLayout& dst,
                                                   TransferEncoding encoding) {
  std::string key = src.Fingerprint() + "->" + dst.Fingerprint() + " as " + ToString(encoding);
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  auto plan = TransferPlan::Build(src, dst, encoding);
  plans_.emplace(std::move(key), plan);
  return plan;
}

size_t PlanCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return plans_.size();
}

}  // namespace llamarl
