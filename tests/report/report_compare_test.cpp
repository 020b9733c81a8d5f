// `llamarl report RUN_A RUN_B` on two hand-written run directories: every chart holds both runs'
// series on the shared axes (seconds since RL started, RL step), the table's figures are worked by
// hand, run names are escaped, and a run without RL rows is an error naming it.
#include "report/report.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/report/file_text.h"
#include "tests/test_util.h"

namespace llamarl {
namespace {

using nlohmann::json;

// SFT rows, then `steps` RL rows of `step_s` seconds each, `tokens` trained tokens over 8 samples,
// with the held-out reward at the first and last step.
std::string WriteRun(const std::string& name, int steps, double step_s, int64_t tokens) {
  const std::string dir = testing::MakeTempDir("report_compare") + "/" + name;
  std::filesystem::create_directories(dir);
  std::ofstream metrics(dir + "/metrics.jsonl");
  metrics << json{{"step", 0}, {"phase", "sft"}, {"time_s", 50.0}, {"loss", 1.0}}.dump() << "\n";
  for (int i = 0; i < steps; ++i) {
    json row = {{"step", 1 + i},         {"rl_step", i},         {"phase", "rl"},
                {"time_s", 50.0 + step_s * (i + 1)}, {"step_s", step_s}, {"samples", 8},
                {"tokens", tokens},      {"reward_mean", 0.1 * i}, {"response_len_mean", double(tokens) / 8.0}};
    if (i == 0 || i == steps - 1) row["eval_reward_mean"] = 0.25 * (i == 0 ? 1 : 2);
    metrics << row.dump() << "\n";
  }
  return dir;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

TEST(ReportCompare, BothRunsOnEverySharedChart) {
  const std::string a = WriteRun("async<1>", 4, 1.0, 160), b = WriteRun("sync", 4, 2.0, 160);
  const std::string path = WriteComparison(a, b);
  EXPECT_EQ(path, a + "/compare.html");
  const std::string html = testing::ReadFileText(path);
  ASSERT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  for (const char* banned : {"<script", "<link", "src=", "@import", "url(", "https://"})
    EXPECT_EQ(html.find(banned), std::string::npos) << banned;
  EXPECT_EQ(html.find("async<1>"), std::string::npos) << "run names are escaped";
  EXPECT_NE(html.find("A: async&lt;1&gt;"), std::string::npos) << "the table names the runs A and B";
  for (const char* title : {"reward against wall-clock time", "reward against step", "step time",
                            "trained response length"})
    EXPECT_EQ(Count(html, std::string("<h3>") + title + "</h3>"), 1u) << title;
  // Two reward charts with a line and held-out points for each run; one line per run elsewhere.
  EXPECT_EQ(Count(html, "data-name=\"A reward_mean\""), 2u);
  EXPECT_EQ(Count(html, "data-name=\"B reward_mean\""), 2u);
  EXPECT_EQ(Count(html, "data-name=\"B eval_reward_mean\""), 2u);
  EXPECT_EQ(Count(html, "data-name=\"A step_s\""), 1u);
  EXPECT_EQ(Count(html, "data-name=\"B response_len_mean\""), 1u);
  // B's last held-out point sits at 8 s after RL started (4 steps of 2 s): its tooltip says so.
  EXPECT_NE(html.find("B eval_reward_mean at 8: 0.5"), std::string::npos);
  EXPECT_NE(html.find("A eval_reward_mean at 4: 0.5"), std::string::npos);
  // The table: 4 steps, 4 s vs 8 s, 640 tokens -> 160 vs 80 tokens/s, 8 vs 4 samples/s, mean length 20.
  EXPECT_NE(html.find("<td class=\"n\">160</td><td class=\"n\">8</td><td class=\"n\">20</td>"), std::string::npos);
  EXPECT_NE(html.find("<td class=\"n\">80</td><td class=\"n\">4</td><td class=\"n\">20</td>"), std::string::npos);
}

TEST(ReportCompare, ARunWithoutRlStepsIsAnErrorNamingIt) {
  const std::string a = WriteRun("rl", 2, 1.0, 10), b = WriteRun("sft_only", 0, 1.0, 10);
  try {
    WriteComparison(a, b);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find(b + "/metrics.jsonl has no RL rows"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llamarl
