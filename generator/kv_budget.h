// How big the engine's paged KV cache is: the budget a user sets (bytes, or a fraction of the memory
// left once the weights are loaded), turned into whole blocks. LibTorch-free, so that a dry run or a
// planner can print the engine's KV bytes without building anything: what SizeKvCache returns is
// exactly what Engine allocates for the same inputs (Engine::KvStats().budget_bytes).
//
// One token's keys and values in one layer on one tensor-parallel rank take
//   KvCacheBytesPerTokenPerLayer = 2 * (num_key_value_heads / tp_size) * head_dim * dtype_bytes,
// a block of B tokens over every layer num_hidden_layers * B times that. The cache is in the
// engine's compute dtype (the weights' dtype: 4 bytes for f32, 2 for bf16).
#pragma once

#include "model/llama_config.h"

#include <cstdint>

namespace llamarl {

// The recipe's generator.kv_cache_bytes / kv_cache_fraction / kv_block_size (GeneratorConfig).
struct KvCacheConfig {
  int64_t bytes = 0;       // KV budget per rank in bytes; 0 = use `fraction`, else the caller's default
  double fraction = 0;     // (0, 1]: share of the memory left when the engine is built; 0 = off
  int64_t block_size = 16;  // tokens per block
};

// 2 * (kv heads / tp_size) * head_dim * dtype_bytes. Throws unless tp_size divides the kv heads.
int64_t KvCacheBytesPerTokenPerLayer(const LlamaConfig& config, int64_t tp_size, int64_t dtype_bytes);

struct KvCacheSize {
  int64_t num_blocks = 0;
  int64_t block_size = 0;
  int64_t bytes_per_block = 0;  // every layer's keys and values of block_size tokens
  int64_t budget_bytes = 0;     // num_blocks * bytes_per_block: what the engine allocates
};

struct KvCacheSizing {
  int64_t tp_size = 1;
  int64_t dtype_bytes = 4;
  int64_t memory_left_bytes = 0;  // what `fraction` is a share of (ignored unless fraction > 0)
  int64_t default_tokens = 0;     // the budget in tokens when neither bytes nor fraction is set
};

// The cache for `kv`: bytes if set, else fraction * memory_left_bytes, else default_tokens' worth
// (rounded up to whole blocks), always as whole blocks. Throws, naming the key, the sizes and the
// fix, when the budget holds less than one block.
KvCacheSize SizeKvCache(const LlamaConfig& config, const KvCacheConfig& kv, const KvCacheSizing& sizing);

// MemAvailable of /proc/meminfo: memory the host can still hand out (0 when unreadable).
int64_t HostMemoryAvailableBytes();

}  // namespace llamarl
