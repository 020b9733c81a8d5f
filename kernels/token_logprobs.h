// Token log-probabilities (and entropies) of a language-model head without materialising the
// [T, V] logits: the output projection is applied in [token_chunk, vocab_chunk] tiles and reduced
// with an online log-sum-exp, and the backward recomputes each tile and turns it into its gradient
// on the spot. Peak extra memory is a few tiles instead of several [T, V] float32 tensors, which at
// V = 128k-152k is what would otherwise dominate trainer memory.
//   logits   = hidden @ weight^T / temperature                 [T, V], never stored
//   logprobs = logits[t, targets[t]] - logsumexp(logits[t])    [T]
//   entropy  = -sum_v p[t, v] log p[t, v]                      [T]
// Legend: T = tokens, D = hidden size, V = vocabulary size.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace llamarl::kernels {

struct TokenLogprobsOptions {
  int64_t token_chunk = 1024;   // rows of hidden per tile
  int64_t vocab_chunk = 8192;   // rows of weight per tile; a float32 tile is token_chunk*vocab_chunk*4 bytes
  double temperature = 1.0;     // divides the logits (to score tokens under a tempered sampler)
};

struct TokenLogprobsResult {
  at::Tensor logprobs;  // [T] float32
  at::Tensor entropy;   // [T] float32
};

// hidden: [T, D], weight: [V, D] (float32, bfloat16 or float16, the same dtype), targets: [T] int64
// in [0, V) -> log p(targets[t]) as [T] float32. Differentiable in hidden and weight (gradients in
// their dtypes, accumulated in float32); the backward is tiled like the forward. Matmuls run in
// float32. CPU, and CUDA when built with LLAMARL_CUDA.
at::Tensor TokenLogprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                         const TokenLogprobsOptions& options = {});

// The same, also returning the entropy of each token's distribution; both outputs are
// differentiable (e.g. for an entropy bonus).
TokenLogprobsResult TokenLogprobsAndEntropy(const at::Tensor& hidden, const at::Tensor& weight,
                                            const at::Tensor& targets, const TokenLogprobsOptions& options = {});

}  // namespace llamarl::kernels
