// Rotary position embedding, HF rotate-half layout (see kernels/rope.h for the math and rounding).
#include "kernels/cuda_common.cuh"

namespace llamarl::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// x: [N, H, Dh] T, positions: [N] i64, inv_freq: [Dh/2] f32 -> out: [N, H, Dh] T.
// One thread per rotated pair (i, i + Dh/2); sign = -1 applies the inverse rotation.
template <typename T>
__global__ void RopeKernel(const T* __restrict__ x, const int64_t* __restrict__ positions,
                           const float* __restrict__ inv_freq, float attention_scaling, float sign, int64_t num_tokens,
                           int64_t num_heads, int64_t head_dim, T* __restrict__ out) {
  const int64_t half = head_dim / 2, pairs_per_token = num_heads * half;
  const int64_t total = num_tokens * pairs_per_token;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t token = i / pairs_per_token, head = (i % pairs_per_token) / half, k = i % half;
    const float angle = inv_freq[k] * static_cast<float>(positions[token]);
    const float c = RoundTo<T>(cosf(angle) * attention_scaling);
    const float s = sign * RoundTo<T>(sinf(angle) * attention_scaling);
    const int64_t base = token * num_heads * head_dim + head * head_dim;
    const float x1 = LoadF32(x, base + k), x2 = LoadF32(x, base + k + half);
    StoreF32(out, base + k, RoundTo<T>(x1 * c) + RoundTo<T>(-x2 * s));
    StoreF32(out, base + k + half, RoundTo<T>(x2 * c) + RoundTo<T>(x1 * s));
  }
}

}  // namespace

void LaunchRope(const RopeArgs& a, void* out, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(a.num_tokens >= 0 && a.num_heads > 0 && a.head_dim > 0 && a.head_dim % 2 == 0,
                       "need num_tokens >= 0, num_heads > 0 and an even head_dim > 0");
  const int64_t total = a.num_tokens * a.num_heads * (a.head_dim / 2);
  if (total == 0) return;
  DispatchFloatType(a.type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    RopeKernel<T><<<GridFor(total, kThreads), kThreads, 0, stream>>>(
        static_cast<const T*>(a.x), a.positions, a.inv_freq, a.attention_scaling, a.inverse ? -1.0f : 1.0f,
        a.num_tokens, a.num_heads, a.head_dim, static_cast<T*>(out));
  });
  LLAMARL_CUDA_CHECK_LAUNCH();
}

}  // namespace llamarl::kernels::cuda
