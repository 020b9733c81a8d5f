// Shard layouts: which elements of which HF-named parameter every rank of a group holds, and where in
// that rank's local buffers they live. Trainers and generators describe their shards this way, and a
// TransferPlan (weight_sync/transfer_plan.h) is computed from two layouts.
//
// Geometry. Every parameter is viewed as a matrix [rows, cols] with rows = shape[0] and cols = the
// product of the other dimensions (a 1-D parameter of n elements is [n, 1]). A Region is a rectangle
// [row_begin, row_end) x [col_begin, col_end) of that matrix, stored in one local buffer starting at
// element `offset` with `stride` elements between consecutive rows. Rectangles are enough for every
// layout used here: a flat ZeRO range splits into at most three (a partial first row, full middle
// rows, a partial last row), a column-parallel split is a row band, a row-parallel split is a column
// band (strided in the source: one Region, never one entry per row).
//
// Layouts supported (the trainer side is a source, the generator side a destination):
//   ZeroFlatLayout       ZeRO-3: all parameters concatenated in a fixed order and split into N
//                        near-equal contiguous element ranges; a parameter may straddle shards. One
//                        buffer per rank ("flat_shard").
//   RowShardLayout       every parameter split along dim 0 into N near-equal row ranges (FSDP
//                        per-parameter sharding); one buffer per parameter per rank.
//   TensorParallelLayout Megatron/vLLM tensor parallelism for Llama: q/k/v (and their biases) and
//                        gate/up column-parallel (dim 0 of the [out, in] weight, q/k/v split by heads,
//                        so tp_size must divide num_key_value_heads); o/down row-parallel (dim 1, by
//                        heads for o); embed_tokens and lm_head split by vocab rows (near-equal,
//                        uneven when tp_size does not divide the vocab) or replicated; norms
//                        replicated. One buffer per parameter per rank, shaped like the local shard.
// Layouts are immutable once built and safe to share between threads.
#pragma once

#include <c10/core/ScalarType.h>

#include <cstdint>
#include <string>
#include <vector>

namespace llamarl {

struct LlamaConfig;

// One parameter as every layout sees it (identity = its HF name).
struct ParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t Rows() const;
  int64_t Cols() const;
  int64_t Numel() const { return Rows() * Cols(); }
};

// The parameters of the Llama-family module built from `config`, in named_parameters() order. Built
// on at::kMeta, so that any size (405B included) is described without allocating anything.
std::vector<ParamSpec> LlamaParamSpecs(const LlamaConfig& config);

// A local buffer of one rank: its name and shape (numel = product of shape).
struct BufferSpec {
  std::string name;
  std::vector<int64_t> shape;
  int64_t Numel() const;
};

struct Region {
  int64_t param = 0;  // index into ShardLayout::params()
  int64_t row_begin = 0, row_end = 0, col_begin = 0, col_end = 0;
  int64_t buffer = 0;  // index into the rank's buffers
  int64_t offset = 0;  // element of (row_begin, col_begin) in that buffer
  int64_t stride = 0;  // elements between consecutive rows in that buffer
  int64_t Rows() const { return row_end - row_begin; }
  int64_t Cols() const { return col_end - col_begin; }
  int64_t Numel() const { return Rows() * Cols(); }
};

struct RankShards {
  std::vector<BufferSpec> buffers;
  std::vector<Region> regions;
};

class ShardLayout {
 public:
  // `kind` names the layout in messages and in the cache key; `dtype` is the dtype of every buffer.
  ShardLayout(std::string kind, std::vector<ParamSpec> params, int num_ranks, at::ScalarType dtype);

  // Builders for hand-made layouts; checked against the parameter and buffer bounds (a user error).
  int64_t AddBuffer(int rank, BufferSpec buffer);
  void AddRegion(int rank, const Region& region);

  const std::string& kind() const { return kind_; }
  const std::vector<ParamSpec>& params() const { return params_; }
  int NumRanks() const { return int(ranks_.size()); }
  at::ScalarType dtype() const { return dtype_; }
  const RankShards& Rank(int rank) const;
  int64_t ParamIndex(const std::string& name) const;  // throws listing a few known names
  // Elements held by `rank` over all its buffers.
  int64_t RankNumel(int rank) const;
  // A string that identifies the geometry exactly (kind, dtype, params, every region): equal
  // fingerprints mean equal layouts. Used as the plan cache key.
  std::string Fingerprint() const;

 private:
  std::string kind_;
  std::vector<ParamSpec> params_;
  std::vector<RankShards> ranks_;
  at::ScalarType dtype_;
};

// Near-equal split of `total` into `parts` contiguous ranges: the first total % parts get one more.
// Returns parts + 1 boundaries.
std::vector<int64_t> EvenSplit(int64_t total, int parts);

ShardLayout ZeroFlatLayout(const std::vector<ParamSpec>& params, int num_ranks, at::ScalarType dtype);
ShardLayout RowShardLayout(const std::vector<ParamSpec>& params, int num_ranks, at::ScalarType dtype);

struct TensorParallelOptions {
  int tp_size = 1;
  at::ScalarType dtype = at::kBFloat16;
  bool vocab_parallel = true;  // false: embed_tokens and lm_head replicated on every TP rank
};
// Needs the config for head counts; throws when tp_size does not divide the heads, the kv heads or
// intermediate_size, naming the values and the fix.
ShardLayout TensorParallelLayout(const LlamaConfig& config, const TensorParallelOptions& options);

}  // namespace llamarl
