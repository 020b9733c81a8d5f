#include "generator/kv_cache.h"

#include "core/check.h"

#include <ATen/ATen.h>

namespace llamarl {

KvCache::KvCache(const KvCacheShape& shape, const at::TensorOptions& options) : shape_(shape), options_(options) {
  LLAMARL_CHECK(shape.num_layers > 0 && shape.num_blocks > 0 && shape.block_size > 0 && shape.num_kv_heads > 0 &&
                  shape.head_dim > 0,
                "KV cache sizes must be positive, got layers ", shape.num_layers, ", blocks ", shape.num_blocks,
                ", block_size ", shape.block_size, ", kv heads ", shape.num_kv_heads, ", head_dim ", shape.head_dim);
  Allocate();
}

void KvCache::Allocate() {
  if (allocated()) return;
  // Zeroed, not empty: attention multiplies masked positions by a zero weight, and 0 * NaN from
  // uninitialised memory would poison the row.
  const std::vector<int64_t> sizes{shape_.num_blocks, shape_.block_size, shape_.num_kv_heads, shape_.head_dim};
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

void KvCache::Write(int64_t layer, const at::Tensor& k, const at::Tensor& v, const at::Tensor& slots) {
  LLAMARL_ASSERT(allocated(), "write into a released KV cache; Allocate() it first");
  const int64_t num_slots = shape_.num_blocks * shape_.block_size;
  keys_[size_t(layer)].view({num_slots, shape_.num_kv_heads, shape_.head_dim}).index_copy_(0, slots, k);
  values_[size_t(layer)].view({num_slots, shape_.num_kv_heads, shape_.head_dim}).index_copy_(0, slots, v);
}

std::pair<at::Tensor, at::Tensor> KvCache::Gather(int64_t layer, const at::Tensor& blocks, int64_t length) const {
  LLAMARL_ASSERT(allocated(), "attention over a released KV cache; Allocate() it first");
  const int64_t n = blocks.size(0), per_row = blocks.size(1) * shape_.block_size;
  LLAMARL_ASSERT(length <= per_row, "gather of ", length, " positions from ", per_row);
  const at::Tensor flat = blocks.reshape({-1});
  auto gather = [&](const at::Tensor& pool) {
    return pool.index_select(0, flat).view({n, per_row, shape_.num_kv_heads, shape_.head_dim}).narrow(1, 0, length);
  };
  return {gather(keys_[size_t(layer)]), gather(values_[size_t(layer)])};
}

kernels::PagedKv KvCache::Paged(int64_t layer, const at::Tensor& blocks, const at::Tensor& lengths) const {
  LLAMARL_ASSERT(allocated(), "attention over a released KV cache; Allocate() it first");
  return {keys_[size_t(layer)], values_[size_t(layer)], blocks, lengths};
}

void KvCache::CopyBlocks(const std::vector<std::pair<int64_t, int64_t>>& copies) {
  if (copies.empty()) return;
  LLAMARL_ASSERT(allocated(), "copy within a released KV cache; Allocate() it first");
  std::vector<int64_t> from, to;
  for (const auto& [f, t] : copies) {
    from.push_back(f);
    to.push_back(t);
  }
  const auto device = keys_.front().device();
  const at::Tensor from_t = at::tensor(from, at::kLong).to(device), to_t = at::tensor(to, at::kLong).to(device);
  for (size_t l = 0; l < keys_.size(); ++l) {
    keys_[l].index_copy_(0, to_t, keys_[l].index_select(0, from_t));
    values_[l].index_copy_(0, to_t, values_[l].index_select(0, from_t));
  }
}

}  // namespace llamarl
