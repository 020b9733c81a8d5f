#include "weight_sync/transfer_plan.h"

#include <c10/core/ScalarType.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/Exception.h>

#include <algorithm>

namespace llamarl {
namespace {

int64_t Overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1) { return std::max<int64_t>(0, std::min(a1, b1) - std::max(a0, b0)); }

int64_t IntersectionArea(const Region& a, const Region& b) {
  return Overlap(a.row_begin, a.row_end, b.row_begin, b.row_end) * Overlap(a.col_begin, a.col_end, b.col_begin, b.col_end);
}

void CheckSameParams(const ShardLayout& src, const ShardLayout& dst) {
  const auto& a = src.params();
  const auto& b = dst.params();
  TORCH_CHECK(a.size() == b.size(), "transfer plan ", src.kind(), " -> ", dst.kind(), ": the source has ", a.size(),
              " parameters, the destination ", b.size(), "; both layouts must be built from the same model config");
  for (size_t i = 0; i < a.size(); ++i) {
    TORCH_CHECK(a[i].name == b[i].name && a[i].shape == b[i].shape, "transfer plan ", src.kind(), " -> ", dst.kind(),
                ": parameter ", i, " is '", a[i].name, "' ", c10::IntArrayRef(a[i].shape), " in the source but '",
                b[i].name, "' ", c10::IntArrayRef(b[i].shape),
                " in the destination; both layouts must be built from the same model config");
  }
  TORCH_CHECK(src.dtype() == dst.dtype() || (c10::isFloatingType(src.dtype()) && c10::isFloatingType(dst.dtype())),
              "transfer plan ", src.kind(), " -> ", dst.kind(), ": cannot convert ", src.dtype(), " to ", dst.dtype(),
              "; only same-dtype transfers and floating casts (e.g. Float -> BFloat16) are supported");
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
        TORCH_CHECK(IntersectionArea(regions[a].second, regions[b].second) == 0, "transfer plan: source layout ",
                    src.kind(), " holds elements of '", src.params()[i].name, "' twice (ranks ",
                    regions[a].first, " and ", regions[b].first,
                    "); a source must hold every element exactly once (use one replica as the source)");
    }
    TORCH_CHECK(area == src.params()[i].Numel(), "transfer plan: source layout ", src.kind(), " covers ", area,
                " of the ", src.params()[i].Numel(), " elements of '", src.params()[i].name,
                "'; every element must be held by exactly one source rank");
  }
}

void CheckDestinationRank(const ShardLayout& dst, int rank) {
  const auto& regions = dst.Rank(rank).regions;
  for (size_t a = 0; a < regions.size(); ++a)
    for (size_t b = a + 1; b < regions.size(); ++b)
      TORCH_CHECK(regions[a].param != regions[b].param || IntersectionArea(regions[a], regions[b]) == 0,
                  "transfer plan: destination layout ", dst.kind(), " rank ", rank, " holds elements of '",
                  dst.params()[size_t(regions[a].param)].name, "' in two regions; each element once per rank");
}

int64_t RegionsNumel(const ShardLayout& layout) {
  int64_t n = 0;
  for (int r = 0; r < layout.NumRanks(); ++r)
    for (const auto& g : layout.Rank(r).regions) n += g.Numel();
  return n;
}

TransferBlock Intersect(const Region& s, const Region& d) {
  const int64_t r0 = std::max(s.row_begin, d.row_begin), c0 = std::max(s.col_begin, d.col_begin);
  TransferBlock b;
  b.param = s.param;
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

}  // namespace

uint64_t Fnv1a64(const void* data, size_t bytes, uint64_t seed) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = seed;
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}

std::shared_ptr<const TransferPlan> TransferPlan::Build(const ShardLayout& src, const ShardLayout& dst) {
  CheckSameParams(src, dst);
  const auto src_by_param = ByParam(src);
  CheckPartition(src, src_by_param);
  std::shared_ptr<TransferPlan> plan(new TransferPlan(src, dst));
  for (int s = 0; s < src.NumRanks(); ++s) {
    for (int d = 0; d < dst.NumRanks(); ++d) {
      if (s == 0) CheckDestinationRank(dst, d);
      PairPlan pair{s, d, {}, 0};
      for (const auto& dr : dst.Rank(d).regions) {
        for (const auto& [rank, sr] : src_by_param[size_t(dr.param)]) {
          if (rank != s || IntersectionArea(sr, dr) == 0) continue;
          pair.blocks.push_back(Intersect(sr, dr));
          pair.numel += pair.blocks.back().Numel();
        }
      }
      if (!pair.blocks.empty()) plan->pairs_.push_back(std::move(pair));
    }
  }
  // With the source a partition, each destination element is covered exactly once; the totals must
  // agree (an internal invariant, checked because every later copy relies on it).
  TORCH_INTERNAL_ASSERT(plan->DstNumel() == RegionsNumel(dst), "transfer plan blocks cover ", plan->DstNumel(),
                        " destination elements, the destination regions hold ", RegionsNumel(dst));
  const std::string key = src.Fingerprint() + "->" + dst.Fingerprint();
  plan->id_ = int64_t(Fnv1a64(key.data(), key.size()) >> 1);
  return plan;
}

int64_t TransferPlan::DstNumel() const {
  int64_t n = 0;
  for (const auto& p : pairs_) n += p.numel;
  return n;
}

int64_t TransferPlan::DstBytes() const { return DstNumel() * int64_t(c10::elementSize(dst_.dtype())); }

std::shared_ptr<const TransferPlan> PlanCache::Get(const ShardLayout& src, const ShardLayout& dst) {
  auto key = std::make_pair(src.Fingerprint(), dst.Fingerprint());
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  auto plan = TransferPlan::Build(src, dst);
  plans_.emplace(std::move(key), plan);
  return plan;
}

size_t PlanCache::size() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return plans_.size();
}

}  // namespace llamarl
