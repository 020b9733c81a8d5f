// Sharded data parallel under mpirun (-np 2 and -np 3): ZeRO-3 and replicated training on a global
// batch split across the ranks match single-rank training on the whole batch (parameters within 1e-5
// relative after 5 steps, float32), groups straddling ranks included; FlatShard() is this rank's
// range of model/shard_layout.h's ZeroFlatLayout; checkpoints written by n ranks resume on n ranks and on one;
// ppo's separate critic is sharded the same way over its own layout.
#include "core/communicator.h"
#include "model/shard_layout.h"
#include "tests/test_util.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

#include <gtest/gtest.h>

#include <chrono>

namespace llamarl {
namespace {

using testing::MaxAbsDiff;
using testing::MaxRelDiff;
using testing::TrainerTestBatch;
using testing::TrainerTestConfig;
using testing::TrainerTestModel;
using testing::TrainerTestTrainerConfig;

// This rank's part of the global batch: near-equal contiguous ranges of samples, so groups of 4
// straddle ranks when the world size does not divide them.
TrainBatch LocalPart(const TrainBatch& global, const Communicator& comm) {
  const auto bounds = EvenSplit(int64_t(global.samples.size()), comm.Size());
  TrainBatch local;
  for (int64_t i = bounds[size_t(comm.Rank())]; i < bounds[size_t(comm.Rank()) + 1]; ++i)
    local.samples.push_back(global.samples[size_t(i)]);
  return local;
}

class ShardedTrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = CreateCommunicator(DefaultCommunicatorName());
    ASSERT_GE(world_->Size(), 2) << "run under mpirun -np 2 or more";
    local_ = CreateCommunicator("local");
  }
  void TearDown() override { world_->Barrier()->Wait(std::chrono::seconds(300)); }

  std::unique_ptr<Communicator> world_, local_;
  LlamaConfig config_ = TrainerTestConfig();
};

// The single-rank batch whose minibatches hold the same samples as the sharded ones: each rank
// splits its own part into num_minibatches, so minibatch p of the whole is every rank's part p.
TrainBatch MinibatchOrder(const TrainBatch& global, const Communicator& comm, int64_t parts) {
  const auto ranks = EvenSplit(int64_t(global.samples.size()), comm.Size());
  TrainBatch out;
  for (int64_t p = 0; p < parts; ++p) {
    for (int r = 0; r < comm.Size(); ++r) {
      const auto local = EvenSplit(ranks[size_t(r) + 1] - ranks[size_t(r)], int(parts));
      for (int64_t i = local[size_t(p)]; i < local[size_t(p) + 1]; ++i)
        out.samples.push_back(global.samples[size_t(ranks[size_t(r)] + i)]);
    }
  }
  return out;
}

void ExpectShardedMatchesSingleRank(Communicator& world, Communicator& local, const LlamaConfig& config,
                                    const std::string& algorithm, const std::string& sharding,
                                    int64_t ppo_epochs = 1, int64_t num_minibatches = 1, bool checkpointing = true) {
  SCOPED_TRACE(algorithm + " " + sharding + " epochs " + std::to_string(ppo_epochs) + " minibatches " +
               std::to_string(num_minibatches) + (checkpointing ? "" : " no checkpointing"));
  TrainerConfig c = TrainerTestTrainerConfig(algorithm);
  c.sharding = sharding;
  c.activation_checkpointing = checkpointing;
  c.ppo_epochs = ppo_epochs, c.num_minibatches = num_minibatches;
  LlamaForCausalLM init = TrainerTestModel(config);
  Trainer sharded(world, config, *init, c);
  TrainerConfig single_cfg = c;
  single_cfg.sharding = "replicated";
  Trainer single(local, config, *init, single_cfg);
  for (int step = 0; step < 5; ++step) {
    TrainBatch global = TrainerTestBatch(config, 3, 4, 300 + uint32_t(step));
    TrainStepMetrics a = sharded.Step(LocalPart(global, world));
    TrainStepMetrics b = single.Step(MinibatchOrder(global, world, num_minibatches));
    EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::max(1.0, std::abs(b.loss)));
    EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-5 * b.grad_norm);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_NEAR(a.iw_mean, b.iw_mean, 1e-6 * b.iw_mean);
  }
  LlamaForCausalLM got = TrainerTestModel(config, 7), want = TrainerTestModel(config, 8);
  sharded.GatherInto(*got);
  single.GatherInto(*want);
  EXPECT_LT(MaxRelDiff(*got, *want), 1e-5);
  EXPECT_LT(MaxAbsDiff(*got, *want), 0.05 * c.optimizer.lr);
  EXPECT_GT(MaxRelDiff(*want, *init), 1e-3);
  // FlatShard is this rank's range of the ZeRO flat layout of the full parameters.
  const ShardLayout layout = ZeroFlatLayout(LlamaParamSpecs(config), world.Size(), at::kFloat);
  ASSERT_EQ(sharded.FlatShard().numel(), layout.RankNumel(world.Rank()));
  at::Tensor full = single.FlatShard();  // single rank: the whole vector
  at::Tensor want_shard = full.narrow(0, sharded.ShardBegin(), sharded.FlatShard().numel());
  EXPECT_LT((sharded.FlatShard() - want_shard).norm().item<double>() / want_shard.norm().item<double>(), 1e-5);
}

