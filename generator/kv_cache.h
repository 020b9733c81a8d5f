// The engine's KV cache: one pre-allocated [slots, kv_heads, max_len, head_dim] tensor per layer for
// keys and one for values. A slot holds one sequence; positions [0, length) of a slot are valid and
// everything after is stale (masked by the caller). Nothing is allocated after construction, except
// by Allocate() after a Release().
//
// Why slots and not paged blocks: on the CPU the attention reads a dense [n, K, L, E] view of the
// first n slots (the engine keeps running sequences dense in [0, n)), so no gather of blocks is needed
// per step; the price is that every slot reserves max_len positions.
// Legend: R = prefill rows, S = slots written, T = tokens, N = decoding slots, K = kv heads per rank,
// L = attended length, E = head_dim.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace llamarl {

struct KvCacheShape {
  int64_t num_layers = 0;
  int64_t num_slots = 0;
  int64_t num_kv_heads = 0;  // of this rank
  int64_t max_len = 0;
  int64_t head_dim = 0;
};

class KvCache {
 public:
  KvCache(const KvCacheShape& shape, const at::TensorOptions& options);
  const KvCacheShape& shape() const { return shape_; }

  // Prefill: slot slots_S[j] receives positions [0, T) of row rows_S[j] of k/v [R, K, T, E] (a
  // group's prompt row goes to several slots).
  void WriteRows(int64_t layer, const at::Tensor& k_RKTE, const at::Tensor& v_RKTE, const at::Tensor& slots_S,
                 const at::Tensor& rows_S);
  // Decode: slot i in [0, N) receives k/v [N, K, E] at position positions_N[i].
  void WriteDecode(int64_t layer, const at::Tensor& k_NKE, const at::Tensor& v_NKE, const at::Tensor& positions_N);
  // [N, K, L, E] views of slots [0, N), positions [0, L): no copy.
  at::Tensor Keys(int64_t layer, int64_t num_slots, int64_t length) const;
  at::Tensor Values(int64_t layer, int64_t num_slots, int64_t length) const;
  // Copies positions [0, length) of slot `from` to slot `to` in every layer.
  void MoveSlot(int64_t from, int64_t to, int64_t length);

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
  std::vector<at::Tensor> keys_;    // [layers] of [slots, K, max_len, E]
  std::vector<at::Tensor> values_;
};

}  // namespace llamarl
