// Top-k / top-p sampling, one block per row (see kernels/sampling.h for the kept-set definition).
// The thresholds are found by bisection over the order-preserving integer keys of the float logits,
// which needs no sort: the k-th largest key is the largest c with count(key >= c) >= k, and the
// top-p threshold the largest c with mass(key >= c) >= top_p * mass(top-k set). The token is then
// drawn by inverse CDF in vocabulary order with the row's Philox uniform, as on the CPU.
#include "kernels/cuda_common.cuh"
#include "kernels/scalar_math.h"

namespace llamarl::kernels::cuda {
namespace {

constexpr int kThreads = 512;

// Monotone map float -> uint32: a < b  <=>  Key(a) < Key(b) (for non-NaN values).
__device__ __forceinline__ uint32_t Key(float f) {
  const uint32_t bits = __float_as_uint(f);
  return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

// The largest c with Predicate(c) true, for a predicate that holds for all c <= c* and fails above.
// Every thread must call it; Predicate does its own block reduction.
template <typename Predicate>
__device__ uint32_t LargestKeyWhere(Predicate holds) {
  uint32_t prefix = 0;
  for (int bit = 31; bit >= 0; --bit) {
    const uint32_t candidate = prefix | (1u << bit);
    if (holds(candidate)) prefix = candidate;
  }
  return prefix;
}

template <typename T>
__device__ float Z(const T* row, int64_t v, float inv_temperature) {
  return LoadF32(row, v) * inv_temperature;
}

// Greedy: the first maximum. Reduces (value, index) pairs through shared memory.
template <typename T>
__device__ int64_t BlockArgMax(const T* row, int64_t vocab, float* values, int64_t* indices) {
  float best = -INFINITY;
  int64_t best_index = vocab;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
    const float z = LoadF32(row, v);
    if (z > best || (z == best && v < best_index)) {
      best = z;
      best_index = v;
    }
  }
  values[threadIdx.x] = best;
  indices[threadIdx.x] = best_index;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      const float other = values[threadIdx.x + stride];
      const int64_t other_index = indices[threadIdx.x + stride];
      if (other > values[threadIdx.x] || (other == values[threadIdx.x] && other_index < indices[threadIdx.x])) {
        values[threadIdx.x] = other;
        indices[threadIdx.x] = other_index;
      }
    }
    __syncthreads();
  }
  const int64_t result = indices[0];
  __syncthreads();
  return result;
}

