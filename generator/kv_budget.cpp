#include "generator/kv_budget.h"

#include "core/check.h"

#include <fstream>
#include <string>

namespace llamarl {

int64_t KvCacheBytesPerTokenPerLayer(const LlamaConfig& config, int64_t tp_size, int64_t dtype_bytes) {
  LLAMARL_CHECK(tp_size >= 1 && config.num_key_value_heads % tp_size == 0, "generator tp_size (", tp_size,
                ") must divide num_key_value_heads (", config.num_key_value_heads, ")");
  return 2 * (config.num_key_value_heads / tp_size) * config.head_dim * dtype_bytes;
}

KvCacheSize SizeKvCache(const LlamaConfig& config, const KvCacheConfig& kv, const KvCacheSizing& sizing) {
  LLAMARL_CHECK(kv.block_size >= 1, "generator.kv_block_size must be >= 1 token, got ", kv.block_size);
  LLAMARL_CHECK(kv.bytes >= 0, "generator.kv_cache_bytes must be >= 0 (0 = kv_cache_fraction or the default), got ",
                kv.bytes);
  LLAMARL_CHECK(kv.fraction >= 0 && kv.fraction <= 1, "generator.kv_cache_fraction must be in [0, 1] (0 = off), got ",
                kv.fraction);
  KvCacheSize size;
  size.block_size = kv.block_size;
  size.bytes_per_block = KvCacheBytesPerTokenPerLayer(config, sizing.tp_size, sizing.dtype_bytes) *
                         config.num_hidden_layers * kv.block_size;
  std::string source;
  if (kv.bytes > 0) {
    size.num_blocks = kv.bytes / size.bytes_per_block;
    source = "generator.kv_cache_bytes (" + std::to_string(kv.bytes) + ")";
  } else if (kv.fraction > 0) {
    size.num_blocks = int64_t(kv.fraction * double(sizing.memory_left_bytes)) / size.bytes_per_block;
    source = "generator.kv_cache_fraction (" + std::to_string(kv.fraction) + ") of the " +
             std::to_string(sizing.memory_left_bytes) + " bytes left";
  } else {
    size.num_blocks = (sizing.default_tokens + kv.block_size - 1) / kv.block_size;
    source = "the default of " + std::to_string(sizing.default_tokens) + " tokens";
  }
  LLAMARL_CHECK(size.num_blocks >= 1, "the KV cache budget, ", source, ", holds no block of ", kv.block_size,
                " tokens (", size.bytes_per_block, " bytes over ", config.num_hidden_layers,
                " layers); raise generator.kv_cache_bytes to at least ", size.bytes_per_block);
  size.budget_bytes = size.num_blocks * size.bytes_per_block;
  return size;
}

int64_t HostMemoryAvailableBytes() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key, unit;
  int64_t kib = 0;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemAvailable:") return kib * 1024;
  }
  return 0;
}

}  // namespace llamarl
