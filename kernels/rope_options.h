// The frequency options of RoPE (kernels/rope.h), LibTorch-free so that the model's config.json parser
// (model/llama_config.h, fuzzed with clang alone) holds them directly: one declaration of each.
#pragma once

#include <cstdint>
#include <optional>

namespace llamarl::kernels {

// rope_scaling {"rope_type": "llama3", ...} of Llama 3.1+: wavelengths longer than
// original_max_position_embeddings / low_freq_factor are slowed by `factor`, those shorter than
// original_max_position_embeddings / high_freq_factor kept, and the band between smoothly interpolated.
struct Llama3RopeScalingOptions {
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct RopeFrequencyOptions {
  double theta = 10000.0;   // rope_theta (the base)
  int64_t head_dim = 0;     // Dh, even
  std::optional<Llama3RopeScalingOptions> llama3;  // absent: the default (unscaled) RoPE
};

}  // namespace llamarl::kernels