// logits: [B, V] T, seeds, offsets: [B] i64 -> tokens: [B] i64, logprobs: [B] f32.
template <typename T>
__global__ void SampleKernel(const T* __restrict__ logits, int64_t vocab, float inv_temperature, bool greedy,
                             int64_t top_k, float top_p, const int64_t* __restrict__ seeds,
                             const int64_t* __restrict__ offsets, int64_t* __restrict__ tokens,
                             float* __restrict__ logprobs) {
  __shared__ float scratch[32];
  __shared__ float values[kThreads];
  __shared__ int64_t indices[kThreads];
  const int64_t b = blockIdx.x;
  const T* row = logits + b * vocab;
  float max = -INFINITY;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) max = fmaxf(max, Z(row, v, inv_temperature));
  max = BlockMax(max, scratch);
  float total = 0.0f;
  for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) total += expf(Z(row, v, inv_temperature) - max);
  const float lse = max + logf(BlockSum(total, scratch));
  if (greedy) {
    const int64_t token = BlockArgMax(row, vocab, values, indices);
    if (threadIdx.x == 0) {
      tokens[b] = token;
      logprobs[b] = LoadF32(row, token) - lse;
    }
    return;
  }
  // Mass and count of the tokens whose key is >= c (and >= floor).
  auto mass_above = [&](uint32_t c, uint32_t floor) {
    float m = 0.0f;
    for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) {
      const float z = Z(row, v, inv_temperature);
      if (Key(z) >= c && Key(z) >= floor) m += expf(z - max);
    }
    return BlockSum(m, scratch);
  };
  uint32_t threshold = 0;
  if (top_k > 0 && top_k < vocab) {
    threshold = LargestKeyWhere([&](uint32_t c) {
      float count = 0.0f;  // exact: V < 2^24
      for (int64_t v = threadIdx.x; v < vocab; v += blockDim.x) count += Key(Z(row, v, inv_temperature)) >= c;
      return BlockSum(count, scratch) >= static_cast<float>(top_k);
    });
  }
  if (top_p < 1.0f) {
    const float target = top_p * mass_above(threshold, threshold);
    const uint32_t floor = threshold;
    threshold = LargestKeyWhere([&](uint32_t c) { return mass_above(c, floor) >= target; });
  }
  // Inverse CDF in vocabulary order: each thread owns a contiguous segment; an exclusive scan of the
  // segment masses finds the segment that holds u * mass, whose thread walks it.
  const int64_t segment = (vocab + blockDim.x - 1) / blockDim.x;
  const int64_t begin = threadIdx.x * segment, end = begin + segment < vocab ? begin + segment : vocab;
  float own = 0.0f;
  int64_t last_positive = -1;
  for (int64_t v = begin; v < end; ++v) {
    const float z = Z(row, v, inv_temperature);
    const float w = Key(z) >= threshold ? expf(z - max) : 0.0f;
    own += w;
    if (w > 0.0f) last_positive = v;
  }
  values[threadIdx.x] = own;
  indices[threadIdx.x] = last_positive;
  __syncthreads();
  if (threadIdx.x == 0) {
    float running = 0.0f;
    int64_t fallback = -1;
    for (int t = 0; t < blockDim.x; ++t) {
      const float mass = values[t];
      values[t] = running;  // exclusive prefix
      running += mass;
      if (indices[t] >= 0) fallback = indices[t];
    }
    scratch[0] = running;
    indices[0] = fallback;  // thread 0's own index is no longer needed
  }
  __syncthreads();
  const float target = PhiloxUniform(static_cast<uint64_t>(seeds[b]), static_cast<uint64_t>(offsets[b])) * scratch[0];
  if (threadIdx.x == 0) tokens[b] = indices[0];  // overwritten below unless rounding left no segment
  __syncthreads();
  const float start = values[threadIdx.x];
  if (start <= target && target < start + own) {
    float cumulative = start;
    for (int64_t v = begin; v < end; ++v) {
      const float z = Z(row, v, inv_temperature);
      cumulative += Key(z) >= threshold ? expf(z - max) : 0.0f;
      if (cumulative > target) {
        tokens[b] = v;
        break;
      }
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) logprobs[b] = Z(row, tokens[b], inv_temperature) - lse;
}

}  // namespace

void LaunchSampleTokens(const SampleArgs& a, int64_t* tokens, float* logprobs, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(a.batch >= 0 && a.vocab > 0 && a.vocab < (int64_t(1) << 24), "need 0 < vocab < 2^24");
  LLAMARL_CUDA_REQUIRE(a.temperature >= 0.0 && a.top_k >= 0 && a.top_p > 0.0 && a.top_p <= 1.0,
                       "need temperature >= 0, top_k >= 0 and top_p in (0, 1]");
  if (a.batch == 0) return;
  const bool greedy = a.temperature == 0.0;
  // Rounded from double exactly as the CPU path does, so both scale the logits identically.
  const float inv_temperature = greedy ? 1.0f : static_cast<float>(1.0 / a.temperature);
  DispatchFloatType(a.type, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    SampleKernel<T><<<static_cast<unsigned>(a.batch), kThreads, 0, stream>>>(
        static_cast<const T*>(a.logits), a.vocab, inv_temperature, greedy, a.top_k, static_cast<float>(a.top_p), a.seeds, a.offsets,
        tokens, logprobs);
  });
  LLAMARL_CUDA_CHECK_LAUNCH();
}

}  // namespace llamarl::kernels::cuda
