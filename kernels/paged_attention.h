// Decode attention over a paged KV cache: one query per sequence attends to the first lengths[n]
// positions held by its blocks, softmax(q k^T / sqrt(E)) v with grouped-query heads (head h reads kv
// head h / (H / K)). The scores and the softmax run in float32.
//
// On the CPU the keys and values are read in place, block by block, one task per sequence:
// no gathered [N, L, K, E] copy and no [N, L, K, G, E] product are materialised, which cost a decode
// step more than the attention's own arithmetic (allocation, page faults, memory traffic). On other
// devices the composite form (PagedDecodeAttentionComposite) runs.
// Legend: N = sequences, H = query heads, K = kv heads, E = head_dim, NBLK = cache blocks,
// BS = block_size, NB = blocks per sequence, L = attended positions.
#pragma once

#include <ATen/core/Tensor.h>

namespace llamarl::kernels {

struct PagedKv {
  at::Tensor keys;    // [NBLK, BS, K, E]: cache slot block * BS + offset
  at::Tensor values;  // [NBLK, BS, K, E]
  at::Tensor blocks;  // [N, NB] int64: each sequence's blocks in order, padded with any valid block id
  at::Tensor lengths; // [N] int64 in [1, NB * BS]: positions each sequence attends to
};

// q: [N, H, E] float32/bfloat16/float16 (the cache's dtype) -> [N, H, E] in q's dtype.
at::Tensor PagedDecodeAttention(const at::Tensor& q_NHE, const PagedKv& kv);

// The same math as ATen ops on any device: gathers every sequence's blocks into [N, L, K, E], then
// multiply-reduce in the activations' dtype with the masked softmax in float32 (model/attention.h's
// AttendEager up to the order of additions). The reference the fused CPU loop is tested against.
at::Tensor PagedDecodeAttentionComposite(const at::Tensor& q_NHE, const PagedKv& kv);

}  // namespace llamarl::kernels
