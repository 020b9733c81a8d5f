// The per-tile steps of the tiled token log-probs (kernels/token_logprobs.h): the host code runs the
// tile matmuls with cuBLAS through LibTorch; these kernels do everything between them in one pass.
#include "kernels/cuda_common.cuh"

namespace llamarl::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// logits: [Tc, Vc] f32 (columns [v0, v0 + Vc)), targets: [Tc] i64; state max, sum, weighted,
// target_logit: [Tc] f32. One block per row; see OnlineLse in token_logprobs.cpp for the invariant.
__global__ void FoldTileKernel(const float* __restrict__ logits, const int64_t* __restrict__ targets, int64_t cols,
                               int64_t v0, bool first, bool with_entropy, float* __restrict__ max,
                               float* __restrict__ sum, float* __restrict__ weighted,
                               float* __restrict__ target_logit) {
  __shared__ float scratch[32];
  const int64_t row = blockIdx.x;
  const float* l = logits + row * cols;
  float tile_max = -INFINITY;
  for (int64_t v = threadIdx.x; v < cols; v += blockDim.x) tile_max = fmaxf(tile_max, l[v]);
  tile_max = BlockMax(tile_max, scratch);
  const float new_max = first ? tile_max : fmaxf(max[row], tile_max);
  float tile_sum = 0.0f, tile_weighted = 0.0f;
  for (int64_t v = threadIdx.x; v < cols; v += blockDim.x) {
    const float d = l[v] - new_max;
    const float e = expf(d);
    tile_sum += e;
    tile_weighted += e * d;
  }
  tile_sum = BlockSum(tile_sum, scratch);
  if (with_entropy) tile_weighted = BlockSum(tile_weighted, scratch);
  if (threadIdx.x != 0) return;
  const int64_t y = targets[row] - v0;
  if (y >= 0 && y < cols) target_logit[row] = l[y];
  if (first) {
    sum[row] = tile_sum;
    if (with_entropy) weighted[row] = tile_weighted;
  } else {
    const float shift = max[row] - new_max, alpha = expf(shift);
    if (with_entropy) weighted[row] = alpha * (weighted[row] + shift * sum[row]) + tile_weighted;
    sum[row] = sum[row] * alpha + tile_sum;
  }
  max[row] = new_max;
}

// logits: [Tc, Vc] f32 -> d(loss)/d(logits) in place; lse, grad_logprobs: [Tc]; entropy and
// grad_entropy: [Tc] or null. G = g_lp * onehot - p * (g_lp + g_H * (log p + H)).
__global__ void TileGradientKernel(float* __restrict__ logits, const int64_t* __restrict__ targets, int64_t rows,
                                   int64_t cols, int64_t v0, const float* __restrict__ lse,
                                   const float* __restrict__ grad_logprobs, const float* __restrict__ entropy,
                                   const float* __restrict__ grad_entropy) {
  const int64_t total = rows * cols;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / cols, col = i % cols;
    const float log_p = logits[i] - lse[row];
    const float p = expf(log_p);
    const float g_lp = grad_logprobs[row];
    float g = grad_entropy ? -p * (g_lp + grad_entropy[row] * (log_p + entropy[row])) : -p * g_lp;
    if (targets[row] - v0 == col) g += g_lp;
    logits[i] = g;
  }
}

}  // namespace

void LaunchFoldLogprobsTile(const LogprobsTileArgs& a, bool first, bool with_entropy, float* max, float* sum,
                            float* weighted, float* target_logit, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(a.rows >= 0 && a.cols > 0, "need rows >= 0 and cols > 0");
  if (a.rows == 0) return;
  FoldTileKernel<<<static_cast<unsigned>(a.rows), kThreads, 0, stream>>>(a.logits, a.targets, a.cols, a.v0, first,
                                                                          with_entropy, max, sum, weighted,
                                                                          target_logit);
  LLAMARL_CUDA_CHECK_LAUNCH();
}

void LaunchLogprobsTileGradient(const LogprobsTileArgs& a, const float* lse, const float* grad_logprobs,
                                const float* entropy, const float* grad_entropy, cudaStream_t stream) {
  LLAMARL_CUDA_REQUIRE(a.rows >= 0 && a.cols > 0, "need rows >= 0 and cols > 0");
  LLAMARL_CUDA_REQUIRE((entropy == nullptr) == (grad_entropy == nullptr), "entropy and grad_entropy go together");
  if (a.rows == 0) return;
  TileGradientKernel<<<GridFor(a.rows * a.cols, kThreads), kThreads, 0, stream>>>(
      a.logits, a.targets, a.rows, a.cols, a.v0, lse, grad_logprobs, entropy, grad_entropy);
  LLAMARL_CUDA_CHECK_LAUNCH();
}

}  // namespace llamarl::kernels::cuda
