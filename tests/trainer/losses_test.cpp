// Losses, advantages, schedule and AdamW against hand-worked values, the python3-torch fixture
// (tests/fixtures/trainer/losses.json, scripts/fixtures/trainer_losses.py) for the general case with
// gradients, and torch::optim::AdamW itself.
#include "core/config.h"
#include "kernels/token_logprobs.h"
#include "tests/test_util.h"
#include "tests/trainer/loss_fixture.h"
#include "trainer/adamw.h"
#include "trainer/advantages.h"
#include "trainer/losses.h"
#include "trainer/lr_schedule.h"
#include "trainer/packing.h"
#include "trainer/ppo.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/adamw.h>

#include <cmath>

namespace llamarl {
namespace {

at::Tensor T(std::vector<float> v, bool grad = false) {
  return at::tensor(v, at::kFloat).requires_grad_(grad);
}

TEST(Advantages, GroupMeanAndStdByHand) {
  // group 7: {1, 2, 3}: mean 2, unbiased std 1; group 9: {5} alone -> 0.
  const std::vector<double> r{1, 5, 2, 3};
  const std::vector<int64_t> g{7, 9, 7, 7};
  auto a = GroupAdvantages(r, g, /*normalize_std=*/true, 0.0);
  EXPECT_DOUBLE_EQ(a[0], -1.0);
  EXPECT_DOUBLE_EQ(a[1], 0.0);
  EXPECT_DOUBLE_EQ(a[2], 0.0);
  EXPECT_DOUBLE_EQ(a[3], 1.0);
  auto centred = GroupAdvantages({0, 4, 1, 1}, {1, 1, 2, 2}, /*normalize_std=*/false, 0.0);
  EXPECT_EQ(centred, (std::vector<double>{-2, 2, 0, 0}));
  // Equal rewards: std 0, advantage 0 (not NaN) with std_eps.
  auto flat = GroupAdvantages({1, 1}, {0, 0}, true, 1e-6);
  EXPECT_EQ(flat, (std::vector<double>{0, 0}));
}

TEST(Advantages, RlooAndBaselineByHand) {
  auto a = RlooAdvantages({1, 2, 3, 10}, {0, 0, 0, 1});
  EXPECT_DOUBLE_EQ(a[0], 1 - 2.5);
  EXPECT_DOUBLE_EQ(a[1], 2 - 2.0);
  EXPECT_DOUBLE_EQ(a[2], 3 - 1.5);
  EXPECT_DOUBLE_EQ(a[3], 0.0);
  EXPECT_EQ(BaselineAdvantages({1, 2, 6}), (std::vector<double>{-2, -1, 3}));
}

TEST(Advantages, GaeByHand) {
  // gamma 0.9, lambda 0.5, rewards [0, 1], values [0.5, 0.5]:
  //   delta_1 = 1 - 0.5 = 0.5, A_1 = 0.5; delta_0 = 0 + 0.9 * 0.5 - 0.5 = -0.05, A_0 = -0.05 + 0.45 * 0.5 = 0.175
  GaeResult r = Gae({0, 1}, {0.5, 0.5}, 0.9, 0.5);
  EXPECT_NEAR(r.advantages[0], 0.175, 1e-12);
  EXPECT_NEAR(r.advantages[1], 0.5, 1e-12);
  EXPECT_NEAR(r.returns[0], 0.675, 1e-12);
  EXPECT_NEAR(r.returns[1], 1.0, 1e-12);
  std::vector<double> x{1, 3};
  Whiten(x, 2.0, 1.0, 0.0);
  EXPECT_EQ(x, (std::vector<double>{-1, 1}));
  EXPECT_THROW(Gae({0}, {0, 1}, 1, 1), std::exception);
}

TEST(Advantages, MaskedGaeSkipsObservationTokensByHand) {
  // A two-turn episode: model tokens 0, 1, an observation (tokens 2, 3: mask 0), model token 4.
  // gamma 0.9, lambda 0.5; the observation's reward (7) and values (9) must not enter the recursion:
  //   k=4: delta = 1 - 0.5 = 0.5, A = 0.5, R = 1.0
  //   k=1: delta = 0 + 0.9 * 0.5 - 0.4 = 0.05 (bootstraps from token 4), A = 0.05 + 0.45 * 0.5 = 0.275, R = 0.675
  //   k=0: delta = 0 + 0.9 * 0.4 - 0.2 = 0.16, A = 0.16 + 0.45 * 0.275 = 0.28375, R = 0.48375
  const std::vector<uint8_t> mask{1, 1, 0, 0, 1};
  GaeResult r = Gae({0, 0, 7, 0, 1}, {0.2, 0.4, 9, 9, 0.5}, 0.9, 0.5, mask);
  const std::vector<double> want_a{0.28375, 0.275, 0, 0, 0.5}, want_r{0.48375, 0.675, 9, 9, 1.0};
  for (size_t k = 0; k < mask.size(); ++k) {
    EXPECT_NEAR(r.advantages[k], want_a[k], 1e-12) << "token " << k;
    EXPECT_NEAR(r.returns[k], want_r[k], 1e-12) << "token " << k;
  }
  // The same as GAE over the model tokens alone; without the mask the observation changes token 1.
  GaeResult compact = Gae({0, 0, 1}, {0.2, 0.4, 0.5}, 0.9, 0.5);
  EXPECT_NEAR(compact.advantages[1], r.advantages[1], 1e-12);
  EXPECT_GT(std::abs(Gae({0, 0, 7, 0, 1}, {0.2, 0.4, 9, 9, 0.5}, 0.9, 0.5).advantages[1] - 0.275), 1.0);
  EXPECT_THROW(Gae({0, 1}, {0, 1}, 1, 1, {1}), std::exception);
}

TEST(Losses, GrpoClipsAndItsGradientVanishesPastTheClip) {
  ClipConfig clip{0.2, 0.2};
  // r = 1.5 > 1.2 with A = 1: loss -1.2, no gradient. With A = -1: loss 1.5, gradient -A r = 1.5.
  at::Tensor logp = T({float(std::log(1.5)), float(std::log(1.5))}, true);
  at::Tensor loss = GrpoTokenLoss(logp, T({0, 0}), T({1, -1}), clip);
  EXPECT_NEAR(loss[0].item<float>(), -1.2, 1e-6);
  EXPECT_NEAR(loss[1].item<float>(), 1.5, 1e-6);
  loss.sum().backward();
  EXPECT_EQ(logp.grad()[0].item<float>(), 0.0f);
  EXPECT_NEAR(logp.grad()[1].item<float>(), 1.5, 1e-6);
}

TEST(Losses, AipoGradientDoesNotVanishPastRho) {
  // pi/mu = 6 > rho = 4, A = 1: weight 4, value -4, gradient -4 (PPO's clip would give 0 here).
  at::Tensor logp = T({float(std::log(6.0)), float(std::log(0.5))}, true);
  at::Tensor loss = AipoTokenLoss(logp, T({0, 0}), T({1, 2}), AipoConfig{4.0});
  EXPECT_NEAR(loss[0].item<float>(), -4.0, 1e-5);
  EXPECT_NEAR(loss[1].item<float>(), -1.0, 1e-6);  // weight 0.5 * A 2
  loss.sum().backward();
  EXPECT_NEAR(logp.grad()[0].item<float>(), -4.0, 1e-5);
  EXPECT_NEAR(logp.grad()[1].item<float>(), -1.0, 1e-6);
}

TEST(Losses, TruncatedIsAndDecoupledPpoByHand) {
  // prox/mu = 3, cap 2: weight 2; logp = prox so r = 1: loss -2 A, gradient -2 A.
  const float prox = float(std::log(3.0));
  at::Tensor logp = T({prox}, true);
  at::Tensor loss = DecoupledTokenLoss(logp, T({prox}), T({0}), T({0.5}), 2.0, ClipConfig{0.2, 0.2});
  EXPECT_NEAR(loss.item<float>(), -1.0, 1e-6);
  loss.sum().backward();
  EXPECT_NEAR(logp.grad().item<float>(), -1.0, 1e-6);
  // No cap (decoupled PPO): weight 3; r = 1.5 past the clip with A > 0: value -3 * 1.2, no gradient.
  at::Tensor logp2 = T({float(std::log(4.5))}, true);
  at::Tensor loss2 = DecoupledTokenLoss(logp2, T({prox}), T({0}), T({1}), 0.0, ClipConfig{0.2, 0.2});
  EXPECT_NEAR(loss2.item<float>(), -3.6, 1e-5);
  loss2.backward();
  EXPECT_EQ(logp2.grad().item<float>(), 0.0f);
}

TEST(Losses, PolicyGradientSftAndKlByHand) {
  at::Tensor logp = T({-1.0f, -2.0f}, true);
  at::Tensor pg = PolicyGradientTokenLoss(logp, T({2, -1}));
  EXPECT_NEAR(pg[0].item<float>(), -2.0, 1e-6);
  pg.sum().backward();
  EXPECT_NEAR(logp.grad()[0].item<float>(), -2.0, 1e-6);
  EXPECT_NEAR(logp.grad()[1].item<float>(), 1.0, 1e-6);
  EXPECT_NEAR(SftTokenLoss(T({-0.25f})).item<float>(), 0.25, 1e-7);
  // logp 0, ref log 0.5: d = -log 2; k1 = log 2, k3 = 0.5 + log 2 - 1.
  at::Tensor k1 = KlEstimate(T({0}), T({float(std::log(0.5))}), "k1");
  at::Tensor k3 = KlEstimate(T({0}), T({float(std::log(0.5))}), "k3");
  EXPECT_NEAR(k1.item<float>(), std::log(2.0), 1e-6);
  EXPECT_NEAR(k3.item<float>(), 0.5 + std::log(2.0) - 1.0, 1e-6);
  EXPECT_THROW(KlEstimate(T({0}), T({0}), "k4"), std::exception);
}

TEST(Losses, ValueLossClipsByHand) {
  // V 1.5, V_old 1.0, R 0, c 0.2: unclipped 2.25, clipped (1.2)^2 = 1.44; max -> 0.5 * 2.25.
  EXPECT_NEAR(ValueTokenLoss(T({1.5}), T({1.0}), T({0}), 0.2).item<float>(), 1.125, 1e-6);
  // V 0.5, V_old 1.0, R 0: unclipped 0.25, clipped (0.8)^2 = 0.64 -> 0.32.
  EXPECT_NEAR(ValueTokenLoss(T({0.5}), T({1.0}), T({0}), 0.2).item<float>(), 0.32, 1e-6);
  EXPECT_NEAR(ValueTokenLoss(T({0.5}), T({1.0}), T({0}), 0.0).item<float>(), 0.125, 1e-6);
}

TEST(Losses, ImportanceStatsByHand) {
  ImportanceStats s;
  s.Add(T({1, 2}), 3.0);
  s.Add(T({4}), 3.0);
  EXPECT_DOUBLE_EQ(s.Mean(), 7.0 / 3.0);
  EXPECT_DOUBLE_EQ(s.max, 4.0);
  EXPECT_DOUBLE_EQ(s.TruncatedFraction(), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(s.Ess(), 49.0 / (3.0 * 21.0));
}

// The general case against python3-torch: TokenLogprobs (tiled) + each loss + KL + entropy, loss
// value and gradients in hidden and weight.
TEST(Losses, MatchPythonReferenceWithGradients) {
  const testing::LossFixture fx("trainer/losses.json");
  const at::Tensor mu = fx.F32("mu"), prox = fx.F32("prox"), ref = fx.F32("ref"), adv = fx.F32("adv"), w = fx.F32("w");
  fx.ExpectEveryCase([&](const Json& c, const at::Tensor& hidden, const at::Tensor& weight) {
    const std::string alg = c["algorithm"].get<std::string>();
    kernels::TokenLogprobsOptions tiles;
    tiles.token_chunk = 4, tiles.vocab_chunk = 5;  // several tiles in both directions
    auto lp = kernels::TokenLogprobsAndEntropy(hidden, weight, fx.targets(), tiles);
    const ClipConfig clip{c["eps_low"].get<double>(), c["eps_high"].get<double>()};
    at::Tensor l;
    if (alg == "grpo") l = GrpoTokenLoss(lp.logprobs, mu, adv, clip);
    else if (alg == "aipo") l = AipoTokenLoss(lp.logprobs, mu, adv, AipoConfig{c["rho"].get<double>()});
    else if (alg == "tis" || alg == "decoupled_ppo") l = DecoupledTokenLoss(lp.logprobs, prox, mu, adv, c["cap"].get<double>(), clip);
    else if (alg == "reinforce") l = PolicyGradientTokenLoss(lp.logprobs, adv);
    else l = SftTokenLoss(lp.logprobs);
    l = l + c["kl_coef"].get<double>() * KlEstimate(lp.logprobs, ref, c["kl_estimator"].get<std::string>()) -
        c["entropy_coef"].get<double>() * lp.entropy;
    return (l * w).sum();
  });
}

TEST(LrSchedule, WarmupThenCosineByHand) {
  LrScheduleConfig c;
  c.warmup_steps = 2, c.kind = "cosine", c.total_steps = 6, c.min_lr_ratio = 0.1;
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 1.0, 0), 0.5);
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 1.0, 1), 1.0);
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 1.0, 2), 1.0);
  EXPECT_NEAR(LearningRateAt(c, 1.0, 4), 0.55, 1e-12);  // half-way: 0.1 + 0.9 * 0.5
  EXPECT_NEAR(LearningRateAt(c, 1.0, 6), 0.1, 1e-12);
  EXPECT_NEAR(LearningRateAt(c, 1.0, 100), 0.1, 1e-12);
  c.kind = "constant";
  EXPECT_DOUBLE_EQ(LearningRateAt(c, 2.0, 50), 2.0);
  EXPECT_THROW(LrScheduleConfig::FromJson(Json{{"kind", "cosine"}, {"warmup_steps", 5}, {"total_steps", 5}}, "s"),
               std::exception);
}

