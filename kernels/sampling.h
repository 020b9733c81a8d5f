// Top-k / top-p (nucleus) sampling of one token per row of logits, reproducible per row: row b's
// draw depends only on its logits, the options, seeds[b] and offsets[b] (the Philox4x32-10 key and
// counter of kernels/scalar_math.h), never on the other rows of the batch or on the device. A
// generator passes each request's seed and the index of the token being sampled as the offset.
// Legend: B = rows (sequences), V = vocabulary.
//
// The kept set is defined by thresholds, so it does not depend on sort stability:
//   z = logits / temperature; top_k keeps z >= the k-th largest z (ties at the threshold are all
//   kept); top_p then keeps z >= the largest threshold whose kept mass (under softmax(z) restricted
//   to the top-k set) is at least top_p. The token is drawn by inverse CDF over the kept set in
//   vocabulary order with one uniform u = PhiloxUniform(seed, offset).
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace llamarl::kernels {

struct SamplingOptions {
  double temperature = 1.0;  // 0 means greedy (argmax, lowest index on ties); otherwise > 0
  int64_t top_k = 0;         // keep the k most likely tokens; 0 keeps all
  double top_p = 1.0;        // keep the smallest most-likely set with mass >= top_p; in (0, 1]
};

struct SampledTokens {
  at::Tensor tokens;    // [B] int64
  at::Tensor logprobs;  // [B] float32: log softmax(logits / temperature)[token] over the full
                        // vocabulary (temperature 1 when greedy), as the trainer recomputes it
};

// logits: [B, V] float32/bfloat16/float16 (-inf masks a token; NaN and +inf are rejected),
// seeds: [B] int64, offsets: [B] int64 or undefined (all 0). CPU, and CUDA under LLAMARL_CUDA.
SampledTokens SampleTokens(const at::Tensor& logits, const SamplingOptions& options, const at::Tensor& seeds,
                           const at::Tensor& offsets = at::Tensor());

}  // namespace llamarl::kernels
