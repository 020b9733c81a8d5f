#include "generator/kv_cache.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace llamarl {

KvCache::KvCache(const KvCacheShape& shape, const at::TensorOptions& options) : shape_(shape), options_(options) {
  TORCH_CHECK(shape.num_layers > 0 && shape.num_slots > 0 && shape.num_kv_heads > 0 && shape.max_len > 0 &&
                  shape.head_dim > 0,
              "KV cache sizes must be positive, got layers ", shape.num_layers, ", slots ", shape.num_slots,
              ", kv heads ", shape.num_kv_heads, ", max_len ", shape.max_len, ", head_dim ", shape.head_dim);
  Allocate();
}

void KvCache::Allocate() {
  if (allocated()) return;
  // Zeroed, not empty: attention multiplies masked positions by a zero weight, and 0 * NaN from
  // uninitialised memory would poison the row.
  const std::vector<int64_t> sizes{shape_.num_slots, shape_.num_kv_heads, shape_.max_len, shape_.head_dim};
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    keys_.push_back(at::zeros(sizes, options_));
    values_.push_back(at::zeros(sizes, options_));
  }
}

void KvCache::Release() {
  keys_.clear();
  values_.clear();
}

int64_t KvCache::Bytes() const {
  int64_t n = 0;
  for (size_t l = 0; l < keys_.size(); ++l) n += int64_t(keys_[l].nbytes() + values_[l].nbytes());
  return n;
}

void KvCache::WriteRows(int64_t layer, const at::Tensor& k, const at::Tensor& v, const at::Tensor& slots,
                        const at::Tensor& rows) {
  TORCH_INTERNAL_ASSERT(allocated(), "prefill into a released KV cache; Allocate() it first");
  const int64_t tokens = k.size(2);
  TORCH_INTERNAL_ASSERT(tokens <= shape_.max_len, "prefill of ", tokens, " tokens exceeds the cache's ",
                        shape_.max_len);
  keys_[size_t(layer)].narrow(2, 0, tokens).index_copy_(0, slots, k.index_select(0, rows));
  values_[size_t(layer)].narrow(2, 0, tokens).index_copy_(0, slots, v.index_select(0, rows));
}

void KvCache::WriteDecode(int64_t layer, const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions) {
  TORCH_INTERNAL_ASSERT(allocated(), "decode into a released KV cache; Allocate() it first");
  const int64_t n = k.size(0);
  const at::Tensor slots = at::arange(n, positions.options());
  // Advanced indices on dims 0 and 2 around a slice: the indexed shape is [N, K, E].
  const c10::List<c10::optional<at::Tensor>> index{c10::optional<at::Tensor>(slots), c10::optional<at::Tensor>(),
                                                   c10::optional<at::Tensor>(positions)};
  keys_[size_t(layer)].index_put_(index, k);
  values_[size_t(layer)].index_put_(index, v);
}

at::Tensor KvCache::Keys(int64_t layer, int64_t num_slots, int64_t length) const {
  TORCH_INTERNAL_ASSERT(allocated(), "attention over a released KV cache; Allocate() it first");
  return keys_[size_t(layer)].narrow(0, 0, num_slots).narrow(2, 0, length);
}

at::Tensor KvCache::Values(int64_t layer, int64_t num_slots, int64_t length) const {
  TORCH_INTERNAL_ASSERT(allocated(), "attention over a released KV cache; Allocate() it first");
  return values_[size_t(layer)].narrow(0, 0, num_slots).narrow(2, 0, length);
}

void KvCache::MoveSlot(int64_t from, int64_t to, int64_t length) {
  if (from == to || length == 0) return;
  for (size_t l = 0; l < keys_.size(); ++l) {
    keys_[l].select(0, to).narrow(1, 0, length).copy_(keys_[l].select(0, from).narrow(1, 0, length));
    values_[l].select(0, to).narrow(1, 0, length).copy_(values_[l].select(0, from).narrow(1, 0, length));
  }
}

}  // namespace llamarl
