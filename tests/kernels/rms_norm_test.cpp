// RmsNorm against the plain LibTorch composition of HF's LlamaRMSNorm: values and gradients, several
// shapes (including odd widths), float32 and bfloat16.
#include "core/check.h"
#include "kernels/rms_norm.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace llamarl::kernels {
namespace {

// HF LlamaRMSNorm.forward, op for op.
at::Tensor ReferenceRmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const at::Tensor h = x.to(at::kFloat);
  const at::Tensor variance = h.pow(2).mean({-1}, /*keepdim=*/true);
  return weight * (h * at::rsqrt(variance + eps)).to(x.scalar_type());
}

struct Shape {
  std::vector<int64_t> sizes;
};

class RmsNormShapes : public ::testing::TestWithParam<std::vector<int64_t>> {};

TEST_P(RmsNormShapes, Float32ValuesAndGradientsMatchComposition) {
  torch::manual_seed(11);
  const auto sizes = GetParam();
  const at::Tensor x = at::randn(sizes) * 3.0 + 0.5;
  const at::Tensor weight = at::rand({sizes.back()}) + 0.5;
  const at::Tensor grad_y = at::randn(sizes);

  const at::Tensor x1 = x.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
  const at::Tensor y = RmsNorm(x1, w1, 1e-5);
  y.backward(grad_y);
  const at::Tensor x2 = x.clone().requires_grad_(true), w2 = weight.clone().requires_grad_(true);
  const at::Tensor y_ref = ReferenceRmsNorm(x2, w2, 1e-5);
  y_ref.backward(grad_y);

  EXPECT_TRUE(at::allclose(y, y_ref, 1e-5, 1e-6)) << (y - y_ref).abs().max();
  EXPECT_TRUE(at::allclose(x1.grad(), x2.grad(), 1e-4, 1e-5)) << (x1.grad() - x2.grad()).abs().max();
  EXPECT_TRUE(at::allclose(w1.grad(), w2.grad(), 1e-4, 1e-4)) << (w1.grad() - w2.grad()).abs().max();
}

TEST_P(RmsNormShapes, Bfloat16MatchesCompositionToOneRounding) {
  torch::manual_seed(12);
  const auto sizes = GetParam();
  const at::Tensor x = (at::randn(sizes) * 2.0).to(at::kBFloat16);
  const at::Tensor weight = (at::rand({sizes.back()}) + 0.5).to(at::kBFloat16);
  const at::Tensor grad_y = at::randn(sizes).to(at::kBFloat16);

  const at::Tensor x1 = x.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
  const at::Tensor y = RmsNorm(x1, w1, 1e-6);
  y.backward(grad_y);
  ASSERT_EQ(y.scalar_type(), at::kBFloat16);
  const at::Tensor y_ref = ReferenceRmsNorm(x, weight, 1e-6);
  // The same roundings as HF; only the order of the float32 sum of squares differs, which can move
  // a value across a bf16 rounding boundary: allow one bf16 ulp (2^-8 relative).
  EXPECT_TRUE(at::allclose(y.to(at::kFloat), y_ref.to(at::kFloat), 1.0 / 128, 1e-3));
  EXPECT_GT(at::eq(y, y_ref).to(at::kFloat).mean().item<float>(), 0.95f);

  // Gradients against the float32 composition: our backward accumulates in float32 too.
  const at::Tensor x2 = x.to(at::kFloat).requires_grad_(true), w2 = weight.to(at::kFloat).requires_grad_(true);
  ReferenceRmsNorm(x2, w2, 1e-6).backward(grad_y.to(at::kFloat));
  EXPECT_TRUE(at::allclose(x1.grad().to(at::kFloat), x2.grad(), 2e-2, 2e-2));
  EXPECT_TRUE(at::allclose(w1.grad().to(at::kFloat), w2.grad(), 2e-2, 5e-2));
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsNormShapes,
                         ::testing::Values(std::vector<int64_t>{1, 1}, std::vector<int64_t>{3, 7},
                                           std::vector<int64_t>{2, 5, 64}, std::vector<int64_t>{257, 130},
                                           std::vector<int64_t>{4, 3, 2, 33}));

TEST(RmsNorm, HandWorkedValue) {
  // x = [3, 4]: mean(x^2) = 12.5, rstd = 1/sqrt(12.5) (eps negligible), weight [1, 2].
  const at::Tensor y = RmsNorm(at::tensor({3.0f, 4.0f}).reshape({1, 2}), at::tensor({1.0f, 2.0f}), 1e-12);
  EXPECT_NEAR(y[0][0].item<float>(), 3.0 / std::sqrt(12.5), 1e-6);
  EXPECT_NEAR(y[0][1].item<float>(), 8.0 / std::sqrt(12.5), 1e-6);
}

TEST(RmsNorm, NonContiguousInputAndGradcheck) {
  torch::manual_seed(13);
  const at::Tensor x = at::randn({6, 4}, at::kDouble).t().to(at::kFloat);  // non-contiguous [4, 6]
  const at::Tensor weight = at::rand({6}) + 0.5;
  EXPECT_TRUE(at::allclose(RmsNorm(x, weight, 1e-5), ReferenceRmsNorm(x, weight, 1e-5), 1e-5, 1e-6));
}

TEST(RmsNorm, RejectsBadInputs) {
  const at::Tensor x = at::randn({2, 8});
  EXPECT_THROW(RmsNorm(x, at::ones({7}), 1e-5), llamarl::Error);
  EXPECT_THROW(RmsNorm(x, at::ones({8}, at::kBFloat16), 1e-5), llamarl::Error);
  EXPECT_THROW(RmsNorm(x.to(at::kInt), at::ones({8}, at::kInt), 1e-5), llamarl::Error);
  EXPECT_THROW(RmsNorm(x, at::ones({8}), 0.0), llamarl::Error);
  EXPECT_THROW(RmsNorm(at::randn({2, 0}), at::ones({0}), 1e-5), llamarl::Error);
}

}  // namespace
}  // namespace llamarl::kernels
