// GSPO, CISPO, the KL estimators k2 / low_var_kl and the ratio diagnostics: hand-worked values, and the
// python3-torch fixture (tests/fixtures/trainer/algorithms.json, scripts/fixtures/trainer_algorithms.py)
// for the general case with gradients through the tiled token log-probs.
#include "core/config.h"
#include "kernels/token_logprobs.h"
#include "tests/test_util.h"
#include "tests/trainer/loss_fixture.h"
#include "trainer/losses.h"
#include "trainer/packing.h"
#include "trainer/trainer_config.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>

namespace llamarl {
namespace {

at::Tensor T(std::vector<float> v, bool grad = false) { return at::tensor(v, at::kFloat).requires_grad_(grad); }
at::Tensor L(std::vector<int64_t> v) { return at::tensor(v, at::kLong); }

TEST(Gspo, SequenceRatioIsTheGeometricMeanAndClipsPerSequence) {
  // Sample 0: log-ratios 0.2 and 0 -> s = exp(0.1); sample 1: log-ratio -0.3 -> s = exp(-0.3).
  // eps (0.05, 0.2): s_0 = 1.105 is inside [0.95, 1.2], A = 2: l_0 = -2 s_0 on both tokens,
  // gradient -A s_0 / |y_0| = -s_0 per token; s_1 = 0.741 < 0.95 with A = -1: clipped term
  // -min(-0.741, -0.95) = 0.95 is the loss, no gradient.
  at::Tensor logp = T({0.2f, 0.0f, -0.3f}, true);
  at::Tensor loss = GspoTokenLoss(logp, T({0, 0, 0}), T({2, 2, -1}), L({0, 0, 1}), ClipConfig{0.05, 0.2});
  const double s0 = std::exp(0.1);
  EXPECT_NEAR(loss[0].item<float>(), -2 * s0, 1e-6);
  EXPECT_NEAR(loss[1].item<float>(), -2 * s0, 1e-6);
  EXPECT_NEAR(loss[2].item<float>(), 0.95, 1e-6);
  // seq_mean_token_mean weights 1 / (|y_i| * 2 samples): the step's loss is the mean of l_i.
  (loss * T({0.25, 0.25, 0.5})).sum().backward();
  EXPECT_NEAR(logp.grad()[0].item<float>(), -0.5 * 2 * s0 / 2, 1e-6);
  EXPECT_NEAR(logp.grad()[1].item<float>(), -0.5 * 2 * s0 / 2, 1e-6);
  EXPECT_EQ(logp.grad()[2].item<float>(), 0.0f);
  EXPECT_TRUE(at::allclose(SegmentMeanPerToken(T({1, 3, 5}), L({0, 0, 1})), T({2, 2, 5})));
}

TEST(Cispo, ClippedWeightKeepsEveryTokensGradient) {
  // r = 3 past 1 + eps_high = 1.5: weight 1.5; A = 1: value -1.5 and gradient -1.5 (a PPO clip
  // would give 0). r = 0.5 with eps_low 1 (no lower bound): weight 0.5, A = -2: value 1, gradient 1.
  at::Tensor logp = T({float(std::log(3.0)), float(std::log(0.5))}, true);
  at::Tensor loss = CispoTokenLoss(logp, T({0, 0}), T({1, -2}), ClipConfig{1.0, 0.5});
  EXPECT_NEAR(loss[0].item<float>(), -1.5, 1e-6);
  EXPECT_NEAR(loss[1].item<float>(), 1.0, 1e-6);
  loss.sum().backward();
  EXPECT_NEAR(logp.grad()[0].item<float>(), -1.5, 1e-6);
  EXPECT_NEAR(logp.grad()[1].item<float>(), 1.0, 1e-6);
}

TEST(KlEstimators, K2AndLowVarKlByHand) {
  // logp 0, ref log 0.5: d = -log 2; k2 = (log 2)^2 / 2. ref = logp + 4: k3 = e^4 - 5 = 49.6, clamped to 10.
  EXPECT_NEAR(KlEstimate(T({0}), T({float(std::log(0.5))}), "k2").item<float>(), 0.5 * std::log(2.0) * std::log(2.0),
              1e-6);
  EXPECT_NEAR(KlEstimate(T({0}), T({4}), "k3").item<float>(), std::exp(4.0) - 5.0, 1e-4);
  EXPECT_NEAR(KlEstimate(T({0}), T({4}), "low_var_kl").item<float>(), 10.0, 1e-6);
  EXPECT_NEAR(KlEstimate(T({0}), T({float(std::log(0.5))}), "low_var_kl").item<float>(), 0.5 + std::log(2.0) - 1.0,
              1e-6);
  try {
    KlConfig::FromJson(Json{{"estimator", "k4"}}, "trainer.kl");
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("trainer.kl.estimator"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("low_var_kl"), std::string::npos) << e.what();
  }
}

TEST(RatioStats, ClipFractionsAndApproxKlByHand) {
  RatioStats s;
  // PPO clip [0.8, 1.2]: r 0.5 with A < 0 binds below, r 0.5 with A > 0 does not; r 1.5 with A > 0
  // binds above; r 1 binds nowhere.
  s.Add(T({0.5, 0.5, 1.5, 1.0}), T({-1, 1, 1, 1}), 0.8, 1.2, /*sign_aware=*/true);
  EXPECT_DOUBLE_EQ(s.ClippedLowFraction(), 0.25);
  EXPECT_DOUBLE_EQ(s.ClippedHighFraction(), 0.25);
  EXPECT_DOUBLE_EQ(s.Mean(), 0.875);
  EXPECT_DOUBLE_EQ(s.Min(), 0.5);
  EXPECT_DOUBLE_EQ(s.max, 1.5);
  const double kl = 2 * (0.5 - 1 - std::log(0.5)) + (1.5 - 1 - std::log(1.5));
  EXPECT_NEAR(s.ApproxKl(), kl / 4, 1e-7);
  // A weight clip binds wherever r leaves the range, whatever the advantage's sign.
  RatioStats w;
  w.Add(T({0.5, 0.5, 1.5, 1.0}), T({-1, 1, 1, 1}), 0.8, 1.2, /*sign_aware=*/false);
  EXPECT_DOUBLE_EQ(w.ClippedLowFraction(), 0.5);
  EXPECT_DOUBLE_EQ(w.ClippedHighFraction(), 0.25);
  EXPECT_EQ(RatioStats().Min(), 0.0);
}

TEST(Packing, SegmentsNumberTheSamplesOfAMicroBatch) {
  std::vector<TrainSample> samples(3);
  samples[0].prompt = {1}, samples[0].response = {2, 3};
  samples[1].prompt = {4}, samples[1].response = {5};
  samples[2].prompt = {6}, samples[2].response = {7, 8, 9};
  auto mbs = PackSamples(samples, {2, 0}, 100);  // a subset, in the order given
  ASSERT_EQ(mbs.size(), 1u);
  EXPECT_EQ(mbs[0].sample_index, (std::vector<int64_t>{2, 2, 2, 0, 0}));
  EXPECT_TRUE(at::equal(SegmentOfTokens(mbs[0]), L({0, 0, 0, 1, 1})));
}

TEST(TrainerConfigAlgorithms, KeysParseAndBadValuesNameTheirPath) {
  TrainerConfig c = TrainerConfig::FromJson(Json{{"algorithm", "gspo"},
                                                 {"aggregation", "seq_mean_token_mean"},
                                                 {"gspo", {{"eps_high", 5e-4}}},
                                                 {"ppo_epochs", 2},
                                                 {"num_minibatches", 4}});
  EXPECT_EQ(c.gspo.clip.eps_low, 3e-4);
  EXPECT_EQ(c.gspo.clip.eps_high, 5e-4);
  EXPECT_EQ(c.cispo.clip.eps_low, 1.0);
  EXPECT_EQ(c.UpdatesPerStep(), 8);
  EXPECT_EQ(TrainerConfig::FromJson(c.ToJson()).ToJson(), c.ToJson());
  auto expect_error = [](const Json& j, const std::string& what) {
    try {
      TrainerConfig::FromJson(j);
      FAIL() << "expected an error naming " << what;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  expect_error(Json{{"ppo_epochs", 0}}, "trainer.ppo_epochs");
  expect_error(Json{{"num_minibatches", -1}}, "trainer.num_minibatches");
  expect_error(Json{{"cispo", {{"eps_low", 1.5}}}}, "trainer.cispo.eps_low");
  expect_error(Json{{"gspo", {{"eps", 0.1}}}}, "trainer.gspo");
  expect_error(Json{{"algorithm", "gspo"}}, "seq_mean_token_mean");
}

// The general case against python3-torch: TokenLogprobs (tiled) + the loss, value and gradients in
// the hidden states and the LM-head weight.
TEST(Algorithms, MatchPythonReferenceWithGradients) {
  const testing::LossFixture fx("trainer/algorithms.json");
  const int64_t n = fx.n();
  const at::Tensor segments = L(fx.json()["segments"].get<std::vector<int64_t>>());
  const at::Tensor adv = fx.F32("adv_tok"), ref = fx.F32("ref");
  // seq_mean_token_mean weights (GSPO) and token_mean weights (CISPO, KL).
  const at::Tensor lengths = at::zeros({segments.max().item<int64_t>() + 1}).index_add(0, segments, at::ones({n}));
  const at::Tensor seq_w = 1.0 / (lengths.index_select(0, segments) * lengths.numel()), tok_w = at::full({n}, 1.0 / n);
  fx.ExpectEveryCase([&](const Json& c, const at::Tensor& hidden, const at::Tensor& weight) {
    const std::string alg = c["algorithm"].get<std::string>();
    kernels::TokenLogprobsOptions tiles;
    tiles.token_chunk = 5, tiles.vocab_chunk = 4;
    at::Tensor logp = kernels::TokenLogprobs(hidden, weight, fx.targets(), tiles);
    if (alg == "gspo") {
      const ClipConfig clip{c["eps_low"].get<double>(), c["eps_high"].get<double>()};
      return (GspoTokenLoss(logp, fx.F32(c["mu"].get<std::string>()), adv, segments, clip) * seq_w).sum();
    }
    if (alg == "cispo") {
      const ClipConfig clip{c["eps_low"].get<double>(), c["eps_high"].get<double>()};
      return (CispoTokenLoss(logp, fx.F32("mu"), adv, clip) * tok_w).sum();
    }
    return (KlEstimate(logp, ref, alg) * tok_w).sum();
  });
}

}  // namespace
}  // namespace llamarl
