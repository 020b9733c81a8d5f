// The transfer plan from a source layout (the trainer's shards) to a destination layout (the
// generator's shards): for every (source rank, destination rank) pair, the strided blocks of elements
// to move. Computed once per layout pair (PlanCache), validated before any byte moves:
//   - both layouts describe the same parameters (names, shapes, order);
//   - the source regions partition every parameter (each element held by exactly one source rank),
//     so every destination element is written exactly once;
//   - a destination rank holds no element twice; replicated destinations (norms held by every TP rank)
//     are fine: each rank gets its own copy;
//   - the destination dtype is reachable from the source dtype (same dtype, or a floating cast such as
//     f32 master weights -> bf16).
// A block is (offset, rows, cols, src_stride, dst_stride) in each side's buffer, so a row-parallel
// split of a 2-D weight is one block, not one entry per row. Plans are immutable and thread-safe.
#pragma once

#include "weight_sync/shard_layout.h"

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace llamarl {

struct TransferBlock {
  int64_t param = 0;  // index into the layouts' params
  int64_t rows = 0, cols = 0;
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
};

class TransferPlan {
 public:
  // Throws llamarl-style errors (c10::Error) naming the parameter and the values on any mismatch.
  static std::shared_ptr<const TransferPlan> Build(const ShardLayout& src, const ShardLayout& dst);

  const ShardLayout& src() const { return src_; }
  const ShardLayout& dst() const { return dst_; }
  // Non-empty pairs, ordered by (src_rank, dst_rank).
  const std::vector<PairPlan>& pairs() const { return pairs_; }
  // Elements that land on the destination ranks (replicated parameters counted once per rank).
  int64_t DstNumel() const;
  int64_t DstBytes() const;
  // A 63-bit hash of both layouts' fingerprints: both ends of a push compare it to make sure they
  // execute the same plan.
  int64_t Id() const { return id_; }

 private:
  TransferPlan(const ShardLayout& src, const ShardLayout& dst) : src_(src), dst_(dst) {}
  ShardLayout src_;
  ShardLayout dst_;
  std::vector<PairPlan> pairs_;
  int64_t id_ = 0;
};

// Plans by layout pair. Thread-safe; the plan is built once per distinct (src, dst) fingerprint.
class PlanCache {
 public:
  std::shared_ptr<const TransferPlan> Get(const ShardLayout& src, const ShardLayout& dst);
  size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, std::shared_ptr<const TransferPlan>> plans_;
};

// FNV-1a 64-bit over raw bytes: the push's optional checksum (cheap to state, not cryptographic).
uint64_t Fnv1a64(const void* data, size_t bytes, uint64_t seed = 0xcbf29ce484222325ULL);

}  // namespace llamarl
