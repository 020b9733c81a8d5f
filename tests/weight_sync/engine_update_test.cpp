// WeightReceiver::UpdateEngine, the in-flight update a weight push drives: a staged push newer than
// the engine's version replaces its weights (greedy tokens then match the new model's reference) and
// stamps the version; nothing staged, or a staged push not newer than the engine, changes nothing.
// PushWeightsIntoEngine does the same with no staging: the engine's own parameters are the targets.
#include "weight_sync/weight_sync.h"

#include "core/communicator.h"
#include "generator/engine_model.h"
#include "tests/generator/engine_test_util.h"
#include "tests/weight_sync/weight_sync_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace llamarl {
namespace {

using testing::Greedy;
using testing::MakeModel;

std::vector<at::Tensor> Parameters(LlamaForCausalLMImpl& model) {
  std::vector<at::Tensor> out;
  for (const auto& item : model.named_parameters()) out.push_back(item.value().detach());
  return out;
}

struct Push {
  std::unique_ptr<Communicator> comm = CreateCommunicator("local");
  std::shared_ptr<const TransferPlan> plan;
  std::unique_ptr<WeightReceiver> receiver;

  explicit Push(const LlamaConfig& config) {
    plan = TransferPlan::Build(ZeroFlatLayout(LlamaParamSpecs(config), 1, at::kFloat),
                               TensorParallelLayout(config, {1, at::kFloat}));
    receiver = std::make_unique<WeightReceiver>(plan, 0);
  }
  void Send(LlamaForCausalLMImpl& model, int64_t version) {
    const at::Tensor flat = testing::ExpectedFlatShard(Parameters(model), 0, 1);
    PushWeights(*comm, *plan, TransferPlacement::Colocated(1), version, {flat}, receiver.get());
  }
};

// The engine's next greedy completion of `prompt` is `model`'s, every token stamped `version`.
void ExpectGeneratesLike(Engine& engine, LlamaForCausalLMImpl& model, const std::vector<int64_t>& prompt,
                         uint64_t id, int64_t version) {
  engine.Submit(Greedy(id, prompt, 8));
  const std::vector<Completion> done = engine.RunUntilDone();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].tokens, testing::Reference(model, prompt, 8).tokens);
  EXPECT_EQ(done[0].versions, std::vector<int64_t>(8, version));
}

TEST(EngineUpdateTest, AStagedPushReplacesTheEnginesWeightsAndVersion) {
  const LlamaConfig config = testing::EngineTestConfig(96);
  LlamaForCausalLM old_model = MakeModel(config, 6), new_model = MakeModel(config, 7);
  const std::vector<int64_t> prompt = testing::Prompt(7, 1, 96);
  ASSERT_NE(testing::Reference(*old_model, prompt, 8).tokens, testing::Reference(*new_model, prompt, 8).tokens);
  Engine engine(config, *old_model, EngineOptions{}, /*version=*/2);
  Push push(config);
  EXPECT_EQ(push.receiver->UpdateEngine(engine), 2) << "nothing staged yet";
  push.Send(*new_model, 5);
  EXPECT_EQ(engine.Version(), 2) << "a push only stages; the engine changes when UpdateEngine runs";
  EXPECT_EQ(push.receiver->UpdateEngine(engine), 5);
  EXPECT_EQ(engine.Version(), 5);
  EXPECT_EQ(push.receiver->HeldVersion(), 5);
  EXPECT_EQ(push.receiver->StagedVersion(), -1);
  ExpectGeneratesLike(engine, *new_model, prompt, 1, 5);
}

TEST(EngineUpdateTest, APushNotNewerThanTheEngineChangesNothing) {
  const LlamaConfig config = testing::EngineTestConfig(96);
  LlamaForCausalLM model = MakeModel(config, 8), other = MakeModel(config, 9);
  const std::vector<int64_t> prompt = testing::Prompt(5, 2, 96);
  Engine engine(config, *model, EngineOptions{}, /*version=*/9);
  Push push(config);
  push.Send(*other, 9);
  EXPECT_EQ(push.receiver->UpdateEngine(engine), 9);
  EXPECT_EQ(push.receiver->HeldVersion(), -1);
  EXPECT_EQ(push.receiver->StagedVersion(), 9);
  engine.Submit(Greedy(1, prompt, 6));
  EXPECT_EQ(engine.RunUntilDone()[0].tokens, testing::Reference(*model, prompt, 6).tokens);
}

