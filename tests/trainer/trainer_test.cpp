// The single-rank Trainer against an independent LibTorch reference step (full-logits log_softmax per
// sample, the GRPO/SFT formulas written out here, torch's clip_grad_norm_ and torch::optim::AdamW),
// micro-batch invariance of gradient accumulation, non-finite skips, config errors.
#include "core/communicator.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

#include <gtest/gtest.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <cmath>

namespace llamarl {
namespace {

using testing::MaxAbsDiff;
using testing::MaxRelDiff;
using testing::ReferenceGroupAdvantages;
using testing::ReferenceLogprobs;
using testing::TrainerTestBatch;
using testing::TrainerTestConfig;
using testing::TrainerTestModel;
using testing::TrainerTestTrainerConfig;

void ReferenceStep(LlamaForCausalLMImpl& model, torch::optim::AdamW& opt, const TrainBatch& b, const TrainerConfig& c) {
  const std::vector<double> adv = ReferenceGroupAdvantages(b);
  int64_t tokens = 0;
  for (const auto& s : b.samples) tokens += int64_t(s.response.size());
  at::Tensor loss = at::zeros({}, at::kFloat);
  for (size_t i = 0; i < b.samples.size(); ++i) {
    const TrainSample& s = b.samples[i];
    at::Tensor logp = ReferenceLogprobs(model, s, c.algorithm == "sft" ? 1.0 : c.temperature);
    at::Tensor l;
    if (c.algorithm == "sft") {
      l = -logp;
    } else {
      at::Tensor ratio = at::exp(logp - at::tensor(s.behaviour_logprobs, at::kFloat));
      at::Tensor clipped = at::clamp(ratio, 1 - c.grpo.clip.eps_low, 1 + c.grpo.clip.eps_high);
      l = -at::min(ratio * adv[i], clipped * adv[i]);
    }
    loss = loss + l.sum() / double(tokens);
  }
  opt.zero_grad();
  loss.backward();
  torch::nn::utils::clip_grad_norm_(model.parameters(), c.max_grad_norm);
  opt.step();
}

class TrainerTest : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> comm_ = CreateCommunicator("local");
  LlamaConfig config_ = TrainerTestConfig();
};

void ExpectMatchesReference(Communicator& comm, const LlamaConfig& config, const std::string& algorithm,
                            double temperature = 1.0) {
  TrainerConfig c = TrainerTestTrainerConfig(algorithm);
  c.temperature = temperature;
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer trainer(comm, config, *init, c);
  LlamaForCausalLM ref = TrainerTestModel(config);
  torch::optim::AdamW opt(ref->parameters(), testing::TorchAdamWOptions(c.optimizer));
  for (int step = 0; step < 3; ++step) {
    TrainBatch b = TrainerTestBatch(config, 3, 4, 50 + uint32_t(step));
    TrainStepMetrics m = algorithm == "sft" ? trainer.SftStep(b) : trainer.Step(b);
    ASSERT_FALSE(m.skipped);
    ReferenceStep(*ref, opt, b, c);
  }
  LlamaForCausalLM got = TrainerTestModel(config, 99);
  trainer.GatherInto(*got);
  EXPECT_LT(MaxRelDiff(*got, *ref), 1e-5);
  EXPECT_LT(MaxAbsDiff(*got, *ref), 0.05 * c.optimizer.lr) << "some element moved differently by > 5% of a step";
  EXPECT_GT(MaxRelDiff(*got, *init), 1e-3) << "training changed nothing";
  EXPECT_EQ(trainer.PolicyVersion(), 3);
  EXPECT_EQ(trainer.StepCount(), 3);
}

TEST_F(TrainerTest, GrpoStepsMatchTorchReference) { ExpectMatchesReference(*comm_, config_, "grpo"); }

TEST_F(TrainerTest, SftStepsMatchTorchReference) { ExpectMatchesReference(*comm_, config_, "sft"); }

// Rollouts sampled at temperature 0.7 carry log-probs under logits / 0.7; the trainer's ratio must use the same.
TEST_F(TrainerTest, GrpoScoresAtTheSamplingTemperature) { ExpectMatchesReference(*comm_, config_, "grpo", 0.7); }

// SFT learns the data distribution itself: the temperature of a shared config does not apply to it.
TEST_F(TrainerTest, SftIgnoresTheSamplingTemperature) { ExpectMatchesReference(*comm_, config_, "sft", 0.7); }

// ScoreLogprobs (async.on_stale "recompute") equals the full-logits reference under the trained
// weights at the sampling temperature; behaviour log-probs replaced by them make the next step's
// importance weights exactly 1 (the samples count as the current policy's own).
TEST_F(TrainerTest, ScoreLogprobsIsTheCurrentPolicyAtTheSamplingTemperature) {
  TrainerConfig c = TrainerTestTrainerConfig("aipo");
  c.temperature = 0.7;
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer trainer(*comm_, config_, *init, c);
  ASSERT_FALSE(trainer.Step(TrainerTestBatch(config_, 2, 3, 5)).skipped);
  TrainBatch b = TrainerTestBatch(config_, 3, 2, 6);
  const std::vector<std::vector<float>> scored = trainer.ScoreLogprobs(b);
  LlamaForCausalLM now = TrainerTestModel(config_, 99);
  trainer.GatherInto(*now);
  ASSERT_EQ(scored.size(), b.samples.size());
  for (size_t i = 0; i < b.samples.size(); ++i) {
    at::Tensor want = ReferenceLogprobs(*now, b.samples[i], 0.7);
    EXPECT_TRUE(at::allclose(at::tensor(scored[i], at::kFloat), want, 1e-4, 1e-5)) << "sample " << i;
  }
  EXPECT_EQ(trainer.PolicyVersion(), 1) << "scoring is not a step";
  for (size_t i = 0; i < b.samples.size(); ++i) b.samples[i].behaviour_logprobs = scored[i];
  const TrainStepMetrics m = trainer.Step(b);
  EXPECT_NEAR(m.iw_mean, 1.0, 1e-5);
  EXPECT_NEAR(m.iw_max, 1.0, 1e-5);
}

TEST_F(TrainerTest, MicroBatchSizeDoesNotChangeTheUpdate) {
  TrainBatch b = TrainerTestBatch(config_, 3, 4, 7);
  for (const std::string agg : {"token_mean", "seq_mean_token_mean", "seq_sum_constant"}) {
    SCOPED_TRACE(agg);
    std::vector<LlamaForCausalLM> results;
    std::vector<double> losses;
    for (int64_t budget : {8, 40, 100000}) {
      TrainerConfig c = TrainerTestTrainerConfig("aipo");
      c.aggregation = agg;
      c.micro_batch_tokens = budget;
      LlamaForCausalLM init = TrainerTestModel(config_);
      Trainer t(*comm_, config_, *init, c);
      losses.push_back(t.Step(b).loss);
      results.push_back(TrainerTestModel(config_, 5));
      t.GatherInto(*results.back());
    }
    EXPECT_LT(MaxRelDiff(*results[0], *results[2]), 1e-5);
    EXPECT_LT(MaxRelDiff(*results[1], *results[2]), 1e-5);
    EXPECT_LT(MaxAbsDiff(*results[0], *results[2]), 0.05 * 1e-3);
    EXPECT_NEAR(losses[0], losses[2], 1e-6);
  }
}

TEST_F(TrainerTest, EveryAlgorithmTrainsAndReportsFiniteMetrics) {
  for (const std::string alg : {"grpo", "aipo", "tis", "decoupled_ppo", "rloo", "reinforce", "ppo", "sft"}) {
    SCOPED_TRACE(alg);
    TrainerConfig c = TrainerTestTrainerConfig(alg);
    c.kl.coef = 0.05;
    c.kl.reference_dtype = "float32";  // an exact copy of the initial policy: the first KL is 0
    c.entropy_coef = 0.01;
    LlamaForCausalLM init = TrainerTestModel(config_);
    Trainer t(*comm_, config_, *init, c);
    TrainStepMetrics m = t.Step(TrainerTestBatch(config_, 2, 3, 21));
    EXPECT_FALSE(m.skipped);
    EXPECT_TRUE(std::isfinite(m.loss) && std::isfinite(m.grad_norm) && m.grad_norm > 0);
    EXPECT_GT(m.entropy, 0);
    EXPECT_NEAR(m.kl, 0.0, 1e-6);  // the first step starts at the reference
    EXPECT_GT(m.tokens, 0);
    if (alg != "sft") {
      EXPECT_GT(m.iw_mean, 0);
      EXPECT_GE(m.iw_max, m.iw_mean);
      EXPECT_GT(m.iw_ess, 0);
      EXPECT_LE(m.iw_ess, 1.0 + 1e-12);
    }
    if (alg == "ppo") {
      EXPECT_GT(m.value_loss, 0);
    }
    TrainStepMetrics m2 = t.Step(TrainerTestBatch(config_, 2, 3, 22));
    EXPECT_GT(m2.kl, 0) << "after an update the policy differs from the reference";
  }
}

TEST_F(TrainerTest, KlFoldedIntoRewardChangesAdvantagesNotTheLoss) {
  TrainerConfig c = TrainerTestTrainerConfig("reinforce");
  c.kl.coef = 0.5, c.kl.mode = "reward", c.kl.estimator = "k1";
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer t(*comm_, config_, *init, c);
  t.Step(TrainerTestBatch(config_, 2, 3, 1));
  TrainStepMetrics m = t.Step(TrainerTestBatch(config_, 2, 3, 2));
  EXPECT_FALSE(m.skipped);
  EXPECT_NE(m.kl, 0.0);
}

TEST_F(TrainerTest, NonFiniteLossSkipsTheStepAndLeavesWeightsUntouched) {
  TrainerConfig c = TrainerTestTrainerConfig("grpo");
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer t(*comm_, config_, *init, c);
  TrainBatch b = TrainerTestBatch(config_, 2, 3, 3);
  b.samples[1].reward = std::nan("");
  TrainStepMetrics m = t.Step(b);
  EXPECT_TRUE(m.skipped);
  EXPECT_EQ(m.skipped_steps, 1);
  EXPECT_EQ(t.PolicyVersion(), 0);
  EXPECT_EQ(t.StepCount(), 0);
  LlamaForCausalLM after = TrainerTestModel(config_, 5);
  t.GatherInto(*after);
  EXPECT_EQ(MaxRelDiff(*after, *init), 0.0);
  b.samples[1].reward = 1.0;
  EXPECT_FALSE(t.Step(b).skipped);
  EXPECT_EQ(t.PolicyVersion(), 1);
}

TEST_F(TrainerTest, BadSamplesAndConfigsAreErrorsNamingTheValue) {
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer t(*comm_, config_, *init, TrainerTestTrainerConfig("aipo"));
  TrainBatch b = TrainerTestBatch(config_, 1, 2, 3);
  b.samples[1].behaviour_logprobs.pop_back();
  try {
    t.Step(b);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("behaviour log-probs"), std::string::npos) << e.what();
  }
  b = TrainerTestBatch(config_, 1, 2, 3);
  b.samples[0].prompt.clear();
  EXPECT_THROW(t.Step(b), std::exception);
  try {
    TrainerConfig::FromJson(Json{{"algorithm", "grpo"}, {"grpo", {{"eps_hi", 0.3}}}});
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("trainer.grpo"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("eps_hi"), std::string::npos) << e.what();
  }
  EXPECT_THROW(TrainerConfig::FromJson(Json{{"algorithm", "dpo"}}), std::exception);
  TrainerConfig parsed = TrainerConfig::FromJson(TrainerTestTrainerConfig("tis").ToJson());
  EXPECT_EQ(parsed.ToJson(), TrainerTestTrainerConfig("tis").ToJson());
}

TEST_F(TrainerTest, Bfloat16ComputeKeepsFloat32Master) {
  TrainerConfig c = TrainerTestTrainerConfig("grpo");
  c.compute_dtype = "bfloat16";
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer t(*comm_, config_, *init, c);
  TrainStepMetrics m = t.Step(TrainerTestBatch(config_, 2, 3, 9));
  EXPECT_FALSE(m.skipped);
  EXPECT_EQ(t.FlatShard().scalar_type(), at::kFloat);
  // Master moved by roughly lr per element (Adam), which bf16 weights could not represent.
  LlamaForCausalLM after = TrainerTestModel(config_, 5);
  t.GatherInto(*after);
  EXPECT_GT(MaxRelDiff(*after, *init), 1e-4);
}

}  // namespace
}  // namespace llamarl
