// RoPE: inverse frequencies and rotations against fixtures from HF's own code (scripts/fixtures/
// kernels_rope.py), and values/gradients against a plain LibTorch composition of rotate-half.
#include "core/check.h"
#include "kernels/rope.h"

#include "core/config.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace llamarl::kernels {
namespace {

at::Tensor FromJson(const Json& values, at::IntArrayRef shape = {}) {
  const auto v = values.get<std::vector<float>>();
  at::Tensor t = at::tensor(at::ArrayRef<float>(v));
  return shape.empty() ? t : t.reshape(shape);
}

Json LoadFixture() { return ReadJsonFile(testing::FixturePath("kernels/rope.json")); }

// HF's apply_rotary_pos_emb on [..., T, H, Dh] with cos/sin from positions, in x's dtype.
at::Tensor ReferenceRope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq) {
  const at::Tensor freqs = positions.to(at::kFloat).unsqueeze(-1) * inv_freq;  // [..., T, Dh/2]
  const at::Tensor emb = at::cat({freqs, freqs}, -1).unsqueeze(-2);           // [..., T, 1, Dh]
  const at::Tensor cos = emb.cos().to(x.scalar_type()), sin = emb.sin().to(x.scalar_type());
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  return x * cos + rotated * sin;
}

TEST(RopeInvFreq, MatchesHfLlama3ScalingFixture) {
  const Json fixture = LoadFixture();
  RopeFrequencyOptions options;
  options.theta = 500000.0;
  options.head_dim = 128;
  options.llama3 = Llama3RopeScalingOptions{8.0, 1.0, 4.0, 8192};
  const at::Tensor inv_freq = RopeInvFreq(options);
  const at::Tensor expected = FromJson(fixture["llama3_8b_inv_freq"]);
  ASSERT_EQ(inv_freq.sizes(), expected.sizes());
  EXPECT_TRUE(at::allclose(inv_freq, expected, 1e-6, 0)) << (inv_freq - expected).abs().max();
  // The three bands: the highest frequency is untouched, the lowest divided by the factor.
  EXPECT_FLOAT_EQ(inv_freq[0].item<float>(), 1.0f);
  options.llama3.reset();
  const at::Tensor unscaled = RopeInvFreq(options);
  EXPECT_NEAR(inv_freq[63].item<float>(), unscaled[63].item<float>() / 8.0f, 1e-12);
}

TEST(RopeInvFreq, MatchesHfDefaultFixture) {
  RopeFrequencyOptions options;
  options.theta = 10000.0;
  options.head_dim = 64;
  EXPECT_TRUE(at::allclose(RopeInvFreq(options), FromJson(LoadFixture()["default_theta10000_dim64_inv_freq"]), 1e-6, 0));
}

TEST(ApplyRope, MatchesHfFixtureFloat32AndBfloat16) {
  const Json fixture = LoadFixture();
  const auto shape = fixture["small_shape_bthd"].get<std::vector<int64_t>>();
  const auto positions_v = fixture["small_positions"].get<std::vector<int64_t>>();
  const at::Tensor positions = at::tensor(at::ArrayRef<int64_t>(positions_v)).reshape({shape[0], shape[1]});
  const RopeTables tables{FromJson(fixture["small_inv_freq"]), 1.0};
  for (const auto& [name, dtype] : {std::pair{"f32", at::kFloat}, std::pair{"bf16", at::kBFloat16}}) {
    const at::Tensor x = FromJson(fixture[std::string("small_x_") + name], shape).to(dtype);
    const at::Tensor expected = FromJson(fixture[std::string("small_y_") + name], shape);
    const at::Tensor y = ApplyRope(x, positions, tables).to(at::kFloat);
    // float32: cos/sin of large angles (131071 rad) differ by an ulp between libm and Sleef.
    const double tol = dtype == at::kFloat ? 1e-5 : 1.0 / 64;
    EXPECT_TRUE(at::allclose(y, expected, tol, tol)) << name << ": " << (y - expected).abs().max();
  }
}

