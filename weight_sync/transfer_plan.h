// The transfer plan from a source layout (the trainer's shards) to a destination layout (the
// generator's shards): for every (source rank, destination rank) pair, the strided blocks of elements
// to move. Computed once per layout pair (PlanCache), validated before any byte moves:
//   - both layouts describe the same parameters (names, shapes, order);
//   - the source regions partition every parameter (each element held by exactly one source rank),
//     so every destination element is written exactly once;
//   - a destination rank holds no element twice; replicated destinations (norms held by every TP rank)
//     are fine: each rank gets its own copy;
//   - the destination dtype is reachable from the source dtype (same dtype, or a floating cast such as
//     f32 master weights -> bf16, or fp8 e4m3 below).
// fp8 (TransferEncoding::kFp8E4m3): the destination buffers hold float8 e4m3fn bits in uint8 (the
// destination layout's dtype must be Byte; LibTorch 1.13 has no float8 dtype, see kernels/fp8.h) and
// every destination buffer gets float32 scales next to it: one per row of its [rows, cols] shard for
// parameters of 2 dims or more (per output channel; rows are dim 0, so a row-parallel shard gets the
// scales of all rows), one per parameter for 1-D parameters (per tensor). A scale is amax / 448 over
// the whole row (or parameter) of the full weight, exactly as kernels::CastToFp8E4m3 computes it on the
// full tensor, so that sharding commutes with quantisation. Each destination buffer must hold one
// region (tensor-parallel and row-shard layouts do), so that its scales are one vector.
// A block is (offset, rows, cols, src_stride, dst_stride) in each side's buffer, so a row-parallel
// split of a 2-D weight is one block, not one entry per row. Plans are immutable and thread-safe.
#pragma once

#include "model/shard_layout.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace llamarl {

enum class TransferEncoding {
  kPlain,    // the destination dtype (the same as the source's, or a floating cast of it)
  kFp8E4m3,  // float8 e4m3fn bits with per-row (2-D and up) or per-tensor (1-D) float32 scales
};
const char* ToString(TransferEncoding encoding);

struct TransferBlock {
  int64_t param = 0;  // index into the layouts' params
  int64_t row_begin = 0, col_begin = 0;  // the block's first element in the parameter's [rows, cols]
  int64_t rows = 0, cols = 0;
  int64_t dst_region = 0;  // index into the destination rank's regions (= its buffer under fp8)
  // fp8: the block starts at its destination region's first column (2-D and up) or holds the region's
  // first element (1-D), so it carries the scales of its rows (of the parameter): each destination
  // scale has exactly one carrier because the source regions partition every parameter.
  bool carries_scales = false;
  int64_t src_buffer = 0, src_offset = 0, src_stride = 0;
  int64_t dst_buffer = 0, dst_offset = 0, dst_stride = 0;
  int64_t Numel() const { return rows * cols; }
};

// Every block moved from one source rank to one destination rank, in a fixed order that both sides
// use to pack and unpack the byte stream between them.
struct PairPlan {
  int src_rank = 0;
  int dst_rank = 0;
  std::vector<TransferBlock> blocks;
  int64_t numel = 0;  // sum of the blocks' elements
  int64_t num_scales = 0;  // fp8: scales carried by the blocks (rows, or 1 for a 1-D parameter)
};

// fp8: scale groups (rows of a parameter of 2 dims or more, the whole of a 1-D parameter) that two
// source ranks both hold part of. Each sends the other its partial absolute maxima of these groups, so
// that both compute the scale of the whole row. Groups are (param, group index), in a fixed order.
struct AmaxShare {
  int src_rank_a = 0, src_rank_b = 0;  // a < b
  std::vector<std::pair<int64_t, int64_t>> groups;
};

// Scale groups of a parameter: its rows (2 dims or more) or 1 (1-D: one scale per tensor).
int64_t NumScaleGroups(const ParamSpec& param);

class TransferPlan {
 public:
  // Throws llamarl-style errors (llamarl::Error) naming the parameter and the values on any mismatch.
  static std::shared_ptr<const TransferPlan> Build(const ShardLayout& src, const ShardLayout& dst,
                                                   TransferEncoding encoding = TransferEncoding::kPlain);

  const ShardLayout& src() const { return src_; }
  const ShardLayout& dst() const { return dst_; }
  // Non-empty pairs, ordered by (src_rank, dst_rank).
  const std::vector<PairPlan>& pairs() const { return pairs_; }
  TransferEncoding encoding() const { return encoding_; }
  // fp8: the scale groups split between source ranks (empty when every row has one holder).
  const std::vector<AmaxShare>& amax_shares() const { return amax_shares_; }
  // Elements that land on the destination ranks (replicated parameters counted once per rank).
  int64_t DstNumel() const;
  int64_t DstBytes() const;
  // A 63-bit hash of both layouts' fingerprints: both ends of a push compare it to make sure they
  // execute the same plan.
  int64_t Id() const { return id_; }

 private:
  TransferPlan(const ShardLayout& src, const ShardLayout& dst, TransferEncoding encoding)
      : src_(src), dst_(dst), encoding_(encoding) {}
  void BuildAmaxShares();
  ShardLayout src_;
  ShardLayout dst_;
  TransferEncoding encoding_;
  std::vector<PairPlan> pairs_;
  std::vector<AmaxShare> amax_shares_;
  int64_t id_ = 0;
};

// Plans by layout pair. Thread-safe; the plan is built once per distinct (src, dst, encoding).
class PlanCache {
 public:
  std::shared_ptr<const TransferPlan> Get(const ShardLayout& src, const ShardLayout& dst,
                                          TransferEncoding encoding = TransferEncoding::kPlain);
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<const TransferPlan>> plans_;
};

// FNV-1a 64-bit over raw bytes: the push's optional checksum (cheap to state, not cryptographic).
uint64_t Fnv1a64(const void* data, size_t bytes, uint64_t seed = 0xcbf29ce484222325ULL);

}  // namespace llamarl
