// float8 e4m3fn casting with per-tensor or per-row scales. The codec is the shared scalar one
// (kernels/scalar_math.h), so CUDA and CPU produce the same bytes by construction.
#include "kernels/cuda_common.cuh"
#include "kernels/scalar_math.h"

namespace llamarl::kernels::cuda {
namespace {

// x: [R, C] T, scales: [R] or [1] f32 -> out: [R, C] u8. Grid-stride over all R*C elements.
template <typename T>
__global__ void EncodeFp8E4m3Kernel(const T* __restrict__ x, const float* __restrict__ scales, bool per_row,
                                    int64_t num_rows, int64_t num_cols, uint8_t* __restrict__ out) {
  const int64_t n = num_rows * num_cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float scale = scales[per_row ? i / num_cols : 0];
    out[i] = EncodeFp8E4m3(LoadF32(x, i) / scale);
  }
}

// data: [R, C] u8, scales: [R] or [1] f32 -> out: [R, C] T.
template <typename T>
__global__ void DecodeFp8E4m3Kernel(const uint8_t* __restrict__ data, const float* __restrict__ scales, bool per_row,
                                    int64_t num_rows, int64_t num_cols, T* __restrict__ out) {
  const int64_t n = num_rows * num_cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const float scale = scales[per_row ? i / num_cols : 0];
    StoreF32(out, i, DecodeFp8E4m3(data[i]) * scale);
  }
}

constexpr int kThreads = 256;

}  // namespace

void LaunchEncodeFp8E4m3(const void* x, FloatType type, const float* scales, bool per_row, int64_t num_rows,
                         int64_t num_cols, uint8_t* out, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(num_rows >= 0 && num_cols >= 0, "sizes must be non-negative");
  if (num_rows * num_cols == 0) return;
  DispatchFloatType(type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    EncodeFp8E4m3Kernel<T><<<GridFor(num_rows * num_cols, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(x), scales, per_row, num_rows, num_cols, out);
  });
  LLAMARL_CUDA_CHECK_LAUNCH();
}

void LaunchDecodeFp8E4m3(const uint8_t* data, const float* scales, bool per_row, int64_t num_rows, int64_t num_cols,
                         void* out, FloatType type, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(num_rows >= 0 && num_cols >= 0, "sizes must be non-negative");
  if (num_rows * num_cols == 0) return;
  DispatchFloatType(type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    DecodeFp8E4m3Kernel<T><<<GridFor(num_rows * num_cols, kThreads), kThreads, 0, stream>>>(
        data, scales, per_row, num_rows, num_cols, static_cast<T*>(out));
  });
  LLAMARL_CUDA_CHECK_LAUNCH();
}

}  // namespace llamarl::kernels::cuda