TEST(AdamW, MatchesTorchOptimAdamW) {
  AdamWConfig c;
  c.lr = 0.01, c.beta1 = 0.8, c.beta2 = 0.95, c.eps = 1e-6, c.weight_decay = 0.1;
  at::manual_seed(3);
  at::Tensor init = at::randn({37});
  at::Tensor ours = init.clone();
  FlatAdamW adam(c, 37, ours.options());
  at::Tensor theirs = init.clone().requires_grad_(true);
  torch::optim::AdamW ref({theirs}, torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps)
                                        .weight_decay(c.weight_decay));
  for (int step = 0; step < 6; ++step) {
    at::Tensor g = at::randn({37});
    theirs.mutable_grad() = g.clone();
    ref.step();
    adam.Step(ours, g, c.lr);
  }
  EXPECT_EQ(adam.step(), 6);
  EXPECT_TRUE(at::allclose(ours, theirs.detach(), 1e-6, 1e-7)) << (ours - theirs).abs().max().item<float>();
}

// A shard longer than two chunks: the chunked update equals the same arithmetic over the whole shard
// bit for bit (it is element-wise), so its temporaries can be one chunk without changing results.
TEST(AdamW, ChunkedStepEqualsOneWholeShardPass) {
  AdamWConfig c;
  c.lr = 0.01, c.weight_decay = 0.1;
  const int64_t n = 2 * kFlatChunkElements + 5;
  at::manual_seed(4);
  at::Tensor ours = at::randn({n});
  at::Tensor p = ours.clone(), m = at::zeros({n}), v = at::zeros({n});
  FlatAdamW adam(c, n, ours.options());
  for (int step = 1; step <= 2; ++step) {
    at::Tensor g = at::randn({n});
    adam.Step(ours, g, c.lr);
    p.mul_(1.0 - c.lr * c.weight_decay);
    m.mul_(c.beta1).add_(g, 1.0 - c.beta1);
    v.mul_(c.beta2).addcmul_(g, g, 1.0 - c.beta2);
    at::Tensor denom = (v.sqrt() / std::sqrt(1.0 - std::pow(c.beta2, step))).add_(c.eps);
    p.addcdiv_(m, denom, -c.lr / (1.0 - std::pow(c.beta1, step)));
  }
  EXPECT_TRUE(at::equal(ours, p));
  EXPECT_TRUE(at::equal(adam.exp_avg_sq(), v));
}

