// The engine's paged KV cache storage: per layer, one pre-allocated [blocks, block_size, K, E] tensor
// for keys and one for values. A cache slot is block * block_size + offset; which blocks a sequence
// holds is KvBlockPool's business (kv_blocks.h), so this class only writes slots, gathers blocks and
// copies blocks. Nothing is allocated after construction, except by Allocate() after a Release().
//
// Decode attention reads a sequence's blocks where they lie (Paged, for kernels/paged_attention.h);
// the multi-turn extension's attention copies them into a dense [N, L, K, E] tensor (Gather). Either
// way blocks can be shared and allocated one at a time instead of reserving max_len positions per
// sequence.
// Legend: M = positions written, N = sequences, NB = blocks per sequence, K = kv heads per rank,
// L = attended length, E = head_dim.
#pragma once

#include "kernels/paged_attention.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace llamarl {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_blocks = 0;
  int64_t block_size = 0;    // tokens per block
  int64_t num_kv_heads = 0;  // of this rank
  int64_t head_dim = 0;
};

class KvCache {
 public:
  KvCache(const KvCacheShape& shape, const at::TensorOptions& options);
  const KvCacheShape& shape() const { return shape_; }

  // k/v [M, K, E] go to cache slots slots_M (distinct) of `layer`.
  void Write(int64_t layer, const at::Tensor& k_MKE, const at::Tensor& v_MKE, const at::Tensor& slots_M);
  // Keys and values [N, L, K, E] of `layer`: row i holds the positions of blocks_NB[i] (padding
  // entries may name any block; the caller masks what lies beyond each sequence), first L kept.
  std::pair<at::Tensor, at::Tensor> Gather(int64_t layer, const at::Tensor& blocks_NB, int64_t length) const;
  // The pools of `layer` with the sequences' blocks [N, NB] and attended lengths [N], as the decode
  // attention kernel reads them (views, no copy).
  kernels::PagedKv Paged(int64_t layer, const at::Tensor& blocks_NB, const at::Tensor& lengths_N) const;
  // Copies whole blocks (from, to) in every layer: copy-on-write of shared blocks.
  void CopyBlocks(const std::vector<std::pair<int64_t, int64_t>>& copies);

  // Colocated placement frees the cache while the rank trains. Release() drops every tensor (the
  // contents are lost: the caller must hold no sequence in it); Allocate() gives a released cache
  // fresh zeroed tensors of the same shape, dtype and device, and does nothing on an allocated one.
  // Reads and writes of a released cache are internal errors.
  void Release();
  void Allocate();
  bool allocated() const { return !keys_.empty(); }
  // Bytes the keys and values hold now (0 when released).
  int64_t Bytes() const;

 private:
  KvCacheShape shape_;
  at::TensorOptions options_;
  std::vector<at::Tensor> keys_;  // [layers] of [blocks, block_size, K, E]
  std::vector<at::Tensor> values_;
};

}  // namespace llamarl
