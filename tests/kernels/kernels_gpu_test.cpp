// Every kernel's CUDA implementation against its CPU implementation (which the cpu suites check
// against LibTorch compositions): values and gradients, float32 and bfloat16. Built under LLAMARL_CUDA
// and run where a GPU is (label gpu).
#include "kernels/fp8.h"
#include "kernels/rms_norm.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "kernels/token_logprobs.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace llamarl::kernels {
namespace {

const at::Device kCuda(at::kCUDA, 0);

class KernelsGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
    torch::manual_seed(51);
  }
};

TEST_F(KernelsGpu, Fp8CastingIsBitIdenticalToCpu) {
  for (const auto dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
    const at::Tensor x = (at::randn({33, 257}) * 10).to(dtype);
    for (const auto scaling : {Fp8Scaling::kPerTensor, Fp8Scaling::kPerRow}) {
      const Fp8Tensor cpu = CastToFp8E4m3(x, scaling);
      const Fp8Tensor gpu = CastToFp8E4m3(x.to(kCuda), scaling);
      EXPECT_TRUE(at::equal(cpu.data, gpu.data.cpu())) << dtype;
      EXPECT_TRUE(at::allclose(cpu.scales, gpu.scales.cpu()));
      // Decode with the CPU's scales so that only the decoding kernel is compared.
      EXPECT_TRUE(at::equal(CastFromFp8E4m3(cpu.data, cpu.scales, dtype),
                            CastFromFp8E4m3(cpu.data.to(kCuda), cpu.scales.to(kCuda), dtype).cpu()));
    }
  }
}

TEST_F(KernelsGpu, RmsNormMatchesCpu) {
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = at::randn({67, 1000}).to(dtype), w = (at::rand({1000}) + 0.5).to(dtype);
    const at::Tensor g = at::randn({67, 1000}).to(dtype);
    const at::Tensor xc = x.clone().requires_grad_(true), wc = w.clone().requires_grad_(true);
    const at::Tensor yc = RmsNorm(xc, wc, 1e-5);
    yc.backward(g);
    const at::Tensor xg = x.to(kCuda).requires_grad_(true), wg = w.to(kCuda).requires_grad_(true);
    const at::Tensor yg = RmsNorm(xg, wg, 1e-5);
    yg.backward(g.to(kCuda));
    const double tol = dtype == at::kFloat ? 1e-5 : 1e-2;
    EXPECT_TRUE(at::allclose(yc.to(at::kFloat), yg.cpu().to(at::kFloat), tol, tol));
    EXPECT_TRUE(at::allclose(xc.grad().to(at::kFloat), xg.grad().cpu().to(at::kFloat), tol * 10, tol * 10));
    EXPECT_TRUE(at::allclose(wc.grad().to(at::kFloat), wg.grad().cpu().to(at::kFloat), tol * 10, tol * 10));
  }
}

TEST_F(KernelsGpu, RopeMatchesCpu) {
  RopeFrequencyOptions options;
  options.theta = 500000.0;
  options.head_dim = 64;
  options.llama3 = Llama3RopeScalingOptions{};
  const RopeTables cpu_tables = MakeRopeTables(options, at::kCPU), gpu_tables = MakeRopeTables(options, kCuda);
  const at::Tensor positions = at::randint(0, 100000, {3, 17}, at::kLong);
  for (const auto dtype : {at::kFloat, at::kBFloat16}) {
    const at::Tensor x = at::randn({3, 17, 4, 64}).to(dtype), g = at::randn({3, 17, 4, 64}).to(dtype);
    const at::Tensor xc = x.clone().requires_grad_(true), xg = x.to(kCuda).requires_grad_(true);
    const at::Tensor yc = ApplyRope(xc, positions, cpu_tables), yg = ApplyRope(xg, positions.to(kCuda), gpu_tables);
    yc.backward(g);
    yg.backward(g.to(kCuda));
    const double tol = dtype == at::kFloat ? 1e-5 : 1.0 / 64;
    EXPECT_TRUE(at::allclose(yc.to(at::kFloat), yg.cpu().to(at::kFloat), tol, tol));
    EXPECT_TRUE(at::allclose(xc.grad().to(at::kFloat), xg.grad().cpu().to(at::kFloat), tol, tol));
  }
}

TEST_F(KernelsGpu, TokenLogprobsMatchesCpu) {
  const at::Tensor h = at::randn({300, 64}), w = at::randn({5000, 64}) * 0.3;
  const at::Tensor targets = at::randint(0, 5000, {300}, at::kLong);
  const at::Tensor g_lp = at::randn({300}), g_h = at::randn({300});
  const TokenLogprobsOptions options{128, 1024, 0.9};
  const at::Tensor hc = h.clone().requires_grad_(true), wc = w.clone().requires_grad_(true);
  const TokenLogprobsResult rc = TokenLogprobsAndEntropy(hc, wc, targets, options);
  ((rc.logprobs * g_lp).sum() + (rc.entropy * g_h).sum()).backward();
  const at::Tensor hg = h.to(kCuda).requires_grad_(true), wg = w.to(kCuda).requires_grad_(true);
  const TokenLogprobsResult rg = TokenLogprobsAndEntropy(hg, wg, targets.to(kCuda), options);
  ((rg.logprobs * g_lp.to(kCuda)).sum() + (rg.entropy * g_h.to(kCuda)).sum()).backward();
  // TF32 matmuls would loosen this; LibTorch keeps them off for float32 by default.
  EXPECT_TRUE(at::allclose(rc.logprobs, rg.logprobs.cpu(), 1e-3, 1e-3));
  EXPECT_TRUE(at::allclose(rc.entropy, rg.entropy.cpu(), 1e-3, 1e-3));
  EXPECT_TRUE(at::allclose(hc.grad(), hg.grad().cpu(), 1e-3, 1e-3));
  EXPECT_TRUE(at::allclose(wc.grad(), wg.grad().cpu(), 1e-3, 1e-3));
}

TEST_F(KernelsGpu, SamplingMatchesCpuDraws) {
  const int64_t batch = 256;
  const at::Tensor logits = at::randn({batch, 32000}) * 3;
  const at::Tensor seeds = at::arange(batch, at::kLong), offsets = at::arange(batch, at::kLong) * 7;
  for (const SamplingOptions options : {SamplingOptions{0.0, 0, 1.0}, SamplingOptions{1.0, 0, 1.0},
                                        SamplingOptions{0.7, 50, 1.0}, SamplingOptions{1.0, 0, 0.9},
                                        SamplingOptions{0.8, 40, 0.95}}) {
    const SampledTokens cpu = SampleTokens(logits, options, seeds, offsets);
    const SampledTokens gpu = SampleTokens(logits.to(kCuda), options, seeds.to(kCuda), offsets.to(kCuda));
    // Same uniform, same kept set; only float summation order differs, which can move a draw that
    // lands within rounding of a CDF step. Allow at most 1% of rows to differ.
    const double agree = cpu.tokens.eq(gpu.tokens.cpu()).to(at::kDouble).mean().item<double>();
    EXPECT_GE(agree, 0.99) << "temperature " << options.temperature << " top_k " << options.top_k << " top_p "
                           << options.top_p;
    const at::Tensor same = cpu.tokens.eq(gpu.tokens.cpu());
    EXPECT_TRUE(at::allclose(cpu.logprobs.masked_select(same), gpu.logprobs.cpu().masked_select(same), 1e-4, 1e-4));
  }
}

}  // namespace
}  // namespace llamarl::kernels
