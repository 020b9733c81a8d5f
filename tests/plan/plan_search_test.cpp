// The placement search: what it picks, what it rejects and what it advises when nothing fits.
#include "plan/plan_report.h"
#include "plan/plan_search.h"
#include "core/check.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

#include <fstream>

namespace llamarl {
namespace {

PlanRequest Request(const std::string& model, int64_t gpus, const std::string& gpu = "h100") {
  PlanRequest request;
  request.model = LoadPlanModel(model);
  request.hardware = HardwareProfileByName(gpu);
  request.num_gpus = gpus;
  return request;
}

TEST(PlanSearchTest, DegreesAndShardGroups) {
  HardwareProfile h100 = HardwareProfileByName("h100");
  EXPECT_EQ(TensorParallelSizes(LlamaPresetConfig("8b"), h100), (std::vector<int64_t>{1, 2, 4, 8}));
  // tiny: 4 heads, 2 KV heads: TP 8 would split no head.
  EXPECT_EQ(TensorParallelSizes(LlamaPresetConfig("tiny"), h100), (std::vector<int64_t>{1, 2, 4}));
  EXPECT_EQ(ShardGroupSizes(64, h100), (std::vector<int64_t>{8, 16, 32, 64}));
  EXPECT_EQ(ShardGroupSizes(24, h100), (std::vector<int64_t>{8, 24}));
  EXPECT_EQ(ShardGroupSizes(4, h100), (std::vector<int64_t>{4}));
}

TEST(PlanSearchTest, PicksTheFastestFittingSplitAndExplainsRejections) {
  PlanRequest request = Request("8b", 16);
  PlanResult result = SearchPlan(request);
  ASSERT_TRUE(result.async && result.sync);
  const AsyncPlan& best = *result.async;
  EXPECT_EQ(best.generator_setup.num_gpus + best.trainer_setup.num_gpus, 16);
  // Its step is the slower side plus the push, and no runner-up is faster.
  EXPECT_DOUBLE_EQ(best.step_s, std::max(best.generator.time_s, best.trainer.time_s) + best.weight_sync.ddma_s);
  for (const auto& other : result.async_runners_up) EXPECT_GE(other.step_s, best.step_s);
  EXPECT_LE(best.trainer.total_bytes_per_gpu, 80e9);
  const SyncPlan& sync = *result.sync;
  EXPECT_DOUBLE_EQ(sync.step_s, sync.generator.time_s + sync.trainer.time_s + sync.reshard_s + sync.offload_s);
  EXPECT_DOUBLE_EQ(result.Speedup(), sync.step_s / best.step_s);
  // The trainer without checkpointing (88 GB of activations) is among the rejected.
  bool trainer_rejected = false;
  for (const auto& r : result.rejections) trainer_rejected |= r.kind.find("trainer") != std::string::npos && r.count > 0;
  EXPECT_TRUE(trainer_rejected);
  EXPECT_TRUE(result.advice.empty());
}

TEST(PlanSearchTest, MoreGpusNeverMakeTheStepSlower) {
  double previous = 1e30;
  for (int64_t gpus : {16, 32, 64}) {
    PlanResult result = SearchPlan(Request("8b", gpus));
    ASSERT_TRUE(result.async) << gpus;
    EXPECT_LE(result.async->step_s, previous) << gpus;
    previous = result.async->step_s;
  }
}

TEST(PlanSearchTest, NothingFitsAndTheAdviceSaysWhatWould) {
  PlanResult result = SearchPlan(Request("405b", 8));
  EXPECT_FALSE(result.Fits());
  ASSERT_EQ(result.advice.size(), 2u);
  // The 405B trainer alone needs 16 * 405.85e9 bytes of states spread over enough GPUs, and bf16
  // weights (101 GB per GPU at TP=8) fit no node, so the advice turns to fp8.
  EXPECT_NE(result.advice[0].find("the split design needs >= "), std::string::npos) << result.advice[0];
  EXPECT_NE(result.advice[0].find("TP=8 fp8"), std::string::npos) << result.advice[0];
  EXPECT_NE(result.advice[0].find("use fp8 generator weights"), std::string::npos) << result.advice[0];
  EXPECT_NE(result.advice[1].find("the colocated design needs >= "), std::string::npos) << result.advice[1];
  // The advice is right: the split count it names does fit.
  std::string advice = result.advice[0];
  size_t at = advice.find(">= ") + 3;
  int64_t needed = std::stoll(advice.substr(at));
  PlanResult bigger = SearchPlan(Request("405b", needed));
  EXPECT_TRUE(bigger.async.has_value()) << advice;
  PlanResult smaller = SearchPlan(Request("405b", needed - 8));
  EXPECT_FALSE(smaller.async.has_value()) << advice;
}

TEST(PlanSearchTest, Bf16OnlyOn405bHasNoGeneratorAndSaysSo) {
  PlanRequest request = Request("405b", 512);
  request.generator_dtypes = {WeightDtype::kBf16};
  PlanResult result = SearchPlan(request);
  EXPECT_FALSE(result.async.has_value());
  ASSERT_FALSE(result.advice.empty());
  EXPECT_NE(result.advice[0].find("no generator of TP <= 8 holds the weights"), std::string::npos) << result.advice[0];
}

TEST(PlanSearchTest, HardwareProfilesOverrideFromJson) {
  std::string path = testing::MakeTempDir("plan-hw") + "/slow_net.json";
  {
    std::ofstream f(path);
    f << R"({"base": "h100", "name": "h100-200g", "network_gbps": 25})";
  }
  HardwareProfile hw = LoadHardwareProfile(path);
  EXPECT_EQ(hw.name, "h100-200g");
  EXPECT_DOUBLE_EQ(hw.network_gbps, 25);
  EXPECT_DOUBLE_EQ(hw.hbm_gb, 80);
  // Half the NIC bandwidth doubles the DDMA push of the same placement.
  PlanRequest fast = Request("8b", 16), slow = Request("8b", 16);
  slow.hardware = hw;
  TrainerSetup trainer{8, 8, true};
  GeneratorSetup generator{8, 1};
  EXPECT_NEAR(EstimateWeightSync(slow.model, hw, slow.assumptions, trainer, generator).ddma_s,
              2 * EstimateWeightSync(fast.model, fast.hardware, fast.assumptions, trainer, generator).ddma_s, 1e-9);
  try {
    HardwareProfile::FromJson(Json{{"hbm", 80}}, "hw.json", hw);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'hbm'"), std::string::npos) << e.what();
  }
}

TEST(PlanSearchTest, JsonHoldsTheDocumentedFields) {
  PlanRequest request = Request("70b", 128);
  PlanResult result = SearchPlan(request);
  Json json = PlanToJson(request, result);
  EXPECT_EQ(json["model"]["params"].get<int64_t>(), 70553706496);
  for (const char* key : {"sync", "async"}) EXPECT_GT(json[key]["step_s"].get<double>(), 0) << key;
  EXPECT_GT(json["speedup"].get<double>(), 0);
  EXPECT_GT(json["weight_sync_s"].get<double>(), 0);
  EXPECT_EQ(json["recipe"]["trainer"]["shard_group_size"].get<int64_t>(), result.async->trainer_setup.shard_group);
}

}  // namespace
}  // namespace llamarl
