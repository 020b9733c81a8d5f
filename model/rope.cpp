#include "model/rope.h"

#include "model/llama_config.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>

namespace llamarl {

at::Tensor RopeInverseFrequencies(const LlamaConfig& config) {
  const int64_t dim = config.head_dim;
  // The same f32 operations in the same order as HF, so that inv_freq matches it bit for bit.
  at::Tensor exponent = at::arange(0, dim, 2, at::kLong).to(at::kFloat) / double(dim);
  at::Tensor inv_freq = 1.0 / at::pow(config.rope_theta, exponent);
  if (!config.rope_scaling) return inv_freq;

  const Llama3RopeScaling& s = *config.rope_scaling;
  const double old_context_len = double(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context_len / s.low_freq_factor;
  const double high_freq_wavelen = old_context_len / s.high_freq_factor;
  at::Tensor wavelen = 2 * M_PI / inv_freq;
  // Long wavelengths (beyond the original context) are stretched by `factor`.
  at::Tensor scaled = at::where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq);
  at::Tensor smooth = (old_context_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
  at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  at::Tensor is_medium = at::logical_not(wavelen < high_freq_wavelen).logical_and(
      at::logical_not(wavelen > low_freq_wavelen));
  return at::where(is_medium, smoothed, scaled);
}

RopeCosSin RopeAtPositions(const at::Tensor& inv_freq, const at::Tensor& position_ids, at::ScalarType dtype) {
  TORCH_CHECK(position_ids.dim() == 2, "position_ids must be [batch, tokens], got shape ", position_ids.sizes());
  TORCH_CHECK(!at::isFloatingType(position_ids.scalar_type()), "position_ids must be integer, got ",
              position_ids.scalar_type());
  at::Tensor freq = inv_freq.to(position_ids.device(), at::kFloat);
  // [B, T, 1] * [E/2] in f32 gives exactly HF's [B, E/2, 1] @ [B, 1, T] (one product per element).
  at::Tensor freqs = position_ids.to(at::kFloat).unsqueeze(-1) * freq;
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor ApplyRope(const at::Tensor& x, const RopeCosSin& rope) {
  TORCH_CHECK(x.dim() == 4, "ApplyRope expects [batch, heads, tokens, head_dim], got shape ", x.sizes());
  const int64_t half = x.size(-1) / 2;
  at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  at::Tensor cos = rope.cos.unsqueeze(1), sin = rope.sin.unsqueeze(1);
  return x * cos + rotated * sin;
}

}  // namespace llamarl
