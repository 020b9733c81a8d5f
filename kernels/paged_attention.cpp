#include "kernels/paged_attention.h"

#include "core/check.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace llamarl::kernels {
namespace {

// The per-sequence loop is compiled twice: for the build's baseline ISA, and (GCC/Clang on x86-64) for
// AVX2 + FMA, picked at run time, since the build does not assume AVX2 and the loop is otherwise
// left at SSE width. Everything it calls is force-inlined so that the AVX2 copy is AVX2 throughout.
#if defined(__GNUC__) && defined(__x86_64__)
#define LLAMARL_ATTEND_INLINE inline __attribute__((always_inline))
#define LLAMARL_ATTEND_AVX2 1
#else
#define LLAMARL_ATTEND_INLINE inline
#endif

// Eight independent partial sums, so that the compiler vectorises the loop without reassociating.
template <typename T>
LLAMARL_ATTEND_INLINE float Dot(const float* __restrict q, const T* __restrict k, int64_t dim) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t d = 0;
  for (; d + 8 <= dim; d += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += q[d + j] * static_cast<float>(k[d + j]);
  }
  float tail = 0;
  for (; d < dim; ++d) tail += q[d] * static_cast<float>(k[d]);
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// out += p * v
template <typename T>
LLAMARL_ATTEND_INLINE void Axpy(float p, const T* __restrict v, float* __restrict out, int64_t dim) {
  int64_t d = 0;
  for (; d + 8 <= dim; d += 8) {
    for (int j = 0; j < 8; ++j) out[d + j] += p * static_cast<float>(v[d + j]);
  }
  for (; d < dim; ++d) out[d] += p * static_cast<float>(v[d]);
}

struct Sizes {
  int64_t n, heads, kv_heads, head_dim, block_size, blocks_per_row;
  int64_t ScratchFloats(int64_t length) const { return heads * (length + 2 * head_dim); }
};

template <typename T>
struct Sequence {
  const T* q;              // [H, E]
  const T* keys;           // the layer's whole pools
  const T* values;
  const int64_t* blocks;   // [NB]
  int64_t length;
  T* out;                  // [H, E]
};

// One sequence: every query head against its first `length` positions, read block by block from the
// cache (a position's K * E keys are contiguous, so each block is one sequential read). scratch holds
// ScratchFloats(length) floats: H * E query and sum values and H * length scores.
template <typename T>
LLAMARL_ATTEND_INLINE void AttendSequenceBody(const Sizes& s, const Sequence<T>& seq, float* scratch) {
  const int64_t heads = s.heads, groups = s.heads / s.kv_heads, dim = s.head_dim, row_stride = s.kv_heads * dim;
  const int64_t length = seq.length;
  float* q_f = scratch;                // [H, E]
  float* acc = q_f + heads * dim;      // [H, E]
  float* scores = acc + heads * dim;   // [H, length]
  for (int64_t i = 0; i < heads * dim; ++i) {
    q_f[i] = static_cast<float>(seq.q[i]);
    acc[i] = 0.0f;
  }
  // The scale in float32, as the composite multiplies f32 scores by it.
  const float scale = static_cast<float>(1.0 / std::sqrt(double(dim)));
  for (int64_t start = 0; start < length; start += s.block_size) {
    const T* block = seq.keys + seq.blocks[start / s.block_size] * s.block_size * row_stride;
    for (int64_t j = 0; j < std::min(s.block_size, length - start); ++j) {
      for (int64_t h = 0; h < heads; ++h) {
        scores[h * length + start + j] = Dot(q_f + h * dim, block + j * row_stride + (h / groups) * dim, dim) * scale;
      }
    }
  }
  for (int64_t h = 0; h < heads; ++h) {
    float* row = scores + h * length;
    const float max = *std::max_element(row, row + length);
    float sum = 0;
    for (int64_t l = 0; l < length; ++l) sum += (row[l] = std::exp(row[l] - max));
    const float inv = 1.0f / sum;
    for (int64_t l = 0; l < length; ++l) row[l] *= inv;
  }
  for (int64_t start = 0; start < length; start += s.block_size) {
    const T* block = seq.values + seq.blocks[start / s.block_size] * s.block_size * row_stride;
    for (int64_t j = 0; j < std::min(s.block_size, length - start); ++j) {
      for (int64_t h = 0; h < heads; ++h) {
        Axpy(scores[h * length + start + j], block + j * row_stride + (h / groups) * dim, acc + h * dim, dim);
      }
    }
  }
  for (int64_t i = 0; i < heads * dim; ++i) seq.out[i] = static_cast<T>(acc[i]);
}

template <typename T>
void AttendSequence(const Sizes& s, const Sequence<T>& seq, float* scratch) {
  AttendSequenceBody(s, seq, scratch);
}

#ifdef LLAMARL_ATTEND_AVX2
template <typename T>
__attribute__((target("avx2,fma"))) void AttendSequenceAvx2(const Sizes& s, const Sequence<T>& seq, float* scratch) {
  AttendSequenceBody(s, seq, scratch);
}
#endif

template <typename T>
using AttendFn = void (*)(const Sizes&, const Sequence<T>&, float*);

template <typename T>
AttendFn<T> PickAttend() {
#ifdef LLAMARL_ATTEND_AVX2
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &AttendSequenceAvx2<T>;
#endif
  return &AttendSequence<T>;
}


void CheckInputs(const at::Tensor& q, const PagedKv& kv) {
  LLAMARL_CHECK(q.dim() == 3, "PagedDecodeAttention: q must be [N, H, E], got ", q.sizes());
  LLAMARL_CHECK(kv.keys.dim() == 4 && kv.keys.sizes() == kv.values.sizes(), "PagedDecodeAttention: keys and values ",
                "must both be [blocks, block_size, K, E], got ", kv.keys.sizes(), " and ", kv.values.sizes());
  LLAMARL_CHECK(kv.keys.scalar_type() == q.scalar_type() && kv.values.scalar_type() == q.scalar_type(),
                "PagedDecodeAttention: the cache's dtype (", kv.keys.scalar_type(), ") must be q's (", q.scalar_type(), ")");
  LLAMARL_CHECK(kv.keys.size(3) == q.size(2) && q.size(1) % kv.keys.size(2) == 0, "PagedDecodeAttention: q ",
                q.sizes(), " does not fit a cache of ", kv.keys.sizes(), " (head_dim must match, and the kv heads ",
                "must divide the query heads)");
  LLAMARL_CHECK(kv.blocks.dim() == 2 && kv.blocks.size(0) == q.size(0) && kv.lengths.dim() == 1 &&
                  kv.lengths.size(0) == q.size(0) && kv.blocks.scalar_type() == at::kLong &&
                  kv.lengths.scalar_type() == at::kLong,
                "PagedDecodeAttention: blocks must be [N, NB] and lengths [N], int64, for N = ", q.size(0), "; got ",
                kv.blocks.sizes(), " and ", kv.lengths.sizes());
}

}  // namespace

