// Tiled token log-probs/entropy against the plain composition log_softmax(h @ W^T / temperature)
// + gather: values and gradients for hidden and weight, tile sizes that do and do not divide T and
// V, float32 and bfloat16, temperature, and the entropy's own gradient.
#include "core/check.h"
#include "kernels/token_logprobs.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

namespace llamarl::kernels {
namespace {

struct Reference {
  at::Tensor logprobs, entropy;
};

Reference Compose(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets, double temperature) {
  const at::Tensor logits = at::matmul(hidden.to(at::kFloat), weight.to(at::kFloat).t()) / temperature;
  const at::Tensor logp = at::log_softmax(logits, -1);
  return {logp.gather(1, targets.unsqueeze(1)).squeeze(1), -(logp.exp() * logp).sum(-1)};
}

struct Case {
  int64_t tokens, vocab, dim, token_chunk, vocab_chunk;
  double temperature;
};

class TokenLogprobsCases : public ::testing::TestWithParam<Case> {};

TEST_P(TokenLogprobsCases, Float32ValuesAndGradientsMatchComposition) {
  const Case c = GetParam();
  torch::manual_seed(31);
  const at::Tensor hidden = at::randn({c.tokens, c.dim}), weight = at::randn({c.vocab, c.dim}) * 0.5;
  const at::Tensor targets = at::randint(0, c.vocab, {c.tokens}, at::kLong);
  const at::Tensor g_lp = at::randn({c.tokens}), g_h = at::randn({c.tokens});
  TokenLogprobsOptions options{c.token_chunk, c.vocab_chunk, c.temperature};

  const at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
  const TokenLogprobsResult fused = TokenLogprobsAndEntropy(h1, w1, targets, options);
  ((fused.logprobs * g_lp).sum() + (fused.entropy * g_h).sum()).backward();
  const at::Tensor h2 = hidden.clone().requires_grad_(true), w2 = weight.clone().requires_grad_(true);
  const Reference ref = Compose(h2, w2, targets, c.temperature);
  ((ref.logprobs * g_lp).sum() + (ref.entropy * g_h).sum()).backward();

  EXPECT_TRUE(at::allclose(fused.logprobs, ref.logprobs, 1e-4, 1e-4)) << (fused.logprobs - ref.logprobs).abs().max();
  EXPECT_TRUE(at::allclose(fused.entropy, ref.entropy, 1e-4, 1e-4)) << (fused.entropy - ref.entropy).abs().max();
  EXPECT_TRUE(at::allclose(h1.grad(), h2.grad(), 1e-4, 1e-4)) << (h1.grad() - h2.grad()).abs().max();
  EXPECT_TRUE(at::allclose(w1.grad(), w2.grad(), 1e-4, 1e-4)) << (w1.grad() - w2.grad()).abs().max();

  // Log-probs alone (no entropy) take the other backward branch.
  const at::Tensor h3 = hidden.clone().requires_grad_(true), w3 = weight.clone().requires_grad_(true);
  const at::Tensor lp = TokenLogprobs(h3, w3, targets, options);
  (lp * g_lp).sum().backward();
  const at::Tensor h4 = hidden.clone().requires_grad_(true), w4 = weight.clone().requires_grad_(true);
  (Compose(h4, w4, targets, c.temperature).logprobs * g_lp).sum().backward();
  EXPECT_TRUE(at::allclose(lp, ref.logprobs, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(h3.grad(), h4.grad(), 1e-4, 1e-4)) << (h3.grad() - h4.grad()).abs().max();
  EXPECT_TRUE(at::allclose(w3.grad(), w4.grad(), 1e-4, 1e-4)) << (w3.grad() - w4.grad()).abs().max();
}

// bf16 hidden [T, D] and head [V, D], and targets, for case `c` under `seed`.
struct Bf16Inputs {
  at::Tensor hidden, weight, targets;
};

Bf16Inputs MakeBf16Inputs(const Case& c, uint64_t seed) {
  torch::manual_seed(seed);
  Bf16Inputs in;
  in.hidden = at::randn({c.tokens, c.dim}).to(at::kBFloat16);
  in.weight = (at::randn({c.vocab, c.dim}) * 0.5).to(at::kBFloat16);
  in.targets = at::randint(0, c.vocab, {c.tokens}, at::kLong);
  return in;
}

TEST_P(TokenLogprobsCases, Bfloat16MatchesFloat32CompositionOfSameValues) {
  const Case c = GetParam();
  const auto [hidden, weight, targets] = MakeBf16Inputs(c, 32);
  const at::Tensor g_lp = at::randn({c.tokens});
  TokenLogprobsOptions options{c.token_chunk, c.vocab_chunk, c.temperature};
  const at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
  const at::Tensor lp = TokenLogprobs(h1, w1, targets, options);
  (lp * g_lp).sum().backward();
  ASSERT_EQ(lp.scalar_type(), at::kFloat);
  ASSERT_EQ(h1.grad().scalar_type(), at::kBFloat16);
  ASSERT_EQ(w1.grad().scalar_type(), at::kBFloat16);
  // The matmuls run in float32 on the bf16 values, so the float32 composition is the exact reference
  // up to summation order; gradients are rounded once to bf16 (2^-8 relative).
  const at::Tensor h2 = hidden.to(at::kFloat).requires_grad_(true), w2 = weight.to(at::kFloat).requires_grad_(true);
  const at::Tensor ref = Compose(h2, w2, targets, c.temperature).logprobs;
  (ref * g_lp).sum().backward();
  EXPECT_TRUE(at::allclose(lp, ref, 1e-4, 1e-4));
  EXPECT_TRUE(at::allclose(h1.grad().to(at::kFloat), h2.grad(), 1e-2, 1e-3));
  EXPECT_TRUE(at::allclose(w1.grad().to(at::kFloat), w2.grad(), 1e-2, 1e-3));
}

TEST_P(TokenLogprobsCases, Bfloat16GradientsAreTheFloat32TilesRoundedOnce) {
  // The bf16 path runs the same float32 tiles on the upcast values and rounds each finished vocab tile
  // of the weight's gradient once into bf16 (it never holds a float32 [V, D]): bit for bit the float32
  // path's gradients on the upcast inputs, rounded.
  const Case c = GetParam();
  const Bf16Inputs in = MakeBf16Inputs(c, 33);  // named members: the lambda below captures them
  const at::Tensor &hidden = in.hidden, &weight = in.weight, &targets = in.targets;
  const at::Tensor g_lp = at::randn({c.tokens}), g_h = at::randn({c.tokens});
  TokenLogprobsOptions options{c.token_chunk, c.vocab_chunk, c.temperature};
  auto run = [&](const at::Tensor& h, const at::Tensor& w) {
    const TokenLogprobsResult r = TokenLogprobsAndEntropy(h, w, targets, options);
    ((r.logprobs * g_lp).sum() + (r.entropy * g_h).sum()).backward();
  };
  const at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
  run(h1, w1);
  const at::Tensor h2 = hidden.to(at::kFloat).requires_grad_(true), w2 = weight.to(at::kFloat).requires_grad_(true);
  run(h2, w2);
  EXPECT_TRUE(at::equal(w1.grad(), w2.grad().to(at::kBFloat16)));
  EXPECT_TRUE(at::equal(h1.grad(), h2.grad().to(at::kBFloat16)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, TokenLogprobsCases,
                         ::testing::Values(Case{1, 1, 1, 1024, 8192, 1.0},       // degenerate: p = 1
                                           Case{37, 1000, 16, 8, 128, 1.0},      // neither chunk divides
                                           Case{64, 300, 32, 16, 100, 0.7},      // exact multiples, tempered
                                           Case{5, 257, 8, 2, 64, 1.3},          // last tiles of 1 row, 1 column
                                           Case{70, 513, 24, 1024, 8192, 1.0}));  // one tile

TEST(TokenLogprobs, EntropyOnlyGradientAndWeightOnlyGradient) {
  torch::manual_seed(33);
  const at::Tensor hidden = at::randn({9, 6}), weight = at::randn({50, 6});
  const at::Tensor targets = at::randint(0, 50, {9}, at::kLong);
  TokenLogprobsOptions options{4, 16, 1.0};
  const at::Tensor w1 = weight.clone().requires_grad_(true);
  TokenLogprobsAndEntropy(hidden, w1, targets, options).entropy.sum().backward();
  const at::Tensor w2 = weight.clone().requires_grad_(true);
  Compose(hidden, w2, targets, 1.0).entropy.sum().backward();
  EXPECT_TRUE(at::allclose(w1.grad(), w2.grad(), 1e-4, 1e-5));
}

TEST(TokenLogprobs, LargeLogitsStayFinite) {
  // Logits of +-1e4 overflow a naive exp; the online log-sum-exp must not.
  const at::Tensor hidden = at::full({3, 1}, 100.0f);
  const at::Tensor weight = at::tensor({100.0f, -100.0f, 99.0f}).reshape({3, 1});
  const at::Tensor lp = TokenLogprobs(hidden, weight, at::tensor({0, 1, 2}, at::kLong), {2, 2, 1.0});
  EXPECT_TRUE(at::isfinite(lp).all().item<bool>());
  EXPECT_NEAR(lp[0].item<float>(), -std::log1p(std::exp(-100.0)), 1e-6);
  EXPECT_NEAR(lp[2].item<float>(), -100.0, 1e-3);
}

TEST(TokenLogprobs, RejectsBadInputs) {
  const at::Tensor hidden = at::randn({4, 8}), weight = at::randn({10, 8});
  const at::Tensor targets = at::tensor({0, 1, 2, 3}, at::kLong);
  EXPECT_THROW(TokenLogprobs(hidden, at::randn({10, 7}), targets), llamarl::Error);
  EXPECT_THROW(TokenLogprobs(hidden, weight, at::tensor({0, 1, 2, 10}, at::kLong)), llamarl::Error);
  EXPECT_THROW(TokenLogprobs(hidden, weight, at::tensor({0, -100, 2, 1}, at::kLong)), llamarl::Error);
  EXPECT_THROW(TokenLogprobs(hidden, weight, targets.to(at::kInt)), llamarl::Error);
  EXPECT_THROW(TokenLogprobs(hidden, weight.to(at::kBFloat16), targets), llamarl::Error);
  EXPECT_THROW(TokenLogprobs(hidden, weight, targets, {0, 8, 1.0}), llamarl::Error);
  EXPECT_THROW(TokenLogprobs(hidden, weight, targets, {8, 8, 0.0}), llamarl::Error);
}

}  // namespace
}  // namespace llamarl::kernels
