// ppo_epochs x num_minibatches updates per step against an independent LibTorch reference (full-logits
// log_softmax per sample, the surrogates written out here, the proximal policy taken before the first
// update, torch's clip_grad_norm_ and torch::optim::AdamW per minibatch), the ratio diagnostics, and
// loss-masked samples (DAPO's overlong filtering).
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

// Per-token loss of grpo (ratio to the behaviour policy) or decoupled_ppo without a cap (behaviour
// weight prox/mu times the surrogate with ratio to the proximal policy).
at::Tensor ReferenceTokenLoss(const TrainerConfig& c, const at::Tensor& logp, const at::Tensor& mu,
                              const at::Tensor& prox, double adv) {
  const double lo = 1 - c.grpo.clip.eps_low, hi = 1 + c.grpo.clip.eps_high;
  if (c.algorithm == "grpo") {
    at::Tensor r = at::exp(logp - mu);
    return -at::min(r * adv, at::clamp(r, lo, hi) * adv);
  }
  at::Tensor r = at::exp(logp - prox);
  return -at::exp(prox - mu) * at::min(r * adv, at::clamp(r, lo, hi) * adv);
}

// One Step: advantages over the batch, the proximal policy before any update, then ppo_epochs passes
// over num_minibatches contiguous parts, each one AdamW update of the token mean over its samples.
void ReferenceStep(LlamaForCausalLMImpl& model, torch::optim::AdamW& opt, const TrainBatch& b, const TrainerConfig& c) {
  const std::vector<double> adv = ReferenceGroupAdvantages(b);
  std::vector<at::Tensor> prox;
  for (const auto& s : b.samples) prox.push_back(ReferenceLogprobs(model, s, c.temperature).detach());
  const int64_t n = int64_t(b.samples.size()), parts = c.num_minibatches;
  for (int64_t epoch = 0; epoch < c.ppo_epochs; ++epoch) {
    for (int64_t p = 0; p < parts; ++p) {
      const int64_t begin = n * p / parts, end = n * (p + 1) / parts;  // EvenSplit
      int64_t tokens = 0;
      for (int64_t i = begin; i < end; ++i)
        if (!b.samples[size_t(i)].loss_masked) tokens += int64_t(b.samples[size_t(i)].response.size());
      at::Tensor loss = at::zeros({}, at::kFloat);
      for (int64_t i = begin; i < end; ++i) {
        const TrainSample& s = b.samples[size_t(i)];
        if (s.loss_masked) continue;
        at::Tensor logp = ReferenceLogprobs(model, s, c.temperature);
        at::Tensor mu = at::tensor(s.behaviour_logprobs, at::kFloat);
        loss = loss + ReferenceTokenLoss(c, logp, mu, prox[size_t(i)], adv[size_t(i)]).sum() / double(tokens);
      }
      opt.zero_grad();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(model.parameters(), c.max_grad_norm);
      opt.step();
    }
  }
}

class TrainerEpochsTest : public ::testing::Test {
 protected:
  // Runs `steps` trainer steps and the reference on the same batches; returns the last step's metrics.
  TrainStepMetrics ExpectMatchesReference(const TrainerConfig& c, int steps, bool mask_one = false) {
    LlamaForCausalLM init = TrainerTestModel(config_);
    Trainer trainer(*comm_, config_, *init, c);
    LlamaForCausalLM ref = TrainerTestModel(config_);
    torch::optim::AdamW opt(ref->parameters(), testing::TorchAdamWOptions(c.optimizer));
    TrainStepMetrics m;
    for (int step = 0; step < steps; ++step) {
      TrainBatch b = TrainerTestBatch(config_, 3, 4, 70 + uint32_t(step));
      if (mask_one) b.samples[5].loss_masked = true;
      m = trainer.Step(b);
      EXPECT_FALSE(m.skipped);
      ReferenceStep(*ref, opt, b, c);
    }
    LlamaForCausalLM got = TrainerTestModel(config_, 99);
    trainer.GatherInto(*got);
    EXPECT_LT(MaxRelDiff(*got, *ref), 1e-5);
    EXPECT_LT(MaxAbsDiff(*got, *ref), 0.05 * c.optimizer.lr) << "some element moved differently by > 5% of a step";
    EXPECT_GT(MaxRelDiff(*got, *init), 1e-3) << "training changed nothing";
    EXPECT_EQ(trainer.PolicyVersion(), steps);
    EXPECT_EQ(trainer.StepCount(), steps * c.UpdatesPerStep());
    EXPECT_EQ(m.updates, c.UpdatesPerStep());
    EXPECT_EQ(m.updates_applied, c.UpdatesPerStep());
    return m;
  }

