// PPO's critic: GAE, the clipped value loss, its clip fraction and the explained variance against the
// python3-torch fixture (tests/fixtures/trainer/critic.json, scripts/fixtures/trainer_critic.py); the
// trainer.critic keys; the separate critic's weights, optimizer and gradients apart from the policy's;
// its init from the policy, a checkpoint directory or a smaller config; its checkpoint and offload.
#include "core/communicator.h"
#include "model/llama_checkpoint.h"
#include "tests/test_util.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/advantages.h"
#include "trainer/checkpoint_files.h"
#include "trainer/ppo.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>

namespace llamarl {
namespace {

namespace fs = std::filesystem;
using testing::ErrorOf;
using testing::TrainerTestBatch;
using testing::TrainerTestConfig;
using testing::TrainerTestModel;
using testing::TrainerTestTrainerConfig;

std::vector<double> Doubles(const Json& j) { return j.get<std::vector<double>>(); }

TEST(CriticFixture, GaeClippedValueLossAndExplainedVarianceMatchTorch) {
  const Json fx = ReadJsonFile(testing::FixturePath("trainer/critic.json"));
  const int64_t d = fx["D"];
  const auto lengths = fx["lengths"].get<std::vector<int64_t>>();
  const std::vector<double> old_values = Doubles(fx["old_values"]), rewards = Doubles(fx["rewards"]);
  const int64_t n = int64_t(old_values.size());
  for (const Json& result : fx["results"]) {
    SCOPED_TRACE(result["case"].dump());
    const Json& c = result["case"];
    // GAE per sample (reward on the last token), as Trainer::PreparePpo runs it.
    std::vector<double> adv, ret;
    size_t start = 0;
    double ev[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < lengths.size(); ++i) {
      std::vector<double> r(size_t(lengths[i]), 0.0), v(old_values.begin() + int64_t(start),
                                                         old_values.begin() + int64_t(start) + lengths[i]);
      r.back() = rewards[i];
      GaeResult g = Gae(r, v, c["gamma"].get<double>(), c["lambda"].get<double>());
      for (size_t t = 0; t < v.size(); ++t) {
        adv.push_back(g.advantages[t]), ret.push_back(g.returns[t]);
        const double e = g.returns[t] - v[t];
        ev[0] += g.returns[t], ev[1] += g.returns[t] * g.returns[t], ev[2] += e, ev[3] += e * e;
      }
      start += v.size();
    }
    const auto want_adv = Doubles(result["advantages"]), want_ret = Doubles(result["returns"]);
    for (int64_t t = 0; t < n; ++t) {
      EXPECT_NEAR(adv[size_t(t)], want_adv[size_t(t)], 1e-12) << "token " << t;
      EXPECT_NEAR(ret[size_t(t)], want_ret[size_t(t)], 1e-12) << "token " << t;
    }
    EXPECT_NEAR(ExplainedVariance(ev[0], ev[1], ev[2], ev[3], double(n)), result["explained_variance"].get<double>(),
                1e-10);
    // The value head on hidden states and the clipped value loss, token mean, in float32 as trained.
    at::Tensor hidden = at::tensor(Doubles(fx["hidden"]), at::kFloat).view({n, d}).requires_grad_(true);
    at::Tensor head = at::tensor(Doubles(fx["w"]), at::kFloat).requires_grad_(true);
    at::Tensor bias = at::full({1}, fx["b"].get<double>(), at::kFloat).requires_grad_(true);
    at::Tensor values = at::matmul(hidden, head) + bias;
    const at::Tensor old_t = at::tensor(old_values, at::kFloat), ret_t = at::tensor(ret, at::kFloat);
    const double clip = c["value_clip"].get<double>();
    at::Tensor loss = ValueTokenLoss(values, old_t, ret_t, clip).mean();
    loss.backward();
    EXPECT_NEAR(loss.item<double>(), result["loss"].get<double>(), 1e-6);
    EXPECT_NEAR(ValueClipped(values, old_t, ret_t, clip).to(at::kDouble).mean().item<double>(),
                result["clip_frac"].get<double>(), 1e-12);
    const at::Tensor gh = at::tensor(Doubles(result["grad_hidden"]), at::kFloat).view({n, d});
    const at::Tensor gw = at::tensor(Doubles(result["grad_w"]), at::kFloat);
    EXPECT_TRUE(at::allclose(hidden.grad(), gh, 1e-4, 1e-6)) << (hidden.grad() - gh).abs().max().item<float>();
    EXPECT_TRUE(at::allclose(head.grad(), gw, 1e-4, 1e-6)) << (head.grad() - gw).abs().max().item<float>();
    EXPECT_NEAR(bias.grad().item<double>(), result["grad_b"].get<double>(), 1e-5);
  }
  // The fixture covers both sides of the clip.
  EXPECT_GT(fx["results"][0]["clip_frac"].get<double>(), 0.0);
  EXPECT_LT(fx["results"][0]["clip_frac"].get<double>(), 1.0);
}

TEST(CriticFixture, ExplainedVarianceByHand) {
  // R = (1, 3), V = R: 1; V = mean(R) = 2: 0; Var(R) = 0: 0 (no NaN in metrics).
  EXPECT_DOUBLE_EQ(ExplainedVariance(4, 10, 0, 0, 2), 1.0);
  EXPECT_DOUBLE_EQ(ExplainedVariance(4, 10, 0, 2, 2), 0.0);
  EXPECT_DOUBLE_EQ(ExplainedVariance(2, 2, 0, 0, 2), 0.0);
}

TEST(CriticConfigTest, KeysAndPathNamedErrors) {
  const Json base = Json{{"algorithm", "ppo"}, {"optimizer", {{"lr", 0.002}, {"weight_decay", 0.0}}},
                         {"max_grad_norm", 0.5}};
  TrainerConfig shared = TrainerConfig::FromJson(base);
  EXPECT_EQ(shared.critic.mode, "shared");
  Json j = base;
  j["critic"] = {{"mode", "separate"}, {"optimizer", {{"lr", 0.01}}}};
  TrainerConfig c = TrainerConfig::FromJson(j);
  EXPECT_TRUE(c.critic.Separate());
  EXPECT_EQ(c.critic.optimizer.lr, 0.01);
  EXPECT_EQ(c.critic.optimizer.weight_decay, 0.0);  // inherited from trainer.optimizer
  EXPECT_EQ(c.critic.max_grad_norm, 0.5);           // inherited from trainer.max_grad_norm
  EXPECT_EQ(TrainerConfig::FromJson(c.ToJson()).critic.ToJson(), c.critic.ToJson());

  auto error = [&](Json critic, const std::string& algorithm = "ppo") {
    Json k = base;
    k["algorithm"] = algorithm;
    k["critic"] = std::move(critic);
    return ErrorOf([&] { TrainerConfig::FromJson(k); });
  };
  EXPECT_NE(error({{"mode", "apart"}}).find("trainer.critic.mode"), std::string::npos);
  EXPECT_NE(error({{"mode", "separate"}, {"optimizer", {{"lr", -1}}}}).find("trainer.critic.optimizer.lr"),
            std::string::npos);
  EXPECT_NE(error({{"mode", "separate"}, {"max_grad_norm", -1}}).find("trainer.critic.max_grad_norm"),
            std::string::npos);
  EXPECT_NE(error({{"mode", "separate"}, {"depth", 1}}).find("trainer.critic: unknown key 'depth'"), std::string::npos);
  EXPECT_NE(error({{"mode", "separate"}, {"model", "/nonexistent/critic"}}).find("trainer.critic.model"),
            std::string::npos);
  EXPECT_NE(error({{"mode", "separate"}, {"config", 3}}).find("trainer.critic.config"), std::string::npos);
  EXPECT_NE(error({{"config", {{"num_hidden_layers", 1}}}}).find("trainer.critic.mode"), std::string::npos);
  EXPECT_NE(error({{"mode", "separate"}}, "grpo").find("only ppo trains a critic"), std::string::npos);
  // A vocabulary other than the policy's is refused when the critic is built.
  CriticConfig wide;
  wide.mode = "separate";
  wide.config = {{"vocab_size", 99}};
  EXPECT_NE(ErrorOf([&] { CriticModelConfig(wide, TrainerTestConfig()); }).find("vocab_size"), std::string::npos);
}

TrainerConfig SeparateCriticConfig(double critic_lr = 5e-3) {
  TrainerConfig c = TrainerTestTrainerConfig("ppo");
  c.critic.mode = "separate";
  c.critic.optimizer = c.optimizer;
  c.critic.optimizer.lr = critic_lr;
  return c;
}

at::Tensor CriticWeights(Trainer& t) { return t.critic()->FlatShard().clone(); }

class SeparateCriticTest : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> comm_ = CreateCommunicator("local");
  LlamaConfig config_ = TrainerTestConfig();
  LlamaForCausalLM init_ = TrainerTestModel(config_);
};

TEST_F(SeparateCriticTest, OwnWeightsStartFromThePolicyAndOnlyTheCriticLearnsValues) {
  Trainer t(*comm_, config_, *init_, SeparateCriticConfig(2e-2));
  ASSERT_NE(t.critic(), nullptr);
  // Both start from the policy's weights, in their own storage.
  EXPECT_TRUE(at::equal(t.FlatShard(), t.critic()->FlatShard()));
  EXPECT_FALSE(t.FlatShard().is_alias_of(t.critic()->FlatShard()));
  // On a fixed batch the critic's value loss falls and its values explain more of the returns.
  const TrainBatch batch = TrainerTestBatch(config_, 3, 4, 41);
  std::vector<TrainStepMetrics> m;
  for (int s = 0; s < 8; ++s) m.push_back(t.Step(batch));
  EXPECT_LT(m.back().value_loss, 0.5 * m.front().value_loss);
  EXPECT_GT(m.back().explained_variance, m.front().explained_variance);
  EXPECT_GT(m.front().critic_grad_norm, 0.0);
  EXPECT_EQ(m.front().critic_lr, 2e-2);
  EXPECT_EQ(m.front().lr, 1e-3);
  EXPECT_EQ(t.StepCount(), 8);
  EXPECT_EQ(t.critic()->StepCount(), 8);
  EXPECT_FALSE(at::equal(t.FlatShard(), t.critic()->FlatShard()));
}

TEST_F(SeparateCriticTest, CriticGradientsNeverReachThePolicyNorViceVersa) {
  // The policy's update depends on the critic only through the values at the start of the step:
  // after one step, the policy of trainers whose critics learn at different rates is bit-identical,
  // while their critics differ.
  Trainer slow(*comm_, config_, *init_, SeparateCriticConfig(1e-4)), fast(*comm_, config_, *init_, SeparateCriticConfig(5e-2));
  const at::Tensor policy0 = slow.FlatShard().clone();
  slow.Step(TrainerTestBatch(config_, 3, 4, 7));
  fast.Step(TrainerTestBatch(config_, 3, 4, 7));
  EXPECT_TRUE(at::equal(slow.FlatShard(), fast.FlatShard()));
  EXPECT_FALSE(at::equal(slow.FlatShard(), policy0));
  EXPECT_FALSE(at::equal(CriticWeights(slow), CriticWeights(fast)));
  // The critic does not depend on the policy at all: policies at different learning rates leave the
  // critics bit-identical over several steps.
  TrainerConfig a = SeparateCriticConfig(), b = SeparateCriticConfig();
  b.optimizer.lr = 2e-2;
  Trainer ta(*comm_, config_, *init_, a), tb(*comm_, config_, *init_, b);
  for (int s = 0; s < 3; ++s) {
    ta.Step(TrainerTestBatch(config_, 3, 4, 50 + uint32_t(s)));
    tb.Step(TrainerTestBatch(config_, 3, 4, 50 + uint32_t(s)));
  }
  EXPECT_FALSE(at::equal(ta.FlatShard(), tb.FlatShard()));
  EXPECT_TRUE(at::equal(CriticWeights(ta), CriticWeights(tb)));
  // Whereas the shared head's value loss does move the policy trunk (the check above can fail).
  TrainerConfig s0 = TrainerTestTrainerConfig("ppo"), s1 = s0;
  s0.ppo.value_coef = 0.0;
  s1.ppo.value_coef = 1.0;
  Trainer h0(*comm_, config_, *init_, s0), h1(*comm_, config_, *init_, s1);
  h0.Step(TrainerTestBatch(config_, 3, 4, 7));
  h1.Step(TrainerTestBatch(config_, 3, 4, 7));
  EXPECT_FALSE(at::equal(h0.FlatShard(), h1.FlatShard()));
  EXPECT_EQ(h0.critic(), nullptr);
}

TEST_F(SeparateCriticTest, SmallerConfigAndCheckpointDirectory) {
  TrainerConfig c = SeparateCriticConfig();
  c.critic.config = {{"hidden_size", 16}, {"num_hidden_layers", 1}, {"num_attention_heads", 2},
                     {"num_key_value_heads", 1}, {"intermediate_size", 24}};
  c.critic.init_seed = 3;
  Trainer small(*comm_, config_, *init_, c);
  const LlamaConfig& sc = small.critic()->model_config();
  EXPECT_EQ(sc.hidden_size, 16);
  EXPECT_EQ(sc.num_hidden_layers, 1);
  EXPECT_EQ(sc.head_dim, 8);
  EXPECT_EQ(sc.vocab_size, config_.vocab_size);
  EXPECT_LT(small.critic()->FlatShard().numel(), small.FlatShard().numel() / 2);
  LlamaForCausalLM drawn(sc, at::TensorOptions().dtype(at::kFloat));
  InitLlamaWeights(*drawn, 3);
  LlamaForCausalLM got(sc, at::TensorOptions().dtype(at::kFloat));
  small.critic()->GatherInto(*got);
  EXPECT_EQ(testing::MaxAbsDiff(*got, *drawn), 0.0);
  const TrainStepMetrics m = small.Step(TrainerTestBatch(config_, 3, 4, 9));
  EXPECT_GT(m.value_loss, 0.0);
  EXPECT_GT(m.critic_grad_norm, 0.0);

  // From an HF checkpoint directory: the critic's decoder is that checkpoint's.
  const std::string dir = testing::MakeTempDir("critic_model") + "/critic";
  LlamaForCausalLM other = TrainerTestModel(config_, 99);
  SaveLlama(dir, *other, config_);
  TrainerConfig from_dir = SeparateCriticConfig();
  from_dir.critic.model = dir;
  Trainer loaded(*comm_, config_, *init_, from_dir);
  LlamaForCausalLM critic_weights = TrainerTestModel(config_, 1), policy_weights = TrainerTestModel(config_, 2);
  loaded.critic()->GatherInto(*critic_weights);
  loaded.GatherInto(*policy_weights);
  EXPECT_EQ(testing::MaxAbsDiff(*critic_weights, *other), 0.0);
  EXPECT_EQ(testing::MaxAbsDiff(*policy_weights, *init_), 0.0);
}

TEST_F(SeparateCriticTest, CheckpointResumeEqualsUninterruptedRun) {
  TrainerConfig c = SeparateCriticConfig();
  c.schedule.warmup_steps = 1, c.schedule.kind = "cosine", c.schedule.total_steps = 10;
  c.ppo_epochs = 2, c.num_minibatches = 2;
  const std::string dir = testing::MakeTempDir("critic_ckpt") + "/ckpt";
  Trainer uninterrupted(*comm_, config_, *init_, c);
  for (int s = 0; s < 2; ++s) uninterrupted.Step(TrainerTestBatch(config_, 2, 4, 20 + uint32_t(s)));
  const TrainStepMetrics want = uninterrupted.Step(TrainerTestBatch(config_, 2, 4, 22));
  {
    Trainer first(*comm_, config_, *init_, c);
    for (int s = 0; s < 2; ++s) first.Step(TrainerTestBatch(config_, 2, 4, 20 + uint32_t(s)));
    first.SaveCheckpoint(dir);
  }
  EXPECT_TRUE(fs::exists(dir + "/critic/trainer_state.json"));
  EXPECT_EQ(CheckpointProblem(dir), "");
  LlamaForCausalLM other = TrainerTestModel(config_, 4321);
  Trainer resumed(*comm_, config_, *other, c);
  resumed.LoadCheckpoint(dir);
  EXPECT_EQ(resumed.critic()->StepCount(), 2 * 4);  // 4 updates a step
  const TrainStepMetrics got = resumed.Step(TrainerTestBatch(config_, 2, 4, 22));
  EXPECT_EQ(got.loss, want.loss);
  EXPECT_EQ(got.value_loss, want.value_loss);
  EXPECT_EQ(got.critic_grad_norm, want.critic_grad_norm);
  EXPECT_EQ(got.explained_variance, want.explained_variance);
  EXPECT_TRUE(at::equal(resumed.FlatShard(), uninterrupted.FlatShard()));
  EXPECT_TRUE(at::equal(CriticWeights(resumed), CriticWeights(uninterrupted)));

  // A checkpoint of a shared-head trainer has no critic: named, with the fix.
  const std::string shared_dir = testing::MakeTempDir("critic_ckpt") + "/shared";
  Trainer shared(*comm_, config_, *init_, TrainerTestTrainerConfig("ppo"));
  shared.SaveCheckpoint(shared_dir);
  const std::string error = ErrorOf([&] { resumed.LoadCheckpoint(shared_dir); });
  EXPECT_NE(error.find("holds no critic"), std::string::npos) << error;
  // A damaged critic shard makes the checkpoint incomplete.
  fs::remove(dir + "/critic/shard-0-of-1.safetensors");
  EXPECT_NE(CheckpointProblem(dir).find("critic/"), std::string::npos) << CheckpointProblem(dir);
}

TEST_F(SeparateCriticTest, OffloadCarriesTheCriticAndRestoresItBitExactly) {
  Trainer t(*comm_, config_, *init_, SeparateCriticConfig());
  t.Step(TrainerTestBatch(config_, 2, 4, 60));
  const at::Tensor critic_before = CriticWeights(t);
  const int64_t resident = t.ResidentStateBytes();
  const int64_t critic_resident = t.critic()->ResidentStateBytes();
  EXPECT_GT(critic_resident, 0);
  EXPECT_GT(resident, critic_resident);
  const int64_t offloaded = t.OffloadState();
  EXPECT_EQ(t.ResidentStateBytes(), 0);
  EXPECT_TRUE(t.critic()->StateOffloaded());
  EXPECT_EQ(t.RestoreState(), offloaded);
  EXPECT_TRUE(at::equal(CriticWeights(t), critic_before));
  EXPECT_EQ(t.ResidentStateBytes(), resident);
  t.Step(TrainerTestBatch(config_, 2, 4, 61));
}

}  // namespace
}  // namespace llamarl
