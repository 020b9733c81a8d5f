// Loading by shard under mpirun (-np 2 and -np 3): each trainer rank reads only its ZeRO-3 range of
// the flat parameter vector from a mapped checkpoint, converted to f32 straight from the mapped
// bytes, and the KL reference the same range in bf16. Both equal slicing the fully loaded model bit
// for bit, for f32 and bf16 checkpoints, one file and sharded with an index; the trainer holds only
// its range (no full model on any rank) under zero3, the whole vector under replicated.
#include "core/communicator.h"
#include "model/llama_checkpoint.h"
#include "model/llama_weights.h"
#include "model/shard_layout.h"
#include "tests/test_util.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/checkpoint_files.h"
#include "trainer/flat_params.h"
#include "trainer/trainer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>

namespace llamarl {
namespace {

struct Source {
  const char* name;
  at::ScalarType dtype;
  int64_t max_shard_bytes;  // small: several shard files and model.safetensors.index.json
};

class LoadByShardTest : public ::testing::TestWithParam<Source> {
 protected:
  void SetUp() override {
    world_ = CreateCommunicator(DefaultCommunicatorName());
    ASSERT_GE(world_->Size(), 2) << "run under mpirun -np 2 or more";
    // Every rank writes the same checkpoint into its own directory (no shared file system needed).
    dir_ = testing::MakeTempDir(std::string("load_by_shard_") + GetParam().name);
    LlamaForCausalLM model = testing::TrainerTestModel(config_, 5);
    SaveLlamaOptions o;
    o.dtype = GetParam().dtype;
    o.max_shard_bytes = GetParam().max_shard_bytes;
    const auto files = SaveLlama(dir_, *model, config_, o);
    ASSERT_EQ(files.size() > 1, GetParam().max_shard_bytes < (1 << 20)) << "the sharded case needs an index";
    LlamaForCausalLM loaded = LoadLlama(dir_);  // the full model, f32: what the shards must equal
    full_ = FlattenParameters(*loaded, LlamaParamSpecs(config_));
  }
  void TearDown() override { world_->Barrier()->Wait(std::chrono::seconds(300)); }

  // A checkpoint directory every rank names alike (SaveCheckpoint is collective over one directory).
  std::string SharedCheckpointDir(const std::string& tag) const {
    return std::string(LLAMARL_BINARY_DIR) + "/Testing/tmp/load_by_shard_ckpt_" + GetParam().name + "_" + tag +
           "_np" + std::to_string(world_->Size());
  }

  std::unique_ptr<Communicator> world_;
  LlamaConfig config_ = testing::TrainerTestConfig();
  std::string dir_;
  at::Tensor full_;
};

TEST_P(LoadByShardTest, EveryRangeEqualsTheSliceOfTheFullModel) {
  const LlamaWeightSource weights = LlamaWeightSource::FromCheckpoint(dir_);
  const auto specs = LlamaParamSpecs(config_);
  for (int ranks : {1, 2, 3, 7}) {
    const auto bounds = EvenSplit(full_.numel(), ranks);
    for (int r = 0; r < ranks; ++r) {
      const int64_t lo = bounds[size_t(r)], hi = bounds[size_t(r) + 1];
      EXPECT_TRUE(at::equal(LoadFlatRange(weights, specs, lo, hi, at::kFloat), full_.narrow(0, lo, hi - lo)))
          << ranks << " ranks, range " << r;
      EXPECT_TRUE(at::equal(LoadFlatRange(weights, specs, lo, hi, at::kBFloat16),
                            full_.narrow(0, lo, hi - lo).to(at::kBFloat16)))
          << ranks << " ranks, range " << r << " in bf16";
    }
  }
}

TEST_P(LoadByShardTest, Zero3TrainerHoldsOnlyItsRangeAndABf16Reference) {
  TrainerConfig c = testing::TrainerTestTrainerConfig("grpo");
  c.kl.coef = 0.1;  // reference_dtype bfloat16 by default
  Trainer trainer(*world_, config_, LlamaWeightSource::FromCheckpoint(dir_), c);
  const int64_t lo = trainer.ShardBegin(), hi = trainer.ShardEnd();
  const auto bounds = EvenSplit(full_.numel(), world_->Size());
  ASSERT_EQ(lo, bounds[size_t(world_->Rank())]);
  EXPECT_TRUE(at::equal(trainer.FlatShard(), full_.narrow(0, lo, hi - lo)));
  // master + two AdamW moments in f32, the reference in bf16; the working module holds nothing.
  EXPECT_EQ(trainer.ResidentStateBytes(), (hi - lo) * (3 * 4 + 2));
  const std::string ckpt = SharedCheckpointDir("zero3");
  trainer.SaveCheckpoint(ckpt);
  const at::Tensor reference = ReadCheckpointVector(ckpt, "reference");  // every rank's range
  EXPECT_TRUE(at::equal(reference, full_.to(at::kBFloat16).to(at::kFloat)));
}

TEST_P(LoadByShardTest, ReplicatedTrainerHoldsTheWholeVector) {
  TrainerConfig c = testing::TrainerTestTrainerConfig("grpo");
  c.sharding = "replicated";
  c.kl.coef = 0.1;
  c.kl.reference_dtype = "float32";
  Trainer trainer(*world_, config_, LlamaWeightSource::FromCheckpoint(dir_), c);
  const int64_t lo = trainer.ShardBegin(), hi = trainer.ShardEnd();
  EXPECT_TRUE(at::equal(trainer.FlatShard(), full_.narrow(0, lo, hi - lo)));
  const std::string ckpt = SharedCheckpointDir("replicated");
  trainer.SaveCheckpoint(ckpt);
  EXPECT_TRUE(at::equal(ReadCheckpointVector(ckpt, "reference"), full_));
  EXPECT_TRUE(at::equal(ReadCheckpointVector(ckpt, "param"), full_));
}

// A trainer loaded by shard trains exactly like one built from the full in-memory model, KL to the
// sharded bf16 reference included.
TEST_P(LoadByShardTest, StepsEqualTheTrainerBuiltFromTheFullModel) {
  TrainerConfig c = testing::TrainerTestTrainerConfig("grpo");
  c.kl.coef = 0.1;
  LlamaForCausalLM loaded = LoadLlama(dir_);
  Trainer from_model(*world_, config_, *loaded, c);
  Trainer by_shard(*world_, config_, LlamaWeightSource::FromCheckpoint(dir_), c);
  const TrainBatch batch = testing::TrainerTestBatch(config_, 2 + world_->Rank(), 3, 40 + uint32_t(world_->Rank()));
  for (int step = 0; step < 2; ++step) {
    const TrainStepMetrics a = from_model.Step(batch), b = by_shard.Step(batch);
    EXPECT_EQ(a.loss, b.loss) << "step " << step;
    EXPECT_EQ(a.kl, b.kl) << "step " << step;
    if (step == 1) {
      EXPECT_GT(b.kl, 0.0) << "the policy moved away from the reference";
    }
  }
  EXPECT_TRUE(at::equal(from_model.FlatShard(), by_shard.FlatShard()));
}

INSTANTIATE_TEST_SUITE_P(Sources, LoadByShardTest,
                         ::testing::Values(Source{"f32", at::kFloat, int64_t(5) << 30},
                                           Source{"bf16", at::kBFloat16, int64_t(5) << 30},
                                           Source{"f32_sharded", at::kFloat, 6000},
                                           Source{"bf16_sharded", at::kBFloat16, 3000}),
                         [](const ::testing::TestParamInfo<Source>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace llamarl
