#include "report/report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/check.h"
#include "report/metrics.h"
#include "report/report_sections.h"
#include "report/svg.h"
#include "tests/report/file_text.h"
#include "tests/reward/error_text.h"
#include "tests/test_util.h"

namespace llamarl {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

// A writable copy of tests/fixtures/run_dir (the report merges the trace into the run directory).
std::string CopyFixtureRun(const std::string& name = "run") {
  std::string dir = testing::MakeTempDir("report") + "/" + name;
  fs::copy(testing::FixturePath("run_dir"), dir, fs::copy_options::recursive);
  return dir;
}

// The part of the page from `from` up to `to` (or the end).
std::string Between(const std::string& html, const std::string& from, const std::string& to) {
  size_t a = html.find(from);
  EXPECT_NE(a, std::string::npos) << from;
  size_t b = to.empty() ? std::string::npos : html.find(to, a);
  return html.substr(a, b == std::string::npos ? std::string::npos : b - a);
}

TEST(Report, FixtureRunHasEverySeriesAndTheTimeline) {
  std::string dir = CopyFixtureRun();
  std::string path = WriteReport(dir);
  EXPECT_EQ(path, dir + "/report.html");
  std::string html = testing::ReadFileText(path);
  ASSERT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  // Self-contained: nothing fetched, nothing executed.
  for (const char* banned : {"<script", "<link", "src=", "@import", "url(", "https://"})
    EXPECT_EQ(html.find(banned), std::string::npos) << banned;

  // The series, independently counted from the fixture's metrics.
  std::vector<json> rows = ReadMetrics(dir + "/metrics.jsonl");
  size_t num_eval = 0, num_rl = 0;
  for (const json& row : rows) num_eval += row.contains("eval_reward_mean"), num_rl += row["phase"] == "rl";
  ASSERT_EQ(num_eval, 4u);
  std::string reward = Between(html, "<h3>reward</h3>", "</figure>");
  EXPECT_NE(reward.find("class=\"series\" data-name=\"reward_mean ± reward_std\""), std::string::npos);
  EXPECT_EQ(Count(reward, "class=\"band\""), 1u);
  EXPECT_EQ(Count(Between(reward, "class=\"points\"", "</g>"), "<circle"), num_eval);
  EXPECT_NE(reward.find("class=\"shade\" data-name=\"SFT warm-start\""), std::string::npos);
  for (const char* series : {"staleness_mean", "staleness_max", "max_policy_lag (bound)", "iw_mean", "iw_max",
                             "iw_ess", "iw_truncated_fraction", "loss", "kl", "entropy", "grad_norm",
                             "tokens_per_s", "response_len_mean"})
    EXPECT_NE(html.find("class=\"series\" data-name=\"" + std::string(series) + "\""), std::string::npos) << series;
  // dropped_stale: one bar per RL step that dropped something.
  size_t num_dropping = 0;
  for (const json& row : rows) num_dropping += row.value("dropped_stale", 0) > 0;
  EXPECT_EQ(Count(Between(html, "data-name=\"dropped_stale\"", "</g>"), "<rect"), num_dropping);
  // Step time: a stack per role; the trainer's train layer has a bar for every step (SFT included).
  std::string trainer = Between(html, "<h3>step time: trainer ranks</h3>", "</figure>");
  EXPECT_EQ(Count(Between(trainer, "class=\"layer\" data-name=\"train\"", "</g>"), "<rect"), rows.size());
  std::string generator = Between(html, "<h3>step time: generator ranks</h3>", "</figure>");
  for (const char* layer : {"generate", "score", "sync", "idle"})
    EXPECT_NE(generator.find("class=\"layer\" data-name=\"" + std::string(layer) + "\""), std::string::npos) << layer;
  EXPECT_EQ(Count(Between(generator, "data-name=\"generate\"", "</g>"), "<rect"), num_rl);

  // The timeline: one lane per rank, one box per phase event of the per-rank files.
  EXPECT_TRUE(fs::exists(dir + "/trace.json"));
  size_t num_x = Count(testing::ReadFileText(dir + "/trace/rank_0.jsonl") + testing::ReadFileText(dir + "/trace/rank_1.jsonl"), "\"ph\":\"X\"");
  std::string timeline = Between(html, "<h3>timeline: the whole run</h3>", "</figure>");
  EXPECT_EQ(Count(timeline, "class=\"span\""), num_x);
  EXPECT_NE(timeline.find("class=\"lane\" data-name=\"rank 0 (generator)\""), std::string::npos);
  EXPECT_NE(timeline.find("class=\"lane\" data-name=\"rank 1 (trainer)\""), std::string::npos);
  for (const char* phase : {"generate", "score", "train", "sync", "wait", "eval", "sft"})
    EXPECT_NE(timeline.find("data-phase=\"" + std::string(phase) + "\""), std::string::npos) << phase;
  EXPECT_NE(html.find("<h3>timeline: the last 4 training steps</h3>"), std::string::npos);

  // The header summarises the recipe.
  EXPECT_NE(html.find("tiny Llama (hidden 64, 2 layers, 4 heads, 2 kv heads)"), std::string::npos);
  EXPECT_NE(html.find("split: 1 generator rank(s), 1 trainer rank(s), tp 1"), std::string::npos);
  EXPECT_NE(html.find("<th>max_policy_lag</th><td>1</td>"), std::string::npos);
  EXPECT_NE(html.find("<th>recorded steps</th><td>6 SFT + 18 RL</td>"), std::string::npos);
}

TEST(Report, HeldOutRewardCardMatchesTheMetrics) {
  std::string dir = CopyFixtureRun();
  double first = -1, last = -1;
  for (const json& row : ReadMetrics(dir + "/metrics.jsonl")) {
    if (!row.contains("eval_reward_mean")) continue;
    if (first < 0) first = row["eval_reward_mean"];
    last = row["eval_reward_mean"];
  }
  std::string html = RenderReport(LoadRun(dir));
  EXPECT_NE(html.find(svg::FormatNumber(first) + " → " + svg::FormatNumber(last)), std::string::npos);
  EXPECT_NE(html.find("+" + svg::FormatNumber(last - first)), std::string::npos);
}

TEST(Report, TrainingRewardCardAveragesATenthOfTheRunAtEachEnd) {
  std::string dir = CopyFixtureRun();
  {
    std::ofstream metrics(dir + "/metrics.jsonl", std::ios::trunc);
    for (int step = 0; step < 40; ++step) {  // rewards 0..39: first tenth 0..3, last tenth 36..39
      metrics << json{{"step", step}, {"phase", "rl"}, {"reward_mean", step}, {"time_s", step}}.dump() << "\n";
    }
  }
  std::string html = RenderReport(LoadRun(dir));
  EXPECT_NE(html.find(svg::FormatNumber(1.5) + " → " + svg::FormatNumber(37.5)), std::string::npos);
}

TEST(Report, EscapesStringsFromTheRun) {
  std::string dir = CopyFixtureRun("a<b>&c");
  json recipe = json::parse(testing::ReadFileText(dir + "/recipe.json"));
  recipe["reward"]["name"] = "<script>alert(1)</script>";
  recipe["trainer"]["algorithm"] = "grpo\" onload=\"x";
  std::ofstream(dir + "/recipe.json") << recipe.dump();
  std::ofstream(dir + "/trace/rank_1.jsonl", std::ios::app)
      << R"({"name":"<img>","ph":"X","ts":1764100000000000,"dur":5,"pid":1,"tid":0})" << "\n";
  std::string html = RenderReport(LoadRun(dir));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img>"), std::string::npos);
  EXPECT_EQ(html.find("a<b>"), std::string::npos);
  EXPECT_NE(html.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(html.find("grpo&quot; onload=&quot;x"), std::string::npos);
  EXPECT_NE(html.find("data-phase=\"&lt;img&gt;\""), std::string::npos);
  EXPECT_NE(html.find("<code>a&lt;b&gt;&amp;c</code>"), std::string::npos);
}

TEST(Report, ClearErrors) {
  std::string base = testing::MakeTempDir("report");
  EXPECT_NE(testing::ErrorText([&] { LoadRun(base + "/absent"); }).find("'" + base + "/absent' does not exist"), std::string::npos);
  EXPECT_NE(testing::ErrorText([&] { LoadRun(base); }).find("no metrics.jsonl in '" + base + "'"), std::string::npos);
  std::ofstream(base + "/metrics.jsonl") << "";
  EXPECT_NE(testing::ErrorText([&] { LoadRun(base); }).find("has no metrics rows"), std::string::npos);
  std::ofstream(base + "/metrics.jsonl") << "{\"step\":0,\"lo";  // only a torn line
  EXPECT_NE(testing::ErrorText([&] { LoadRun(base); }).find("has no metrics rows"), std::string::npos);
  std::ofstream(base + "/metrics.jsonl") << "{\"step\":0}\n";
  std::ofstream(base + "/recipe.json") << "[1]";
  EXPECT_NE(testing::ErrorText([&] { LoadRun(base); }).find("must hold a JSON object"), std::string::npos);
  fs::remove(base + "/recipe.json");
  EXPECT_NE(testing::ErrorText([&] { WriteReport(base, base + "/no/such/dir/r.html"); }).find("cannot write the report"),
            std::string::npos);
}

TEST(Report, MinimalRunWithoutRecipeOrTrace) {
  std::string dir = testing::MakeTempDir("report");
  {
    MetricsWriter w(dir + "/metrics.jsonl");
    w.Write({{"step", 0}, {"reward_mean", 0.25}, {"time_s", 1.0}});
    w.Write({{"step", 1}, {"reward_mean", 0.5}, {"time_s", 2.0}});
  }
  std::string html = RenderReport(LoadRun(dir));
  EXPECT_NE(html.find("no recipe.json in the run directory"), std::string::npos);
  EXPECT_NE(html.find("no trace recorded"), std::string::npos);
  EXPECT_NE(html.find("class=\"series\" data-name=\"reward_mean\""), std::string::npos);
  EXPECT_EQ(html.find("class=\"band\""), std::string::npos);  // no reward_std: no band
  EXPECT_NE(html.find("not recorded by this run (metrics staleness_mean, staleness_max are absent)"), std::string::npos);
}

TEST(Report, EpisodesShowTurnsAndToolLatencyOnlyWhenRecorded) {
  std::string dir = testing::MakeTempDir("report");
  {
    MetricsWriter w(dir + "/metrics.jsonl");
    w.Write({{"step", 0}, {"reward_mean", 0.25}, {"turns_mean", 1.5}, {"tool_s_mean", 0.002}, {"tool_s_max", 0.004}});
    w.Write({{"step", 1}, {"reward_mean", 0.5}, {"turns_mean", 2.5}, {"tool_s_mean", 0.004}, {"tool_s_max", 0.010}});
  }
  std::ofstream(dir + "/recipe.json") << json{{"env", {{"name", "calculator"}, {"max_turns", 3}}}}.dump();
  std::string html = RenderReport(LoadRun(dir));
  const std::string section = Between(html, "<h2 id=\"episodes\">", "</div>\n");
  for (const char* key : {"turns_mean", "tool_s_mean", "tool_s_max"})
    EXPECT_NE(section.find(std::string("class=\"series\" data-name=\"") + key + "\""), std::string::npos) << key;
  // The summary table: the environment, the mean of the steps' turns and latencies, the slowest step.
  EXPECT_NE(html.find("calculator, ≤ 3 turns"), std::string::npos);
  EXPECT_NE(html.find("<td>" + svg::FormatNumber(2.0) + "</td>"), std::string::npos);
  EXPECT_NE(html.find(svg::FormatNumber(3.0) + " ms / " + svg::FormatNumber(10.0) + " ms"), std::string::npos);
  // A single-turn run has no episode section.
  std::string plain = RenderReport(LoadRun(CopyFixtureRun()));
  EXPECT_EQ(plain.find("id=\"episodes\""), std::string::npos);
}

TEST(Report, ResumedStepsKeepTheRerunAndPhasesShareOneAxis) {
  std::string dir = testing::MakeTempDir("report");
  {
    MetricsWriter w(dir + "/metrics.jsonl");
    for (int s = 0; s < 3; ++s) w.Write({{"step", s}, {"phase", "sft"}, {"loss", 2.0 - s}});
    for (int s = 0; s < 3; ++s) w.Write({{"step", s}, {"phase", "rl"}, {"reward_mean", 0.1 * s}});
    w.Write({{"step", 1}, {"phase", "rl"}, {"reward_mean", 0.9}});  // rerun after a resume
  }
  RunData run = LoadRun(dir);
  ASSERT_EQ(run.rows.size(), 6u);
  EXPECT_EQ(run.rows[4]["reward_mean"], 0.9);
  report::Columns c(run.rows);
  EXPECT_EQ(c.x(), (std::vector<double>{0, 1, 2, 3, 4, 5}));
  ASSERT_EQ(c.PhaseShades().size(), 1u);
  EXPECT_EQ(c.PhaseShades()[0].x0, -0.5);
  EXPECT_EQ(c.PhaseShades()[0].x1, 2.5);
}

TEST(Svg, NiceTicksAndNumbers) {
  EXPECT_EQ(svg::NiceTicks(0, 1, 5), (std::vector<double>{0, 0.2, 0.4, 0.6000000000000001, 0.8, 1}));
  EXPECT_EQ(svg::NiceTicks(3, 97, 5), (std::vector<double>{20, 40, 60, 80}));
  EXPECT_EQ(svg::NiceTicks(-0.3, 0.3, 3), (std::vector<double>{-0.2, 0, 0.2}));
  EXPECT_EQ(svg::FormatNumber(0.125), "0.125");
  EXPECT_EQ(svg::FormatNumber(12345), "12.3k");
  EXPECT_EQ(svg::FormatNumber(4.5e7), "45M");
  EXPECT_EQ(svg::FormatNumber(1e-13), "0");
  EXPECT_EQ(svg::Escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
}

TEST(Svg, NaNBreaksTheLine) {
  svg::Series s{"y", "#000", svg::Series::Kind::kLine, {0, 1, 2, 3, 4}, {1, 2, NAN, 3, 4}, {}, {}};
  std::string chart = svg::LineChart({}, {s});
  std::string d = Between(chart, "class=\"series\"", "/>");
  EXPECT_EQ(Count(d, "M"), 2u);
  EXPECT_EQ(Count(d, "L"), 2u);
  // Axes carry tick labels on both sides.
  EXPECT_GE(Count(chart, "class=\"tick\""), 4u);
}

}  // namespace
}  // namespace llamarl
