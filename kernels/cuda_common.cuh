// Helpers shared by the kernels/*.cu files: error checking at the CUDA boundary, element loads and
// stores for f32/bf16/f16 with f32 arithmetic, and block-wide reductions. CUDA C++ only.
#pragma once

#include "core/check.h"
#include "kernels/cuda_launchers.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <string>
#include <type_traits>

// Both throw the project's one exception type (core/check.h): a failed CUDA call is an llamarl::Error
// (out of memory, a lost device: what a user can meet), a launcher given bad sizes an InternalError
// (the LibTorch binding in ops_cuda.cpp checks every argument first). check.h's classes are inline,
// so the .cu files need nothing linked from core.
#define LLAMARL_CUDA_CHECK(expr)                                                                        \
  do {                                                                                                  \
    const cudaError_t llamarl_status_ = (expr);                                                         \
    if (llamarl_status_ != cudaSuccess)                                                                 \
      throw ::llamarl::Error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " #expr        \
                             " failed: " + cudaGetErrorString(llamarl_status_));                        \
  } while (0)

// Launch errors (bad configuration) are reported by cudaGetLastError right after the launch.
#define LLAMARL_CUDA_CHECK_LAUNCH() LLAMARL_CUDA_CHECK(cudaGetLastError())

#define LLAMARL_CUDA_REQUIRE(cond, message)                                                               \
  do {                                                                                                    \
    if (!(cond))                                                                                          \
      throw ::llamarl::InternalError(std::string(__func__) + ": " + (message) + " (" #cond ")");          \
  } while (0)

namespace llamarl::kernels::cuda {

__device__ __forceinline__ float LoadF32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float LoadF32(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ float LoadF32(const __half* p, int64_t i) { return __half2float(p[i]); }

// Round-to-nearest-even, as LibTorch's CPU casts do, so CPU and CUDA results agree bit for bit.
__device__ __forceinline__ void StoreF32(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void StoreF32(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }
__device__ __forceinline__ void StoreF32(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

// Rounds through the storage type (e.g. to mimic an op that materialises a bf16 intermediate).
template <typename T>
__device__ __forceinline__ float RoundTo(float v) {
  T tmp;
  StoreF32(&tmp, 0, v);
  return LoadF32(&tmp, 0);
}

// Calls f with a null pointer of the C++ type that `type` names, to pick a template instance.
template <typename F>
void DispatchFloatType(FloatType type, F&& f) {
  switch (type) {
    case FloatType::kF32: f(static_cast<float*>(nullptr)); break;
    case FloatType::kBF16: f(static_cast<__nv_bfloat16*>(nullptr)); break;
    case FloatType::kF16: f(static_cast<__half*>(nullptr)); break;
  }
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

__device__ __forceinline__ float WarpMax(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, offset));
  return v;
}

// Block-wide sum/max for blockDim.x a multiple of 32 (<= 1024); every thread gets the result.
// `scratch` must hold 32 floats; the trailing __syncthreads lets callers reuse it immediately.
template <bool kMax>
__device__ float BlockReduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, num_warps = blockDim.x >> 5;
  v = kMax ? WarpMax(v) : WarpSum(v);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const float identity = kMax ? -INFINITY : 0.0f;
  float r = lane < num_warps ? scratch[lane] : identity;
  r = kMax ? WarpMax(r) : WarpSum(r);
  __syncthreads();
  return r;
}

__device__ __forceinline__ float BlockSum(float v, float* scratch) { return BlockReduce<false>(v, scratch); }
__device__ __forceinline__ float BlockMax(float v, float* scratch) { return BlockReduce<true>(v, scratch); }

inline unsigned GridFor(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 65535 * 32 ? blocks : 65535 * 32);
}

}  // namespace llamarl::kernels::cuda
