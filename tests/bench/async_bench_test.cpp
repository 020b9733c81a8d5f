// SummariseBenchRun on hand-written run directories: the steady-state window (first and last RL
// steps left out), trained throughput, idle fractions per role, the trained and the generators'
// merged length histograms, staleness and drop counts and the reward curve, all against values
// worked by hand; a run without RL steps or with a torn histogram is an error
// naming the file.
#include "bench/async_bench.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"
#include "core/check.h"

namespace llamarl::bench {
namespace {

using nlohmann::json;

std::string WriteRun(const std::string& tag, const std::vector<json>& rows, const json& summary) {
  const std::string dir = ::llamarl::testing::MakeTempDir(tag);
  std::ofstream metrics(dir + "/metrics.jsonl");
  for (const json& row : rows) metrics << row.dump() << "\n";
  std::ofstream(dir + "/summary.json") << summary.dump() << "\n";
  return dir;
}

json RlRow(int64_t step, double step_s, int64_t samples, int64_t tokens, double idle_trainer) {
  return {{"step", 10 + step}, {"rl_step", step},      {"phase", "rl"},          {"step_s", step_s},
          {"time_s", 100.0 + 10.0 * double(step)},     {"stale_trained", step == 1 ? 1 : 0},
          {"samples", samples}, {"tokens", tokens},    {"idle_s_trainer", idle_trainer},
          {"gen_s", 0.5},       {"train_s", 0.25},     {"sync_s", 0.125},        {"reward_mean", 0.5},
          {"response_len_mean", 4.0}, {"staleness_mean", 1.0}, {"dropped_stale", step == 3 ? 2 : 0}};
}

TEST(AsyncBenchTest, SplitRunSteadyStateIdleAndLengthsByHand) {
  std::vector<json> rows = {{{"step", 0}, {"phase", "sft"}, {"loss", 2.0}},
                            RlRow(0, 5.0, 64, 100, 2.0), RlRow(1, 1.0, 60, 200, 0.25),
                            RlRow(2, 3.0, 64, 400, 0.75), RlRow(3, 9.0, 64, 50, 1.0)};
  rows[2]["eval_reward_mean"] = 0.25;  // rl step 1
  // Generated lengths 1, 1, 2 from one generator and 4 from the other; the trainers trained on 3, 5.
  json summary = {{"eval_start", {{"eval_reward_mean", 0.25}}},
                  {"eval_end", {{"eval_reward_mean", 0.5}}},
                  {"response_lengths", {0, 0, 0, 1, 0, 1}},
                  {"staleness_tokens", {6, 2}},
                  {"generators", {{{"idle_s", 1.0}, {"total_s", 4.0}, {"response_lengths", {0, 2, 1}}},
                                  {{"idle_s", 1.0}, {"total_s", 6.0}, {"response_lengths", {0, 0, 0, 0, 1}}}}}};
  const json s = SummariseBenchRun(WriteRun("async_bench_split", rows, summary));
  EXPECT_EQ(s["timed_steps"], 2);                            // rl steps 1 and 2
  EXPECT_DOUBLE_EQ(s["step_s"].get<double>(), 2.0);          // (1 + 3) / 2
  EXPECT_DOUBLE_EQ(s["samples_per_s"].get<double>(), 31.0);  // 124 / 4
  EXPECT_DOUBLE_EQ(s["tokens_per_s"].get<double>(), 150.0);  // 600 / 4
  EXPECT_DOUBLE_EQ(s["idle_fraction_trainer"].get<double>(), 0.25);    // 1 / 4
  EXPECT_DOUBLE_EQ(s["idle_fraction_generator"].get<double>(), 0.2);   // 2 / 10
  EXPECT_DOUBLE_EQ(s["reward_start"].get<double>(), 0.25);
  EXPECT_DOUBLE_EQ(s["reward_end"].get<double>(), 0.5);
  EXPECT_EQ(s["dropped_stale"], 2);  // over every RL step
  EXPECT_EQ(s["stale_trained"], 1);
  EXPECT_EQ(s["trained_samples"], 252);  // 64 + 60 + 64 + 64
  EXPECT_EQ(s["staleness_tokens"], json({6, 2}));
  EXPECT_EQ(s["response_lengths"]["count"], 2);
  EXPECT_DOUBLE_EQ(s["response_lengths"]["mean"].get<double>(), 4.0);
  // RL starts at 100 - 5 (the first row's time minus its step); rows every 10 s after.
  EXPECT_EQ(s["reward_curve"]["train"][0], json({5.0, 0.5}));
  EXPECT_EQ(s["reward_curve"]["train"][3], json({35.0, 0.5}));
  EXPECT_EQ(s["reward_curve"]["eval"], json::array({json({15.0, 0.25})}));
  const json& lengths = s["generated_lengths"];
  EXPECT_EQ(lengths["count"], 4);
  EXPECT_DOUBLE_EQ(lengths["mean"].get<double>(), 2.0);
  EXPECT_EQ(lengths["p50"], 1);  // rank 2 of 1 1 2 4
  EXPECT_EQ(lengths["p90"], 4);  // rank ceil(3.6) = 4
  EXPECT_EQ(lengths["max"], 4);
}

TEST(AsyncBenchTest, ColocatedRunIdleFromRowsAndNoLengthsWhenNotReported) {
  std::vector<json> rows = {RlRow(0, 2.0, 64, 100, 0.5), RlRow(1, 4.0, 64, 100, 1.0)};
  rows[0]["idle_s_generator"] = 0.5;
  rows[1]["idle_s_generator"] = 1.0;
  json summary = {{"eval_start", {{"eval_reward_mean", 0.0}}}, {"eval_end", {{"eval_reward_mean", 0.125}}}};
  const json s = SummariseBenchRun(WriteRun("async_bench_colocated", rows, summary));
  EXPECT_EQ(s["timed_steps"], 2) << "fewer than 3 steps: every step is timed";
  EXPECT_DOUBLE_EQ(s["step_s"].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(s["idle_fraction_generator"].get<double>(), 0.25);  // 1.5 / 6
  EXPECT_DOUBLE_EQ(s["idle_fraction_trainer"].get<double>(), 0.25);
  EXPECT_TRUE(s["response_lengths"].is_null());
  EXPECT_TRUE(s["generated_lengths"].is_null());
  summary["response_lengths"] = {0, 0, 3};
  const json with = SummariseBenchRun(WriteRun("async_bench_colocated_lengths", rows, summary));
  EXPECT_EQ(with["response_lengths"]["count"], 3);
  EXPECT_EQ(with["response_lengths"]["p50"], 2);
}

TEST(AsyncBenchTest, ErrorsNameTheFile) {
  json summary = {{"eval_start", json::object()}, {"eval_end", json::object()}};
  const std::string empty = WriteRun("async_bench_no_rl", {{{"step", 0}, {"phase", "sft"}}}, summary);
  try {
    SummariseBenchRun(empty);
    FAIL() << "a run without RL steps was summarised";
  } catch (const llamarl::Error& e) {
    EXPECT_NE(std::string(e.what()).find(empty + "/metrics.jsonl"), std::string::npos) << e.what();
  }
  summary["generators"] = {{{"idle_s", 0.0}, {"total_s", 1.0}, {"response_lengths", {1, -1}}}};
  const std::string torn = WriteRun("async_bench_torn", {RlRow(0, 1.0, 8, 8, 0.0)}, summary);
  try {
    SummariseBenchRun(torn);
    FAIL() << "a negative length count was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("generators[0].response_lengths[1]"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llamarl::bench