at::Tensor PagedDecodeAttention(const at::Tensor& q_NHE, const PagedKv& kv) {
  CheckInputs(q_NHE, kv);
  if (!q_NHE.device().is_cpu()) return PagedDecodeAttentionComposite(q_NHE, kv);
  const at::Tensor q = q_NHE.contiguous(), keys = kv.keys.contiguous(), values = kv.values.contiguous();
  const at::Tensor blocks = kv.blocks.contiguous(), lengths = kv.lengths.contiguous();
  const Sizes s{q.size(0), q.size(1), keys.size(2), q.size(2), keys.size(1), blocks.size(1)};
  const int64_t* length_of = lengths.data_ptr<int64_t>();
  for (int64_t i = 0; i < s.n; ++i) {
    LLAMARL_CHECK(length_of[i] >= 1 && length_of[i] <= s.blocks_per_row * s.block_size, "PagedDecodeAttention: ",
                  "sequence ", i, " attends to ", length_of[i], " positions; its blocks hold ",
                  s.blocks_per_row * s.block_size);
  }
  at::Tensor out = at::empty_like(q);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, q.scalar_type(), "PagedDecodeAttention", [&] {
    const scalar_t *q_ptr = q.data_ptr<scalar_t>(), *k_ptr = keys.data_ptr<scalar_t>(),
                   *v_ptr = values.data_ptr<scalar_t>();
    scalar_t* out_ptr = out.data_ptr<scalar_t>();
    const AttendFn<scalar_t> attend = PickAttend<scalar_t>();
    at::parallel_for(0, s.n, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch;
      for (int64_t i = begin; i < end; ++i) {
        const int64_t offset = i * s.heads * s.head_dim;
        scratch.resize(size_t(std::max<int64_t>(int64_t(scratch.size()), s.ScratchFloats(length_of[i]))));
        attend(s, {q_ptr + offset, k_ptr, v_ptr, blocks.data_ptr<int64_t>() + i * s.blocks_per_row, length_of[i],
                   out_ptr + offset},
               scratch.data());
      }
    });
  });
  return out;
}

at::Tensor PagedDecodeAttentionComposite(const at::Tensor& q_NHE, const PagedKv& kv) {
  CheckInputs(q_NHE, kv);
  const int64_t n = q_NHE.size(0), heads = q_NHE.size(1), head_dim = q_NHE.size(2);
  const int64_t block_size = kv.keys.size(1), kv_heads = kv.keys.size(2), groups = heads / kv_heads;
  const int64_t length = kv.lengths.max().item<int64_t>(), per_row = kv.blocks.size(1) * block_size;
  const at::Tensor flat = kv.blocks.reshape({-1});
  auto gather = [&](const at::Tensor& pool) {  // -> [N, L, K, E]
    return pool.index_select(0, flat).view({n, per_row, kv_heads, head_dim}).narrow(1, 0, length);
  };
  const at::Tensor k = gather(kv.keys), v = gather(kv.values);
  const at::Tensor allowed = at::arange(length, kv.lengths.options()).view({1, length}).lt(kv.lengths.view({n, 1}));
  // On the CPU, bmm over N * H single-row matrices runs one GEMM call per (sequence, head): the
  // broadcast multiply-reduce form is cheaper there.
  at::Tensor q_N1KGE = q_NHE.reshape({n, 1, kv_heads, groups, head_dim});
  at::Tensor scores = (q_N1KGE * k.unsqueeze(3)).sum(-1) * (1.0 / std::sqrt(double(head_dim)));  // [N, L, K, G]
  scores = scores.to(at::kFloat).masked_fill(allowed.view({n, length, 1, 1}).logical_not(),
                                             std::numeric_limits<float>::lowest());
  at::Tensor probs = at::softmax(scores, 1, at::kFloat).to(q_NHE.scalar_type());
  at::Tensor out = (probs.unsqueeze(-1) * v.unsqueeze(3)).sum(1);  // [N, K, G, E]
  return out.reshape({n, heads, head_dim});
}

}  // namespace llamarl::kernels