TEST_F(ShardedTrainerTest, Zero3MatchesSingleRankGrpo) {
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "grpo", "zero3");
}

TEST_F(ShardedTrainerTest, Zero3MatchesSingleRankAipoAndPpo) {
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "aipo", "zero3");
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "ppo", "zero3");
}

// 12 samples over 2 or 3 ranks, 2 minibatches per rank: the minibatches split evenly either way.
TEST_F(ShardedTrainerTest, Zero3MinibatchEpochsMatchSingleRank) {
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "decoupled_ppo", "zero3", 2, 2);
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "ppo", "zero3", 2, 2);
}

// PPO's separate critic (smaller than the policy: one layer) keeps its own ZeRO-3 shards over the same
// ranks: its flat shard is this rank's range of the critic's own ZeroFlatLayout, and critic and policy
// match single-rank training on the whole batch.
TEST_F(ShardedTrainerTest, Zero3SeparateCriticMatchesSingleRank) {
  TrainerConfig c = TrainerTestTrainerConfig("ppo");
  c.num_minibatches = 2;
  c.critic.mode = "separate";
  c.critic.config = {{"num_hidden_layers", 1}};
  c.critic.optimizer = c.optimizer;
  c.critic.optimizer.lr = 5e-3;
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer sharded(*world_, config_, *init, c);
  TrainerConfig single_cfg = c;
  single_cfg.sharding = "replicated";
  Trainer single(*local_, config_, *init, single_cfg);
  const at::Tensor critic0 = single.critic()->FlatShard().clone();
  for (int step = 0; step < 3; ++step) {
    TrainBatch global = TrainerTestBatch(config_, 3, 4, 500 + uint32_t(step));
    TrainStepMetrics a = sharded.Step(LocalPart(global, *world_));
    TrainStepMetrics b = single.Step(MinibatchOrder(global, *world_, c.num_minibatches));
    EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::max(1.0, std::abs(b.loss)));
    EXPECT_NEAR(a.value_loss, b.value_loss, 1e-5 * b.value_loss);
    EXPECT_NEAR(a.critic_grad_norm, b.critic_grad_norm, 1e-5 * b.critic_grad_norm);
    EXPECT_NEAR(a.explained_variance, b.explained_variance, 1e-5);
    EXPECT_NEAR(a.value_clip_frac, b.value_clip_frac, 0.02);  // a token at the clip edge may round either way
  }
  const LlamaConfig critic_config = sharded.critic()->model_config();
  EXPECT_EQ(critic_config.num_hidden_layers, 1);
  const ShardLayout layout = ZeroFlatLayout(LlamaParamSpecs(critic_config), world_->Size(), at::kFloat);
  const at::Tensor& shard = sharded.critic()->FlatShard();
  ASSERT_EQ(shard.numel(), layout.RankNumel(world_->Rank()));
  const at::Tensor want = single.critic()->FlatShard().narrow(0, sharded.critic()->ShardBegin(), shard.numel());
  EXPECT_LT((shard - want).norm().item<double>() / want.norm().item<double>(), 1e-5);
  EXPECT_GT((single.critic()->FlatShard() - critic0).abs().max().item<double>(), 1e-3);
  const at::Tensor policy_want = single.FlatShard().narrow(0, sharded.ShardBegin(), sharded.FlatShard().numel());
  EXPECT_LT((sharded.FlatShard() - policy_want).norm().item<double>() / policy_want.norm().item<double>(), 1e-5);
}

// Without activation checkpointing the layers' graphs are kept and their parameter storage freed and
// gathered again for backward: still the single-rank result, over several updates per step too.
TEST_F(ShardedTrainerTest, Zero3WithoutCheckpointingMatchesSingleRank) {
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "grpo", "zero3", 1, 1, /*checkpointing=*/false);
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "decoupled_ppo", "zero3", 2, 2, /*checkpointing=*/false);
}

// In bfloat16 (parameters are a converted copy of the gathered float32 range, refilled by a cast in
// backward) the kept graph gives what the recompute gives: the same ops on the same values.
TEST_F(ShardedTrainerTest, Zero3KeptGraphEqualsRecomputeInBfloat16) {
  TrainerConfig c = TrainerTestTrainerConfig("grpo");
  c.compute_dtype = "bfloat16";
  LlamaForCausalLM init = TrainerTestModel(config_);
  Trainer recompute(*world_, config_, *init, c);
  c.activation_checkpointing = false;
  Trainer kept(*world_, config_, *init, c);
  for (int step = 0; step < 3; ++step) {
    TrainBatch local = LocalPart(TrainerTestBatch(config_, 3, 4, 500 + uint32_t(step)), *world_);
    TrainStepMetrics a = kept.Step(local), b = recompute.Step(local);
    EXPECT_NEAR(a.loss, b.loss, 1e-6 * std::max(1.0, std::abs(b.loss)));
    EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-6 * b.grad_norm);
  }
  EXPECT_LT((kept.FlatShard() - recompute.FlatShard()).abs().max().item<double>(), 1e-7);
}

TEST_F(ShardedTrainerTest, ReplicatedBaselineMatchesSingleRank) {
  ExpectShardedMatchesSingleRank(*world_, *local_, config_, "grpo", "replicated");
}

}  // namespace
}  // namespace llamarl