class RopeShapes : public ::testing::TestWithParam<std::vector<int64_t>> {};

TEST_P(RopeShapes, ValuesAndGradientsMatchComposition) {
  torch::manual_seed(21);
  const auto sizes = GetParam();  // [..., T, H, Dh]
  const int64_t head_dim = sizes.back();
  RopeFrequencyOptions options;
  options.theta = 10000.0;
  options.head_dim = head_dim;
  const RopeTables tables = MakeRopeTables(options, at::kCPU);
  const std::vector<int64_t> leading(sizes.begin(), sizes.end() - 2);
  const at::Tensor positions = at::randint(0, 4096, leading, at::kLong);
  const at::Tensor x = at::randn(sizes), grad_y = at::randn(sizes);

  const at::Tensor x1 = x.clone().requires_grad_(true);
  const at::Tensor y = ApplyRope(x1, positions, tables);
  y.backward(grad_y);
  const at::Tensor x2 = x.clone().requires_grad_(true);
  const at::Tensor y_ref = ReferenceRope(x2, positions, tables.inv_freq);
  y_ref.backward(grad_y);
  EXPECT_TRUE(at::allclose(y, y_ref, 1e-5, 1e-5)) << (y - y_ref).abs().max();
  EXPECT_TRUE(at::allclose(x1.grad(), x2.grad(), 1e-5, 1e-5)) << (x1.grad() - x2.grad()).abs().max();

  const at::Tensor xb = x.to(at::kBFloat16);
  const at::Tensor yb = ApplyRope(xb, positions, tables), yb_ref = ReferenceRope(xb, positions, tables.inv_freq);
  EXPECT_TRUE(at::allclose(yb.to(at::kFloat), yb_ref.to(at::kFloat), 1.0 / 64, 1.0 / 64));
}

INSTANTIATE_TEST_SUITE_P(Shapes, RopeShapes,
                         ::testing::Values(std::vector<int64_t>{1, 1, 2}, std::vector<int64_t>{7, 3, 16},
                                           std::vector<int64_t>{2, 5, 4, 64}, std::vector<int64_t>{3, 33, 2, 6}));

TEST(ApplyRope, PreservesNormAndPositionZeroIsIdentity) {
  RopeFrequencyOptions options;
  options.head_dim = 8;
  const RopeTables tables = MakeRopeTables(options, at::kCPU);
  const at::Tensor x = at::randn({4, 2, 8});
  const at::Tensor y = ApplyRope(x, at::tensor({0, 5, 9, 1000}, at::kLong), tables);
  EXPECT_TRUE(at::equal(y[0], x[0]));
  EXPECT_TRUE(at::allclose(y.norm(2, {-1}), x.norm(2, {-1}), 1e-5, 1e-5));
}

TEST(ApplyRope, RejectsBadInputs) {
  RopeFrequencyOptions options;
  options.head_dim = 8;
  const RopeTables tables = MakeRopeTables(options, at::kCPU);
  const at::Tensor x = at::randn({4, 2, 8});
  EXPECT_THROW(ApplyRope(x, at::zeros({3}, at::kLong), tables), llamarl::Error);
  EXPECT_THROW(ApplyRope(x, at::zeros({4}, at::kInt), tables), llamarl::Error);
  EXPECT_THROW(ApplyRope(at::randn({4, 2, 6}), at::zeros({4}, at::kLong), tables), llamarl::Error);
  EXPECT_THROW(ApplyRope(at::randn({4, 8}), at::zeros({4}, at::kLong), tables), llamarl::Error);
  options.head_dim = 7;
  EXPECT_THROW(RopeInvFreq(options), llamarl::Error);
  options.head_dim = 8;
  options.llama3 = Llama3RopeScalingOptions{8.0, 4.0, 1.0, 8192};
  EXPECT_THROW(RopeInvFreq(options), llamarl::Error);
}

}  // namespace
}  // namespace llamarl::kernels