// SumOfSquares over several chunks against a float64 sum done another way (a dot product); a shard
// of one chunk gives exactly the one-pass figure; an empty shard gives 0.
TEST(AdamW, SumOfSquaresIsTheSquaredNormInFloat64) {
  at::manual_seed(5);
  at::Tensor g = at::randn({2 * kFlatChunkElements + 7});
  at::Tensor d = g.to(at::kDouble);
  const double expected = at::dot(d, d).item<double>();
  EXPECT_NEAR(SumOfSquares(g).item<double>(), expected, 1e-10 * expected);
  EXPECT_EQ(SumOfSquares(g).scalar_type(), at::kDouble);
  at::Tensor small = g.narrow(0, 0, 1000);
  EXPECT_EQ(SumOfSquares(small).item<double>(), small.to(at::kDouble).pow(2).sum().item<double>());
  EXPECT_EQ(SumOfSquares(at::empty({0})).item<double>(), 0.0);
}

TEST(AdamW, ConfigParsesBetasAndNamesBadValues) {
  AdamWConfig c = AdamWConfig::FromJson(Json{{"lr", 0.5}, {"betas", {0.7, 0.9}}}, "trainer.optimizer");
  EXPECT_EQ(c.beta1, 0.7);
  EXPECT_EQ(c.beta2, 0.9);
  try {
    AdamWConfig::FromJson(Json{{"betas", {0.7, 1.5}}}, "trainer.optimizer");
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("trainer.optimizer.betas"), std::string::npos) << e.what();
  }
  EXPECT_THROW(AdamWConfig::FromJson(Json{{"lr", 0.5}, {"momentum", 0.9}}, "o"), std::exception);
}

