// Rotary position embedding in HF's rotate-half layout (LlamaRotaryEmbedding + apply_rotary_pos_emb):
// dims [0, Dh/2) pair with [Dh/2, Dh), and for a token at position p and frequency i
//   out[i]        = x[i] * cos(p * inv_freq[i]) - x[i + Dh/2] * sin(p * inv_freq[i])
//   out[i + Dh/2] = x[i + Dh/2] * cos(...)       + x[i] * sin(...)
// cos/sin are computed in float32 from the float32 product p * inv_freq[i], multiplied by the
// attention scaling, and rounded to x's dtype, as HF does, so bf16 results match HF's rounding.
// Legend: T = tokens, H = heads, Dh = head dim.
#pragma once

#include "kernels/rope_options.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace llamarl::kernels {

// inv_freq[i] = 1 / theta^(2i / Dh) for i in [0, Dh/2), float32, then llama3 scaling if given;
// computed in float32 in the same order as HF's _compute_default_rope_parameters and
// _compute_llama3_parameters.
at::Tensor RopeInvFreq(const RopeFrequencyOptions& options);

// What ApplyRope needs besides the positions; build once per model.
struct RopeTables {
  at::Tensor inv_freq;             // [Dh/2] float32, on the device of the activations
  double attention_scaling = 1.0;  // multiplies cos and sin (1 for default and llama3 RoPE)
};

RopeTables MakeRopeTables(const RopeFrequencyOptions& options, const at::Device& device);

// x: [..., T, H, Dh] float32/bfloat16/float16 (token-major, e.g. [T, H, Dh] for a packed batch or
// [B, T, H, Dh]; HF's [B, H, T, Dh] must be transposed first), positions: [..., T] int64 with x's
// leading dims -> the rotated tensor, x's shape and dtype. Differentiable in x (the backward is the
// inverse rotation).
at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& positions, const RopeTables& tables);

}  // namespace llamarl::kernels
