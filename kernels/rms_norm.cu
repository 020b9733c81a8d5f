// RMSNorm forward and backward (see kernels/rms_norm.h for the math and the rounding contract).
#include "kernels/cuda_common.cuh"

namespace llamarl::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxSplits = 64;

// x: [R, D] T, weight: [D] T -> y: [R, D] T, rstd: [R] f32. One block per row.
template <typename T>
__global__ void RmsNormForwardKernel(const T* __restrict__ x, const T* __restrict__ weight, float eps, int64_t dim,
                                     T* __restrict__ y, float* __restrict__ rstd) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const T* x_row = x + row * dim;
  float sum_sq = 0.0f;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    const float v = LoadF32(x_row, d);
    sum_sq += v * v;
  }
  sum_sq = BlockSum(sum_sq, scratch);
  const float inv = 1.0f / sqrtf(sum_sq / static_cast<float>(dim) + eps);  // IEEE, as on the CPU
  if (threadIdx.x == 0) rstd[row] = inv;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    const float normalised = RoundTo<T>(LoadF32(x_row, d) * inv);
    StoreF32(y, row * dim + d, LoadF32(weight, d) * normalised);
  }
}

// grad, x: [R, D] T, weight: [D] T, rstd: [R] -> grad_x: [R, D] T. One block per row:
// grad_x = rstd * (g*w - n * mean(g*w*n)), n = x * rstd.
template <typename T>
__global__ void RmsNormBackwardInputKernel(const T* __restrict__ grad, const T* __restrict__ x,
                                           const T* __restrict__ weight, const float* __restrict__ rstd, int64_t dim,
                                           T* __restrict__ grad_x) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float inv = rstd[row];
  float dot = 0.0f;
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x)
    dot += LoadF32(grad, row * dim + d) * LoadF32(weight, d) * LoadF32(x, row * dim + d) * inv;
  const float mean_dot = BlockSum(dot, scratch) / static_cast<float>(dim);
  for (int64_t d = threadIdx.x; d < dim; d += blockDim.x) {
    const float n = LoadF32(x, row * dim + d) * inv;
    StoreF32(grad_x, row * dim + d, inv * (LoadF32(grad, row * dim + d) * LoadF32(weight, d) - n * mean_dot));
  }
}

// partials: [S, D] f32 with partials[s, d] = sum over rows r = s, s+S, ... of g[r, d] * n[r, d].
// Grid (ceil(D / threads), S); a fixed split keeps the summation order deterministic.
template <typename T>
__global__ void RmsNormWeightPartialsKernel(const T* __restrict__ grad, const T* __restrict__ x,
                                            const float* __restrict__ rstd, int64_t num_rows, int64_t dim,
                                            float* __restrict__ partials) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= dim) return;
  float acc = 0.0f;
  for (int64_t r = blockIdx.y; r < num_rows; r += gridDim.y) acc += LoadF32(grad, r * dim + d) * LoadF32(x, r * dim + d) * rstd[r];
  partials[blockIdx.y * dim + d] = acc;
}

// partials: [S, D] -> grad_w: [D] f32.
__global__ void SumPartialsKernel(const float* __restrict__ partials, int64_t num_splits, int64_t dim,
                                  float* __restrict__ grad_w) {
  const int64_t d = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (d >= dim) return;
  float acc = 0.0f;
  for (int64_t s = 0; s < num_splits; ++s) acc += partials[s * dim + d];
  grad_w[d] = acc;
}

}  // namespace

int64_t RmsNormBackwardWorkspaceFloats(int64_t num_rows, int64_t dim) {
  return (num_rows < kMaxSplits ? num_rows : kMaxSplits) * dim;
}

void LaunchRmsNormForward(const RmsNormArgs& a, void* y, float* rstd, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(a.num_rows >= 0 && a.dim > 0, "need num_rows >= 0 and dim > 0");
  if (a.num_rows == 0) return;
  DispatchFloatType(a.type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    RmsNormForwardKernel<T><<<static_cast<unsigned>(a.num_rows), kThreads, 0, stream>>>(
        static_cast<const T*>(a.x), static_cast<const T*>(a.weight), a.eps, a.dim, static_cast<T*>(y), rstd);
  });
  LLAMARL_CUDA_CHECK_LAUNCH();
}

void LaunchRmsNormBackward(const RmsNormArgs& a, const void* grad, const float* rstd, void* grad_x, float* grad_w,
                           float* workspace, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(a.num_rows >= 0 && a.dim > 0, "need num_rows >= 0 and dim > 0");
  if (a.num_rows == 0) {
    LLAMARL_CUDA_CHECK(cudaMemsetAsync(grad_w, 0, sizeof(float) * a.dim, stream));
    return;
  }
  const int64_t num_splits = RmsNormBackwardWorkspaceFloats(a.num_rows, a.dim) / a.dim;
  const unsigned column_blocks = static_cast<unsigned>((a.dim + kThreads - 1) / kThreads);
  DispatchFloatType(a.type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    const T* g = static_cast<const T*>(grad);
    const T* x = static_cast<const T*>(a.x);
    RmsNormBackwardInputKernel<T><<<static_cast<unsigned>(a.num_rows), kThreads, 0, stream>>>(
        g, x, static_cast<const T*>(a.weight), rstd, a.dim, static_cast<T*>(grad_x));
    LLAMARL_CUDA_CHECK_LAUNCH();
    RmsNormWeightPartialsKernel<T><<<dim3(column_blocks, static_cast<unsigned>(num_splits)), kThreads, 0, stream>>>(
        g, x, rstd, a.num_rows, a.dim, workspace);
    LLAMARL_CUDA_CHECK_LAUNCH();
  });
  SumPartialsKernel<<<column_blocks, kThreads, 0, stream>>>(workspace, num_splits, a.dim, grad_w);
  LLAMARL_CUDA_CHECK_LAUNCH();
}

}  // namespace llamarl::kernels::cuda
