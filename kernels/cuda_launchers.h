// Host launchers of the CUDA kernels in kernels/*.cu: plain C++ on raw device pointers, no LibTorch,
// so the .cu files build with nvcc alone. Each launcher checks its sizes, launches on `stream` and
// checks the launch; errors are thrown as std::runtime_error with the CUDA error string.
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

}  // namespace llamarl::kernels::cuda
