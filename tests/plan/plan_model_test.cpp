// Parameter counts of the planner's models, taken from the real module built on the meta device.
#include "plan/plan_model.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

#include <fstream>

namespace llamarl {
namespace {

TEST(PlanModelTest, MetaDeviceCountsMatchTheLlama3Releases) {
  // The figures Meta publishes for Llama 3.1 8B, 70B and 405B (HF safetensors totals).
  EXPECT_EQ(LoadPlanModel("8b").num_params, 8030261248);
  EXPECT_EQ(LoadPlanModel("70b").num_params, 70553706496);
  EXPECT_EQ(LoadPlanModel("405b").num_params, 405853388800);
}

TEST(PlanModelTest, BreakdownOf8bByHand) {
  PlanModel m = LoadPlanModel("8b");
  // Per layer: q 4096*4096 = 16,777,216; k, v 4096*1024 = 4,194,304 each; o 16,777,216;
  // gate, up, down 4096*14336 = 58,720,256 each -> 218,103,808 linear; x 32 layers = 6,979,321,856.
  EXPECT_EQ(m.layer_linear_params, 6979321856);
  // The embedding (128256 * 4096 = 525,336,576) outweighs a layer (218,103,808 + 2 * 4096 norms).
  EXPECT_EQ(m.largest_unit_params, 525336576);
  // K and V: 2 * 32 layers * 8 kv heads * 128 head_dim * 2 bytes = 131,072 bytes per token.
  EXPECT_EQ(m.KvBytesPerToken(2), 131072);
  // 405B: 2 * 126 * 8 * 128 * 2 = 516,096.
  EXPECT_EQ(LoadPlanModel("405b").KvBytesPerToken(2), 516096);
}

TEST(PlanModelTest, ReadsAnHfConfigJsonAndCountsTiedEmbeddingsOnce) {
  LlamaConfig config = TinyLlamaConfig();  // tie_word_embeddings = true
  std::string dir = testing::MakeTempDir("plan-model");
  {
    std::ofstream f(dir + "/config.json");
    f << config.ToJson().dump();
  }
  PlanModel m = LoadPlanModel(dir);
  // vocab 512 * D 64 embedding once; per layer q 64*64, k, v 64*32, o 64*64, 3 * 64*192 MLP, 2 norms.
  int64_t layer = 64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 192 + 2 * 64;
  EXPECT_EQ(m.num_params, 512 * 64 + 2 * layer + 64);
  EXPECT_EQ(m.name, dir);
}

TEST(PlanModelTest, UnknownNameListsThePresets) {
  try {
    LoadPlanModel("7b");
    FAIL() << "expected an error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("unknown model preset '7b'; known: tiny, qwen2.5-0.5b, qwen2.5-1.5b, llama3.2-1b, 8b, 70b, 405b"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace llamarl
