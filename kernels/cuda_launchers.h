// Host launchers of the CUDA kernels in kernels/*.cu: plain C++ on raw device pointers, no LibTorch,
// so the .cu files build with nvcc alone. Each launcher checks its sizes, launches on `stream` and
// checks the launch; errors are thrown as llamarl::Error (core/check.h) with the CUDA error string.
// Pointers are to contiguous row-major memory; shapes are given in the comments (R rows, C columns).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace llamarl::kernels::cuda {

// The element type of a floating tensor argument.
enum class FloatType { kF32, kBF16, kF16 };

// x: [R, C] of `type`, scales: [R] (per_row) or [1] f32 -> out: [R, C] e4m3fn bytes.
void LaunchEncodeFp8E4m3(const void* x, FloatType type, const float* scales, bool per_row, int64_t num_rows,
                         int64_t num_cols, uint8_t* out, cudaStream_t stream);
// data: [R, C] e4m3fn bytes, scales: [R] or [1] f32 -> out: [R, C] of `type`.
void LaunchDecodeFp8E4m3(const uint8_t* data, const float* scales, bool per_row, int64_t num_rows, int64_t num_cols,
                         void* out, FloatType type, cudaStream_t stream);

struct RmsNormArgs {
  const void* x;       // [R, D] of `type`
  const void* weight;  // [D] of `type`
  FloatType type;
  int64_t num_rows, dim;
  float eps;
};
// -> y: [R, D] of `type`, rstd: [R] f32.
void LaunchRmsNormForward(const RmsNormArgs& args, void* y, float* rstd, cudaStream_t stream);
// Floats of scratch LaunchRmsNormBackward needs for the weight gradient's partial sums.
int64_t RmsNormBackwardWorkspaceFloats(int64_t num_rows, int64_t dim);
// grad: [R, D], rstd: [R] -> grad_x: [R, D] of `type`, grad_w: [D] f32.
void LaunchRmsNormBackward(const RmsNormArgs& args, const void* grad, const float* rstd, void* grad_x, float* grad_w,
                           float* workspace, cudaStream_t stream);

struct RopeArgs {
  const void* x;            // [N, H, Dh] of `type`
  FloatType type;
  const int64_t* positions;  // [N]
  const float* inv_freq;     // [Dh/2]
  float attention_scaling;
  bool inverse;              // rotate by -angle (the backward)
  int64_t num_tokens, num_heads, head_dim;
};
// -> out: [N, H, Dh] of `type` (may not alias x).
void LaunchRope(const RopeArgs& args, void* out, cudaStream_t stream);

struct LogprobsTileArgs {
  float* logits;           // [rows, cols] f32, contiguous; columns are vocabulary ids [v0, v0 + cols)
  const int64_t* targets;  // [rows]
  int64_t rows, cols, v0;
};
// Folds the tile into the online log-sum-exp state ([rows] f32 each; see token_logprobs.cpp).
void LaunchFoldLogprobsTile(const LogprobsTileArgs& args, bool first, bool with_entropy, float* max, float* sum,
                            float* weighted, float* target_logit, cudaStream_t stream);
// Overwrites the tile with d(loss)/d(logits); entropy and grad_entropy are both null or both [rows].
void LaunchLogprobsTileGradient(const LogprobsTileArgs& args, const float* lse, const float* grad_logprobs,
                                const float* entropy, const float* grad_entropy, cudaStream_t stream);

struct SampleArgs {
  const void* logits;  // [B, V] of `type`
  FloatType type;
  int64_t batch, vocab;
  double temperature;  // 0 = greedy
  int64_t top_k;
  double top_p;
  const int64_t* seeds;    // [B]
  const int64_t* offsets;  // [B]
};
// -> tokens: [B] i64, logprobs: [B] f32.
void LaunchSampleTokens(const SampleArgs& args, int64_t* tokens, float* logprobs, cudaStream_t stream);

}  // namespace llamarl::kernels::cuda
