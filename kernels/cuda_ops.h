// The torch::Tensor side of the CUDA kernels (implemented in kernels/ops_cuda.cpp, which calls the
// raw-pointer launchers of kernels/cuda_launchers.h on the current c10 CUDA stream). The public
// functions in kernels/*.h validate shapes and dtypes, then call these for CUDA tensors; inputs
// arrive contiguous. Without LLAMARL_CUDA each of them throws a message that says how to get CUDA.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace llamarl::kernels::cuda {

#ifdef LLAMARL_HAVE_CUDA
// x_RC: [R, C] f32/bf16/f16, scales: [R] or [1] f32 -> out_RC: [R, C] uint8.
void EncodeFp8E4m3(const at::Tensor& x, const at::Tensor& scales, bool per_row, at::Tensor& out);
// data_RC: [R, C] uint8, scales: [R] or [1] f32 -> out_RC: [R, C] f32/bf16/f16.
void DecodeFp8E4m3(const at::Tensor& data, const at::Tensor& scales, bool per_row, at::Tensor& out);
// x: [R, D], weight: [D] (x's dtype) -> y: [R, D], rstd: [R] f32.
void RmsNormForward(const at::Tensor& x, const at::Tensor& weight, double eps, at::Tensor& y, at::Tensor& rstd);
// grad, x: [R, D], weight: [D], rstd: [R] -> grad_x: [R, D] (x's dtype), grad_w: [D] f32.
void RmsNormBackward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& rstd,
                     at::Tensor& grad_x, at::Tensor& grad_w);
// x: [N, H, Dh], positions: [N] int64, inv_freq: [Dh/2] f32 -> out: [N, H, Dh]; inverse rotates back.
void Rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq, double attention_scaling,
          bool inverse, at::Tensor& out);
// Folds a logits tile [Tc, Vc] f32 (columns [v0, v0 + Vc), overwritten) into the online
// log-sum-exp state max, sum, weighted, target_logit ([Tc] f32 each); targets: [Tc] int64.
void FoldLogprobsTile(at::Tensor& logits, const at::Tensor& targets, int64_t v0, bool first, bool with_entropy,
                      at::Tensor& max, at::Tensor& sum, at::Tensor& weighted, at::Tensor& target_logit);
// Turns a logits tile [Tc, Vc] f32 into d(loss)/d(logits) in place; lse, grad_logprobs: [Tc] f32,
// entropy and grad_entropy: [Tc] f32 or both undefined.
void LogprobsTileGradient(at::Tensor& logits, const at::Tensor& targets, int64_t v0, const at::Tensor& lse,
                          const at::Tensor& grad_logprobs, const at::Tensor& entropy, const at::Tensor& grad_entropy);
// logits: [B, V], seeds, offsets: [B] int64 -> tokens: [B] int64, logprobs: [B] f32 (see sampling.h).
void SampleTokens(const at::Tensor& logits, double temperature, int64_t top_k, double top_p, const at::Tensor& seeds,
                  const at::Tensor& offsets, at::Tensor& tokens, at::Tensor& logprobs);
#else
[[noreturn]] void ThrowBuiltWithoutCuda(const char* op);
// Accepts any arguments so that the call sites compile unchanged in a CPU-only build.
#define LLAMARL_CUDA_OP_UNAVAILABLE(name) \
  template <typename... Args>             \
  [[noreturn]] void name(const Args&...) { ThrowBuiltWithoutCuda(#name); }
LLAMARL_CUDA_OP_UNAVAILABLE(EncodeFp8E4m3)
LLAMARL_CUDA_OP_UNAVAILABLE(DecodeFp8E4m3)
LLAMARL_CUDA_OP_UNAVAILABLE(RmsNormForward)
LLAMARL_CUDA_OP_UNAVAILABLE(RmsNormBackward)
LLAMARL_CUDA_OP_UNAVAILABLE(Rope)
LLAMARL_CUDA_OP_UNAVAILABLE(FoldLogprobsTile)
LLAMARL_CUDA_OP_UNAVAILABLE(LogprobsTileGradient)
LLAMARL_CUDA_OP_UNAVAILABLE(SampleTokens)
#undef LLAMARL_CUDA_OP_UNAVAILABLE
#endif

}  // namespace llamarl::kernels::cuda
