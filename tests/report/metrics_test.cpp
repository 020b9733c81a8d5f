#include "report/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/check.h"
#include "tests/report/file_text.h"
#include "tests/reward/error_text.h"
#include "tests/test_util.h"

namespace llamarl {
namespace {

using nlohmann::json;

TEST(Metrics, RoundTripKeepsEveryKeyAndValue) {
  std::string path = testing::MakeTempDir("metrics") + "/sub/metrics.jsonl";
  std::vector<json> rows = {
      {{"step", 0}, {"phase", "sft"}, {"loss", 2.5}, {"time_s", 0.25}},
      {{"step", 1}, {"phase", "rl"}, {"reward_mean", 0.125}, {"reward_std", 0.5}, {"staleness_max", 2},
       {"eval_reward_mean", 0.75}, {"skipped", false}, {"tokens", 1234567890123}},
  };
  {
    MetricsWriter writer(path);
    for (const auto& row : rows) writer.Write(row);
    // Flushed per line: visible to another reader before the writer closes.
    EXPECT_EQ(ReadMetrics(path), rows);
  }
  EXPECT_EQ(ReadMetrics(path), rows);
  std::string text = testing::ReadFileText(path);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

TEST(Metrics, NonFiniteBecomesNullNotAFakeNumber) {
  std::string path = testing::MakeTempDir("metrics") + "/metrics.jsonl";
  MetricsWriter(path).Write({{"step", 3}, {"loss", std::numeric_limits<double>::quiet_NaN()}});
  std::vector<json> back = ReadMetrics(path);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_TRUE(back[0]["loss"].is_null());
}

TEST(Metrics, WriteRejectsRowsWithoutStep) {
  std::string path = testing::MakeTempDir("metrics") + "/metrics.jsonl";
  MetricsWriter writer(path);
  EXPECT_NE(testing::ErrorText([&] { writer.Write({{"loss", 1.0}}); }).find("integer \"step\""), std::string::npos);
  EXPECT_NE(testing::ErrorText([&] { writer.Write(json::array({1, 2})); }).find("[1,2]"), std::string::npos);
  EXPECT_NE(testing::ErrorText([&] { writer.Write({{"step", -1}}); }).find("\"step\":-1"), std::string::npos);
}

TEST(Metrics, TornLastLineIsDroppedAndAppendRepairsIt) {
  std::string path = testing::MakeTempDir("metrics") + "/metrics.jsonl";
  testing::WriteFileText(path, "{\"step\":0,\"loss\":1.5}\n{\"step\":1,\"loss\":1.25}\n{\"step\":2,\"lo");
  std::vector<json> rows = ReadMetrics(path);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["loss"], 1.25);

  // Resume: appending must not glue the new row onto the torn one.
  MetricsWriter(path, /*append=*/true).Write({{"step", 2}, {"loss", 1.0}});
  EXPECT_EQ(testing::ReadFileText(path), "{\"step\":0,\"loss\":1.5}\n{\"step\":1,\"loss\":1.25}\n{\"loss\":1.0,\"step\":2}\n");
  rows = ReadMetrics(path);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2]["loss"], 1.0);
}

TEST(Metrics, AppendFalseStartsOver) {
  std::string path = testing::MakeTempDir("metrics") + "/metrics.jsonl";
  MetricsWriter(path).Write({{"step", 0}});
  MetricsWriter(path, /*append=*/false).Write({{"step", 7}});
  std::vector<json> rows = ReadMetrics(path);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["step"], 7);
}

TEST(Metrics, MalformedMiddleLineNamesItsLineNumber) {
  std::string path = testing::MakeTempDir("metrics") + "/metrics.jsonl";
  testing::WriteFileText(path, "{\"step\":0}\n\n{\"step\":1,\"loss\":}\n{\"step\":2}\n");
  std::string error = testing::ErrorText([&] { ReadMetrics(path); });
  EXPECT_NE(error.find(path + ":3 is not valid JSON"), std::string::npos) << error;

  // A terminated bad last line was written whole: corruption, not a crash mid-write.
  testing::WriteFileText(path, "{\"step\":0}\n{\"step\":1,\"loss\":\n");
  error = testing::ErrorText([&] { ReadMetrics(path); });
  EXPECT_NE(error.find(path + ":2"), std::string::npos) << error;

  testing::WriteFileText(path, "{\"step\":0}\n[1,2]\n");
  error = testing::ErrorText([&] { ReadMetrics(path); });
  EXPECT_NE(error.find(path + ":2 must be a JSON object"), std::string::npos) << error;

  testing::WriteFileText(path, "{\"step\":0}\n{\"loss\":2}\n");
  error = testing::ErrorText([&] { ReadMetrics(path); });
  EXPECT_NE(error.find(path + ":2 has no integer \"step\""), std::string::npos) << error;
}

TEST(Metrics, MissingFileIsAClearError) {
  std::string path = testing::MakeTempDir("metrics") + "/nope.jsonl";
  std::string error = testing::ErrorText([&] { ReadMetrics(path); });
  EXPECT_NE(error.find("'" + path + "' does not exist"), std::string::npos) << error;
}

TEST(Metrics, DropAfterStepForResume) {
  std::string path = testing::MakeTempDir("metrics") + "/metrics.jsonl";
  testing::WriteFileText(path, "{\"step\":0}\n{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"step\":4,\"lo");
  EXPECT_EQ(DropMetricsAfterStep(path, 1), 2);
  MetricsWriter(path, /*append=*/true).Write({{"step", 2}, {"rerun", true}});
  std::vector<json> rows = ReadMetrics(path);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[2]["rerun"], true);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(DropMetricsAfterStep(path + ".absent", 0), 0);
}

TEST(Metrics, LatestRowPerStepPrefersTheRerun) {
  std::vector<json> rows = {{{"step", 0}, {"v", "a"}}, {{"step", 2}, {"v", "b"}}, {{"step", 1}, {"v", "c"}},
                            {{"step", 2}, {"v", "d"}}};
  std::vector<json> latest = LatestRowPerStep(rows);
  ASSERT_EQ(latest.size(), 3u);
  EXPECT_EQ(latest[0]["v"], "a");
  EXPECT_EQ(latest[1]["v"], "c");
  EXPECT_EQ(latest[2]["v"], "d");
}

}  // namespace
}  // namespace llamarl
