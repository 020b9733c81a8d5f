// RMSNorm as in Llama/Qwen2/Mistral (HF LlamaRMSNorm), fused forward and backward:
//   y = weight * round_to_x_dtype(x * rsqrt(mean(x^2, -1) + eps))
// The mean and the normalisation are computed in float32 whatever x's dtype; the product with the
// weight is rounded once to x's dtype, which reproduces HF's bf16 results bit for bit.
// Legend: D = the normalised (last) dim; rows = every leading dim together.
#pragma once

#include <ATen/core/Tensor.h>

namespace llamarl::kernels {

// x: [..., D] float32/bfloat16/float16, weight: [D] of x's dtype -> y: x's shape and dtype.
// Differentiable in x and weight (a custom autograd function whose backward is fused as well;
// gradients are accumulated in float32). Runs on CPU, and on CUDA when built with LLAMARL_CUDA.
at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps);

}  // namespace llamarl::kernels