TEST(Packing, PacksSequencesUnderTheBudgetWithSegmentsAndPredictionPositions) {
  std::vector<TrainSample> samples(4);
  samples[0].prompt = {1, 2}, samples[0].response = {3, 4, 5};  // input 1 2 3 4 (4 tokens)
  samples[1].prompt = {6}, samples[1].response = {};             // no response: left out
  samples[2].prompt = {7}, samples[2].response = {8, 9};         // input 7 8 (2 tokens)
  samples[3].prompt = {10, 11, 12}, samples[3].response = {13};  // input 10 11 12 (3 tokens)
  auto mbs = PackSamples(samples, 6);
  ASSERT_EQ(mbs.size(), 2u);
  EXPECT_TRUE(at::equal(mbs[0].input_ids, at::tensor(std::vector<int64_t>{1, 2, 3, 4, 7, 8}).unsqueeze(0)));
  EXPECT_TRUE(at::equal(mbs[0].segment_ids, at::tensor(std::vector<int64_t>{0, 0, 0, 0, 2, 2}).unsqueeze(0)));
  // Response token j of a sample starting at s is predicted at s + |prompt| - 1 + j.
  EXPECT_TRUE(at::equal(mbs[0].positions, at::tensor(std::vector<int64_t>{1, 2, 3, 4, 5})));
  EXPECT_TRUE(at::equal(mbs[0].targets, at::tensor(std::vector<int64_t>{3, 4, 5, 8, 9})));
  EXPECT_EQ(mbs[0].sample_index, (std::vector<int64_t>{0, 0, 0, 2, 2}));
  EXPECT_EQ(mbs[0].token_index, (std::vector<int64_t>{0, 1, 2, 0, 1}));
  EXPECT_TRUE(at::equal(mbs[1].input_ids, at::tensor(std::vector<int64_t>{10, 11, 12}).unsqueeze(0)));
  EXPECT_TRUE(at::equal(mbs[1].positions, at::tensor(std::vector<int64_t>{2})));
  // A sequence longer than the budget gets a micro-batch of its own.
  EXPECT_EQ(PackSamples(samples, 1).size(), 3u);
  std::vector<std::vector<float>> per_token{{0.5f, 1.5f, 2.5f}, {}, {3.5f, 4.5f}, {5.5f}};
  EXPECT_TRUE(at::equal(GatherPerToken(mbs[0], per_token), T({0.5, 1.5, 2.5, 3.5, 4.5})));
  EXPECT_TRUE(at::equal(BroadcastPerSample(mbs[0], {1, 0, 2, 3}), T({1, 1, 1, 2, 2})));
  samples[1].response = {4};
  samples[1].prompt.clear();
  try {
    PackSamples(samples, 6);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("sample 1"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llamarl
