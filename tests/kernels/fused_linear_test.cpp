// FusedLinear (one GEMM for several linear layers on one input) against the separate linears it
// replaces: values and gradients of x, every weight and every bias, with the weights back to back in
// one storage (read in place) and apart (concatenated), in float32 and bfloat16.
#include "core/check.h"
#include "kernels/fused_linear.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

namespace llamarl::kernels {
namespace {

struct Grads {
  at::Tensor y;
  std::vector<at::Tensor> grads;  // x, the weights, then the biases
};

// Weights [N_i, D] for N = {12, 4, 4}; back to back in one buffer or three separate tensors.
std::vector<at::Tensor> MakeWeights(bool adjacent, at::ScalarType dtype) {
  const at::Tensor joint = at::randn({20, 16}).to(dtype);
  if (adjacent) return {joint.narrow(0, 0, 12), joint.narrow(0, 12, 4), joint.narrow(0, 16, 4)};
  return {joint.narrow(0, 0, 12).clone(), joint.narrow(0, 12, 4).clone(), joint.narrow(0, 16, 4).clone()};
}

Grads RunBoth(bool fused, const at::Tensor& x0, const std::vector<at::Tensor>& weights0,
          const std::vector<at::Tensor>& biases0, const at::Tensor& grad_y) {
  at::Tensor x = x0.detach().clone().requires_grad_(true);
  std::vector<at::Tensor> weights, biases;
  for (const at::Tensor& w : weights0) weights.push_back(w.detach().requires_grad_(true));  // keeps the storage
  for (const at::Tensor& b : biases0) biases.push_back(b.detach().clone().requires_grad_(true));
  at::Tensor y;
  if (fused) {
    y = FusedLinear(x, weights, biases);
  } else {
    std::vector<at::Tensor> parts;
    for (size_t i = 0; i < weights.size(); ++i) {
      parts.push_back(at::linear(x, weights[i], biases.empty() ? at::Tensor() : biases[i]));
    }
    y = at::cat(parts, -1);
  }
  y.backward(grad_y);
  Grads g{y.detach(), {x.grad()}};
  for (const at::Tensor& w : weights) g.grads.push_back(w.grad());
  for (const at::Tensor& b : biases) g.grads.push_back(b.grad());
  return g;
}

TEST(FusedLinear, MatchesSeparateLinearsFloat32) {
  at::manual_seed(1);
  for (bool adjacent : {true, false}) {
    for (bool with_bias : {false, true}) {
      const std::vector<at::Tensor> weights = MakeWeights(adjacent, at::kFloat);
      EXPECT_EQ(AreAdjacentRows(weights), adjacent);
      std::vector<at::Tensor> biases;
      if (with_bias) biases = {at::randn({12}), at::randn({4}), at::randn({4})};
      const at::Tensor x = at::randn({2, 5, 16}), grad_y = at::randn({2, 5, 20});
      const Grads a = RunBoth(true, x, weights, biases, grad_y), b = RunBoth(false, x, weights, biases, grad_y);
      EXPECT_TRUE(at::allclose(a.y, b.y, 1e-5, 1e-6)) << (a.y - b.y).abs().max();
      ASSERT_EQ(a.grads.size(), b.grads.size());
      for (size_t i = 0; i < a.grads.size(); ++i) {
        ASSERT_TRUE(a.grads[i].defined()) << i;
        EXPECT_TRUE(at::allclose(a.grads[i], b.grads[i], 1e-5, 1e-5))
            << "adjacent " << adjacent << " bias " << with_bias << " grad " << i << ": "
            << (a.grads[i] - b.grads[i]).abs().max();
      }
    }
  }
}

TEST(FusedLinear, MatchesSeparateLinearsBfloat16) {
  at::manual_seed(2);
  const std::vector<at::Tensor> weights = MakeWeights(true, at::kBFloat16);
  const at::Tensor x = at::randn({7, 16}).to(at::kBFloat16), grad_y = at::randn({7, 20}).to(at::kBFloat16);
  const Grads a = RunBoth(true, x, weights, {}, grad_y), b = RunBoth(false, x, weights, {}, grad_y);
  // The same bf16 inputs in float32: both paths must be within bf16 rounding of it (x's gradient sums
  // over all outputs: rounded once by the fused GEMM, once per linear and again per sum unfused).
  std::vector<at::Tensor> weights32;
  for (const at::Tensor& w : weights) weights32.push_back(w.to(at::kFloat));
  const Grads ref = RunBoth(false, x.to(at::kFloat), weights32, {}, grad_y.to(at::kFloat));
  auto error = [](const at::Tensor& got, const at::Tensor& want) {
    return (got.to(at::kFloat) - want).abs().max().item<double>() / want.abs().max().item<double>();
  };
  EXPECT_LT(error(a.y, ref.y), 1e-2);
  EXPECT_LT(error(b.y, ref.y), 1e-2);
  for (size_t i = 0; i < a.grads.size(); ++i) {
    EXPECT_LT(error(a.grads[i], ref.grads[i]), 1e-2) << i;
    EXPECT_LT(error(b.grads[i], ref.grads[i]), 2e-2) << i;
  }
}

TEST(FusedLinear, RejectsBadInputs) {
  const at::Tensor x = at::randn({3, 16});
  EXPECT_THROW(FusedLinear(x, {}), llamarl::Error);
  EXPECT_THROW(FusedLinear(x, {at::randn({4, 15})}), llamarl::Error);
  EXPECT_THROW(FusedLinear(x, {at::randn({4, 16}).to(at::kDouble)}), llamarl::Error);
  EXPECT_THROW(FusedLinear(x, {at::randn({4, 16}), at::randn({2, 16})}, {at::randn({4})}), llamarl::Error);
  EXPECT_THROW(FusedLinear(x, {at::randn({4, 16})}, {at::randn({3})}), llamarl::Error);
}

}  // namespace
}  // namespace llamarl::kernels
