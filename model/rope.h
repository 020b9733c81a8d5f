// Rotary position embedding as Hugging Face applies it to the Llama family: "rotate half" layout
// (dimension i pairs with i + head_dim/2), frequencies base^(-2i/head_dim), optionally rescaled by
// Llama 3.1's frequency-dependent "llama3" rule. cos/sin are computed in f32 and then cast to the
// activations' dtype, as HF does, so bf16 models round exactly where HF rounds.
// Legend: B = batch, T = tokens, H = heads, E = head_dim.
#pragma once

#include <ATen/core/Tensor.h>

namespace llamarl {

struct LlamaConfig;

// cos and sin at given positions: [B, T, E] each, in the activations' dtype, on their device.
struct RopeCosSin {
  at::Tensor cos;
  at::Tensor sin;
};

// inv_freq [E/2] f32 on the CPU (HF's _compute_default_rope_parameters / _compute_llama3_parameters).
at::Tensor RopeInverseFrequencies(const LlamaConfig& config);

// position_ids: [B, T] integer; inv_freq from RopeInverseFrequencies (moved to position_ids' device).
RopeCosSin RopeAtPositions(const at::Tensor& inv_freq, const at::Tensor& position_ids, at::ScalarType dtype);

// x: [B, H, T, E]; returns x * cos + rotate_half(x) * sin in x's dtype.
at::Tensor ApplyRope(const at::Tensor& x_BHTE, const RopeCosSin& rope);

}  // namespace llamarl