  std::unique_ptr<Communicator> comm_ = CreateCommunicator("local");
  LlamaConfig config_ = TrainerTestConfig();
};

TEST_F(TrainerEpochsTest, DecoupledPpoMinibatchEpochsMatchReferenceAndTheClipBinds) {
  TrainerConfig c = TrainerTestTrainerConfig("decoupled_ppo");
  c.ppo_epochs = 2, c.num_minibatches = 2;
  c.grpo.clip = ClipConfig{0.02, 0.02};  // narrow, so that the later updates meet it
  TrainStepMetrics m = ExpectMatchesReference(c, 2);
  EXPECT_GT(m.clip_frac_low + m.clip_frac_high, 0.0) << "the proximal ratio never left the clip range";
  EXPECT_GT(m.approx_kl, 0.0);
  EXPECT_GT(m.ratio_max, 1.0);
  EXPECT_LT(m.ratio_min, 1.0);
}

TEST_F(TrainerEpochsTest, GrpoMinibatchesMatchReference) {
  TrainerConfig c = TrainerTestTrainerConfig("grpo");
  c.num_minibatches = 3;
  ExpectMatchesReference(c, 2);
}

TEST_F(TrainerEpochsTest, LossMaskedSamplesCountInAdvantagesOnly) {
  TrainerConfig c = TrainerTestTrainerConfig("grpo");
  TrainStepMetrics m = ExpectMatchesReference(c, 2, /*mask_one=*/true);
  TrainBatch b = TrainerTestBatch(config_, 3, 4, 71);
  int64_t tokens = 0;
  for (size_t i = 0; i < b.samples.size(); ++i) tokens += i == 5 ? 0 : int64_t(b.samples[i].response.size());
  EXPECT_EQ(m.tokens, tokens);
  EXPECT_EQ(m.samples, 11);
}

// With one update per step the proximal policy is the current one: the ratio is exactly 1 and the clip
// never binds (what the issue found); with more updates it is recorded before the first.
TEST_F(TrainerEpochsTest, OneUpdateKeepsTheProximalRatioAtOne) {
  TrainerConfig c = TrainerTestTrainerConfig("decoupled_ppo");
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer t(*comm_, config_, *init, c);
  TrainStepMetrics m = t.Step(TrainerTestBatch(config_, 3, 4, 5));
  EXPECT_EQ(m.updates, 1);
  EXPECT_DOUBLE_EQ(m.ratio_mean, 1.0);
  EXPECT_DOUBLE_EQ(m.ratio_max, 1.0);
  EXPECT_EQ(m.clip_frac_low + m.clip_frac_high, 0.0);
  EXPECT_EQ(m.approx_kl, 0.0);
}

TEST_F(TrainerEpochsTest, SftRunsOneUpdateWhateverTheEpochs) {
  TrainerConfig c = TrainerTestTrainerConfig("grpo");
  c.ppo_epochs = 3, c.num_minibatches = 2;
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer t(*comm_, config_, *init, c);
  EXPECT_EQ(t.SftStep(TrainerTestBatch(config_, 2, 2, 5)).updates, 1);
  EXPECT_EQ(t.StepCount(), 1);
}

TEST_F(TrainerEpochsTest, EveryNewAlgorithmTrainsWithEpochsAndKlEstimators) {
  for (const std::string alg : {"gspo", "cispo", "ppo", "tis"}) {
    for (const std::string estimator : {"k2", "low_var_kl"}) {
      SCOPED_TRACE(alg + " " + estimator);
      TrainerConfig c = TrainerTestTrainerConfig(alg);
      if (alg == "gspo") c.aggregation = "seq_mean_token_mean";
      c.ppo_epochs = 2, c.num_minibatches = 2;
      c.kl.coef = 0.05, c.kl.estimator = estimator, c.kl.mode = alg == "ppo" ? "reward" : "loss";
      LlamaForCausalLM init = TrainerTestModel(config_);
      Trainer t(*comm_, config_, *init, c);
      TrainStepMetrics m = t.Step(TrainerTestBatch(config_, 2, 3, 21));
      EXPECT_EQ(m.updates_applied, 4);
      EXPECT_TRUE(std::isfinite(m.loss) && m.grad_norm > 0);
      EXPECT_GT(m.kl, 0) << "the later updates moved away from the reference";
      EXPECT_GT(m.ratio_mean, 0);
      EXPECT_GE(m.approx_kl, 0);
    }
  }
}

}  // namespace
}  // namespace llamarl