TEST(EngineUpdateTest, APushIntoTheEngineReplacesItsWeightsWithoutStaging) {
  const LlamaConfig config = testing::EngineTestConfig(96);
  LlamaForCausalLM old_model = MakeModel(config, 6), new_model = MakeModel(config, 7);
  const std::vector<int64_t> prompt = testing::Prompt(7, 1, 96);
  Engine engine(config, *old_model, EngineOptions{}, /*version=*/2);
  Push push(config);  // its receiver stays unused
  const at::Tensor flat = testing::ExpectedFlatShard(Parameters(*new_model), 0, 1);
  EXPECT_EQ(PushWeightsIntoEngine(*push.comm, *push.plan, TransferPlacement::Colocated(1), 5, {flat}, engine), 5);
  EXPECT_EQ(engine.Version(), 5);
  EXPECT_EQ(push.receiver->StagedVersion(), -1);
  ExpectGeneratesLike(engine, *new_model, prompt, 1, 5);
  // Not newer: received and dropped.
  const at::Tensor other = testing::ExpectedFlatShard(Parameters(*old_model), 0, 1);
  EXPECT_EQ(PushWeightsIntoEngine(*push.comm, *push.plan, TransferPlacement::Colocated(1), 5, {other}, engine), 5);
  ExpectGeneratesLike(engine, *new_model, prompt, 2, 5);
}

// An fp8 DDMA push (ZeRO flat f32 -> e4m3fn with per-row scales of the full weights) into an fp8
// engine (EngineOptions::fp8_weights) writes its projections' bits and scales and decodes the rest;
// into an f32 engine it decodes everything. Either engine then generates exactly what the model
// with every parameter round-tripped through fp8 generates.
TEST(EngineUpdateTest, AnFp8PushIsDecodedExactlyByFp8AndPlainEngines) {
  const LlamaConfig config = testing::EngineTestConfig(96);
  LlamaForCausalLM old_model = MakeModel(config, 16), new_model = MakeModel(config, 17);
  LlamaForCausalLM pushed = testing::Fp8Decoded(config, *new_model, /*everything=*/true);
  std::unique_ptr<Communicator> comm = CreateCommunicator("local");
  auto plan = TransferPlan::Build(ZeroFlatLayout(LlamaParamSpecs(config), 1, at::kFloat),
                                  TensorParallelLayout(config, {1, at::kByte}), TransferEncoding::kFp8E4m3);
  const at::Tensor flat = testing::ExpectedFlatShard(Parameters(*new_model), 0, 1);
  const std::vector<int64_t> prompt = testing::Prompt(7, 1, 96);
  const GenerationResult want = testing::Reference(*pushed, prompt, 8);
  for (bool fp8 : {true, false}) {
    SCOPED_TRACE(fp8 ? "fp8 engine" : "f32 engine");
    EngineOptions options;
    options.fp8_weights = fp8;
    Engine engine(config, *old_model, options, /*version=*/3);
    EXPECT_EQ(engine.fp8_weights(), fp8);
    EXPECT_EQ(PushWeightsIntoEngine(*comm, *plan, TransferPlacement::Colocated(1), 4, {flat}, engine), 4);
    EXPECT_EQ(engine.Version(), 4);
    engine.Submit(Greedy(1, prompt, 8));
    const std::vector<Completion> done = engine.RunUntilDone();
    ASSERT_EQ(done.size(), 1u);
    EXPECT_EQ(done[0].tokens, want.tokens);
    for (size_t i = 0; i < want.logprobs.size(); ++i) EXPECT_NEAR(done[0].logprobs[i], want.logprobs[i], 1e-5);
    EXPECT_EQ(done[0].versions, std::vector<int64_t>(8, 4));
    for (const auto& [name, value] : engine.LocalParameters())
      EXPECT_TRUE(at::equal(value, pushed->named_parameters()[name])) << name;
  }
}

// The targets a push writes into are the engine's parameters themselves (same storage) where the shard
// has their shape and dtype; otherwise none (the push then goes through a scratch tensor).
TEST(EngineUpdateTest, InPlaceTargetsAreTheParametersThemselves) {
  const LlamaConfig config = testing::EngineTestConfig(96);
  LlamaForCausalLM model = MakeModel(config, 3);
  EngineModel engine_model(config, *model, nullptr);
  for (const auto& item : engine_model.local().named_parameters()) {
    const at::Tensor target = engine_model.InPlaceTarget(item.key(), item.value().sizes(), item.value().scalar_type());
    ASSERT_TRUE(target.defined()) << item.key();
    EXPECT_EQ(target.data_ptr(), item.value().data_ptr()) << item.key();
  }
  const std::string name = "model.layers.0.mlp.up_proj.weight";
  const at::Tensor up = engine_model.local().named_parameters()[name];
  EXPECT_FALSE(engine_model.InPlaceTarget(name, up.sizes(), at::kBFloat16).defined()) << "another dtype";
  EXPECT_FALSE(engine_model.InPlaceTarget(name, {up.size(0) / 2, up.size(1)}, up.scalar_type()).defined());
  EXPECT_FALSE(engine_model.InPlaceTarget("no.such.weight", up.sizes(), up.scalar_type()).defined());
}

}  // namespace
}  // namespace llamarl
