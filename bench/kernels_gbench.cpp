// Each kernel against the plain LibTorch composition of the same math, on CPU:
//   kernels_gbench [--benchmark_filter=Rms]
// Pairs are named <Op>/Fused and <Op>/Composed so that their lines sit next to each other.
#include "kernels/fp8.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "kernels/token_logprobs.h"

#include <ATen/ATen.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

namespace {

using namespace llamarl::kernels;

constexpr int64_t kTokens = 512, kVocab = 32768, kHidden = 256;

void LogprobsFused(benchmark::State& state) {
  const at::Tensor h = at::randn({kTokens, kHidden}).requires_grad_(true);
  const at::Tensor w = (at::randn({kVocab, kHidden}) * 0.05).requires_grad_(true);
  const at::Tensor y = at::randint(0, kVocab, {kTokens}, at::kLong);
  for (auto _ : state) TokenLogprobs(h, w, y, {256, 4096, 1.0}).sum().backward();
}

void LogprobsComposed(benchmark::State& state) {
  const at::Tensor h = at::randn({kTokens, kHidden}).requires_grad_(true);
  const at::Tensor w = (at::randn({kVocab, kHidden}) * 0.05).requires_grad_(true);
  const at::Tensor y = at::randint(0, kVocab, {kTokens}, at::kLong);
  for (auto _ : state) at::log_softmax(at::matmul(h, w.t()), -1).gather(1, y.unsqueeze(1)).sum().backward();
}

void RmsNormFused(benchmark::State& state) {
  const at::Tensor x = at::randn({2048, 4096}).requires_grad_(true), w = at::ones({4096}).requires_grad_(true);
  for (auto _ : state) RmsNorm(x, w, 1e-5).sum().backward();
}

void RmsNormComposed(benchmark::State& state) {
  const at::Tensor x = at::randn({2048, 4096}).requires_grad_(true), w = at::ones({4096}).requires_grad_(true);
  for (auto _ : state) (w * (x * at::rsqrt(x.pow(2).mean({-1}, true) + 1e-5))).sum().backward();
}

void RopeFused(benchmark::State& state) {
  RopeFrequencyOptions options;
  options.head_dim = 128;
  const RopeTables tables = MakeRopeTables(options, at::kCPU);
  const at::Tensor x = at::randn({2048, 32, 128}), positions = at::arange(2048, at::kLong);
  for (auto _ : state) benchmark::DoNotOptimize(ApplyRope(x, positions, tables));
}

void RopeComposed(benchmark::State& state) {
  RopeFrequencyOptions options;
  options.head_dim = 128;
  const at::Tensor inv_freq = RopeInvFreq(options);
  const at::Tensor x = at::randn({2048, 32, 128}), positions = at::arange(2048, at::kLong);
  for (auto _ : state) {
    const at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;
    const at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(1);
    const at::Tensor rotated = at::cat({-x.narrow(-1, 64, 64), x.narrow(-1, 0, 64)}, -1);
    benchmark::DoNotOptimize(x * emb.cos() + rotated * emb.sin());
  }
}

void Fp8CastFused(benchmark::State& state) {
  const at::Tensor w = at::randn({4096, 4096}).to(at::kBFloat16);
  for (auto _ : state) benchmark::DoNotOptimize(CastToFp8E4m3(w, Fp8Scaling::kPerRow));
}

void SampleFused(benchmark::State& state) {
  const at::Tensor logits = at::randn({64, 128256});
  const at::Tensor seeds = at::arange(64, at::kLong);
  for (auto _ : state) benchmark::DoNotOptimize(SampleTokens(logits, {0.8, 50, 0.95}, seeds));
}

void SampleComposed(benchmark::State& state) {
  const at::Tensor logits = at::randn({64, 128256});
  for (auto _ : state) {
    const auto [values, indices] = at::topk(logits / 0.8, 50);
    const at::Tensor probs = at::softmax(values, -1);
    benchmark::DoNotOptimize(indices.gather(1, at::multinomial(probs, 1)));
  }
}

BENCHMARK(LogprobsFused)->Name("TokenLogprobs/Fused")->Unit(benchmark::kMillisecond);
BENCHMARK(LogprobsComposed)->Name("TokenLogprobs/Composed")->Unit(benchmark::kMillisecond);
BENCHMARK(RmsNormFused)->Name("RmsNorm/Fused")->Unit(benchmark::kMillisecond);
BENCHMARK(RmsNormComposed)->Name("RmsNorm/Composed")->Unit(benchmark::kMillisecond);
BENCHMARK(RopeFused)->Name("Rope/Fused")->Unit(benchmark::kMillisecond);
BENCHMARK(RopeComposed)->Name("Rope/Composed")->Unit(benchmark::kMillisecond);
BENCHMARK(Fp8CastFused)->Name("Fp8PerRowCast/Fused")->Unit(benchmark::kMillisecond);
BENCHMARK(SampleFused)->Name("SampleTopKTopP/Fused")->Unit(benchmark::kMillisecond);
BENCHMARK(SampleComposed)->Name("SampleTopK/Composed")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
