// Loading by shard on generator ranks under mpirun (-np 2 and -np 3): each rank maps the checkpoint
// and reads only its tensor-parallel shard, converted once into the engine's weight dtype. The
// shards equal what the engine slices from the fully loaded model, bit for bit, for f32 and bf16
// checkpoints (one file, and sharded with an index) loaded as bf16 and as f32, at TP = 2 (ranks 0-1)
// and TP = 1 (a third rank alone), and the engines generate the same tokens and log-probs. With fp8
// weights each rank quantises its own shard of every projection per row: its decoded shards equal the
// plain engine's shards round-tripped through kernels::CastToFp8E4m3 (the row-parallel o/down shards
// with the scales of their local rows), and the engine sliced from the full model generates what the
// one loaded by shard generates.
#include "core/communicator.h"
#include "generator/engine.h"
#include "model/llama_checkpoint.h"
#include "model/llama_weights.h"
#include "tests/generator/engine_test_util.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <chrono>

namespace llamarl {
namespace {

struct Case {
  const char* name;
  at::ScalarType stored;
  int64_t max_shard_bytes;
  at::ScalarType loaded;
  bool fp8 = false;  // EngineOptions::fp8_weights, computing in `loaded`
};


class EngineLoadByShardTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    world_ = CreateCommunicator("mpi");
    ASSERT_GE(world_->Size(), 2) << "run under mpirun -np 2 or more";
    group_ = world_->Split(world_->Rank() < 2 ? 0 : 1, world_->Rank());  // TP=2, a third rank at TP=1
    dir_ = testing::MakeTempDir(std::string("engine_load_by_shard_") + GetParam().name);
    LlamaForCausalLM model = testing::MakeModel(config_, 17);
    SaveLlamaOptions o;
    o.dtype = GetParam().stored;
    o.max_shard_bytes = GetParam().max_shard_bytes;
    SaveLlama(dir_, *model, config_, o);
  }
  void TearDown() override { world_->Barrier()->Wait(std::chrono::seconds(120)); }

  std::unique_ptr<Communicator> world_, group_;
  LlamaConfig config_ = testing::EngineTestConfig(101);
  std::string dir_;
};

TEST_P(EngineLoadByShardTest, ShardsEqualSlicingTheFullModel) {
  EngineOptions options;
  options.max_slots = 2;
  options.tp_group = group_.get();
  LoadLlamaOptions full_options;
  full_options.dtype = GetParam().loaded;
  LlamaForCausalLM full = LoadLlama(dir_, full_options);
  EngineOptions fp8_options = options;
  fp8_options.fp8_weights = GetParam().fp8;
  Engine sliced(config_, *full, fp8_options);
  Engine by_shard(config_, LlamaWeightSource::FromCheckpoint(dir_), at::TensorOptions().dtype(GetParam().loaded),
                  fp8_options);
  auto want = Engine(config_, *full, options).LocalParameters();  // plain: the slices themselves
  const auto got = by_shard.LocalParameters();
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(want[i].first, got[i].first);
    if (GetParam().fp8 && testing::IsLayerProjection(want[i].first)) want[i].second = testing::Fp8RoundTrip(want[i].second);
    EXPECT_EQ(got[i].second.scalar_type(), GetParam().loaded) << got[i].first;
    EXPECT_TRUE(at::equal(want[i].second, got[i].second)) << got[i].first;
  }
  if (group_->Size() > 1) {
    EXPECT_EQ(got[1].second.size(0), config_.num_attention_heads * config_.head_dim / group_->Size())
        << "the first layer's q_proj is this rank's column shard";
  }
  for (Engine* engine : {&sliced, &by_shard}) {
    engine->Submit(testing::Greedy(1, testing::Prompt(7, 3, 101), 6));
  }
  const auto a = sliced.RunUntilDone(), b = by_shard.RunUntilDone();
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(a[0].tokens, b[0].tokens);
  EXPECT_EQ(a[0].logprobs, b[0].logprobs);
}

INSTANTIATE_TEST_SUITE_P(Sources, EngineLoadByShardTest,
                         ::testing::Values(Case{"f32_as_bf16", at::kFloat, int64_t(5) << 30, at::kBFloat16},
                                           Case{"f32_as_f32", at::kFloat, int64_t(5) << 30, at::kFloat},
                                           Case{"bf16_sharded_as_bf16", at::kBFloat16, 4000, at::kBFloat16},
                                           Case{"f32_sharded_as_f32", at::kFloat, 8000, at::kFloat},
                                           Case{"f32_sharded_as_fp8", at::kFloat, 8000, at::kFloat, true}),
                         [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace llamarl
