// End-to-end tests of `llamarl plan`: each runs the built binary as a user would.
#include "core/config.h"
#include "model/llama_config.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

#include <fstream>

namespace llamarl {
namespace {

using testing::LlamarlBinary;
using testing::MakeTempDir;
using testing::RunCommand;

int Llamarl(const std::string& args, std::string* out, bool merge = false) {
  return RunCommand(LlamarlBinary() + " " + args, out, merge);
}

TEST(PlanCliTest, JsonOf8bOn16GpusHoldsTheDocumentedFields) {
  std::string out;
  ASSERT_EQ(Llamarl("plan --model 8b --gpus 16 --json", &out), 0) << out;
  Json plan = Json::parse(out);
  EXPECT_EQ(plan["model"]["params"].get<int64_t>(), 8030261248);
  EXPECT_EQ(plan["gpus"].get<int64_t>(), 16);
  EXPECT_TRUE(plan["fits"].get<bool>());
  for (const char* design : {"sync", "async"}) {
    ASSERT_TRUE(plan[design].is_object()) << design << ": " << out;
    EXPECT_GT(plan[design]["step_s"].get<double>(), 0.0) << design;
  }
  double speedup = plan["speedup"].get<double>();
  EXPECT_NEAR(speedup, plan["sync"]["step_s"].get<double>() / plan["async"]["step_s"].get<double>(), 1e-9);
  EXPECT_GT(plan["weight_sync_s"].get<double>(), 0.0);
  EXPECT_GT(plan["weight_sync_gather_broadcast_s"].get<double>(), plan["weight_sync_s"].get<double>());
  // The split placement uses every GPU, and the recipe skeleton repeats it.
  const Json& async = plan["async"];
  EXPECT_EQ(async["generator"]["gpus"].get<int64_t>() + async["trainer"]["gpus"].get<int64_t>(), 16);
  EXPECT_EQ(plan["recipe"]["placement"]["generator_ranks"], async["generator"]["gpus"]);
  EXPECT_EQ(plan["recipe"]["generator"]["tp_size"], async["generator"]["tp"]);
  EXPECT_FALSE(plan["assumption_notes"].empty());
}

TEST(PlanCliTest, TextReportPrintsAssumptionsAndTheTable) {
  std::string out;
  ASSERT_EQ(Llamarl("plan --model 70b --gpus 128", &out), 0) << out;
  for (const char* text : {"70,553,706,496 parameters", "async (split)", "sync (colocated)", "speedup of async",
                           "assumptions:", "KV cache/token = 2*layers*kv_heads*head_dim", "MFU",
                           "recipe skeleton:"})
    EXPECT_NE(out.find(text), std::string::npos) << text << "\n" << out;
}

TEST(PlanCliTest, AModelThatCannotFitSaysSoAndWhatWould) {
  std::string out;
  EXPECT_EQ(Llamarl("plan --model 405b --gpus 8", &out), 2) << out;
  EXPECT_NE(out.find("NO PLACEMENT FITS on 8 x h100"), std::string::npos) << out;
  EXPECT_NE(out.find("the split design needs >= "), std::string::npos) << out;
  EXPECT_NE(out.find("the colocated design needs >= "), std::string::npos) << out;
  ASSERT_EQ(Llamarl("plan --model 405b --gpus 8 --json", &out), 2) << out;
  Json plan = Json::parse(out);
  EXPECT_FALSE(plan["fits"].get<bool>());
  EXPECT_TRUE(plan["async"].is_null());
  EXPECT_TRUE(plan["speedup"].is_null());
  EXPECT_EQ(plan["advice"].size(), 2u) << out;
}

TEST(PlanCliTest, AcceptsAnHfConfigJsonAndReportsBadValues) {
  std::string dir = MakeTempDir("plan-config");
  {
    std::ofstream f(dir + "/config.json");
    f << TinyLlamaConfig().ToJson().dump();
  }
  std::string out;
  ASSERT_EQ(Llamarl("plan --model " + dir + "/config.json --gpus 2 --json", &out), 0) << out;
  EXPECT_EQ(Json::parse(out)["model"]["params"].get<int64_t>(), TinyLlamaConfig().NumParameters());

  EXPECT_EQ(Llamarl("plan --model 9b --gpus 8", &out, true), 1);
  EXPECT_NE(out.find("unknown model preset '9b'; known: tiny, qwen2.5-0.5b, qwen2.5-1.5b, llama3.2-1b, 8b, 70b, 405b"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("plan --model 8b --gpus 8 --gpu b200", &out, true), 1);
  EXPECT_NE(out.find("unknown GPU profile 'b200'; known: h100, h200, a100"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("plan --model 8b --gpus 8 --response-mean 5000 --response-max 4096", &out, true), 1);
  EXPECT_NE(out.find("response_tokens_max (4096) must be >= response_tokens_mean (5000)"), std::string::npos) << out;
  EXPECT_EQ(Llamarl("plan --model 8b --gpus 8 --gpu a100 --generator-dtype fp8", &out, true), 1);
  EXPECT_NE(out.find("'a100' has none"), std::string::npos) << out;
}

}  // namespace
}  // namespace llamarl
