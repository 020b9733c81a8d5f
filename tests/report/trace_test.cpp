#include "report/trace.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>
#include <thread>

#include "core/check.h"
#include "report/jsonl_file.h"
#include "tests/report/file_text.h"
#include "tests/reward/error_text.h"
#include "tests/test_util.h"

namespace llamarl {
namespace {

using nlohmann::json;

json ParseFile(const std::string& path) {
  std::ifstream in(path);
  return json::parse(in);  // throws when the merged file is not valid JSON
}

std::vector<json> OfPhase(const std::vector<json>& events, const std::string& ph) {
  std::vector<json> out;
  for (const auto& e : events)
    if (e["ph"] == ph) out.push_back(e);
  return out;
}

TEST(Tracer, SpanIsACompleteEventOnTheSharedWallClock) {
  std::string dir = testing::MakeTempDir("trace");
  int64_t before = Tracer::NowMicros();
  {
    Tracer tracer(dir, 3, "generator");
    auto span = tracer.Scope("generate");
    span.Arg("tokens", 128).Arg("version", 4);
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  }
  int64_t after = Tracer::NowMicros();
  JsonlContents lines = ReadJsonl(dir + "/trace/rank_3.jsonl", "trace");
  ASSERT_EQ(lines.rows.size(), 3u);
  json expected_meta = {{"name", "process_name"}, {"ph", "M"}, {"pid", 3}, {"tid", 0},
                        {"args", {{"name", "rank 3 (generator)"}}}};
  EXPECT_EQ(lines.rows[0], expected_meta);
  const json& x = lines.rows[2];
  EXPECT_EQ(x["name"], "generate");
  EXPECT_EQ(x["ph"], "X");
  EXPECT_EQ(x["cat"], "generator");
  EXPECT_EQ(x["pid"], 3);
  EXPECT_EQ(x["tid"], 0);
  EXPECT_EQ(x["args"], json({{"tokens", 128}, {"version", 4}}));
  int64_t ts = x["ts"], dur = x["dur"];
  EXPECT_GE(ts, before);
  EXPECT_GE(dur, 30000);
  EXPECT_LE(ts + dur, after);
  EXPECT_FALSE(x["args"].contains("error"));
}

TEST(Tracer, SpanLeftByAnExceptionIsMarked) {
  std::string dir = testing::MakeTempDir("trace");
  Tracer tracer(dir, 0, "trainer");
  try {
    auto span = tracer.Scope("train");
    throw std::runtime_error("boom");
  } catch (const std::runtime_error&) {
  }
  {
    auto span = tracer.Scope("sync");
    span.End();
    span.End();  // idempotent: one event
  }
  std::vector<json> x = OfPhase(ReadJsonl(tracer.path(), "trace").rows, "X");
  ASSERT_EQ(x.size(), 2u);
  EXPECT_EQ(x[0]["name"], "train");
  EXPECT_EQ(x[0]["args"]["error"], true);
  EXPECT_EQ(x[1]["name"], "sync");
  EXPECT_FALSE(x[1].contains("args"));
}

TEST(Tracer, ConcurrentSpansNeverInterleaveLines) {
  std::string dir = testing::MakeTempDir("trace");
  Tracer tracer(dir, 1, "colocated");
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&tracer, t] {
      for (int i = 0; i < 200; ++i) tracer.Scope("wait").Arg("thread", t).Arg("padding", std::string(200, 'x'));
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(OfPhase(ReadJsonl(tracer.path(), "trace").rows, "X").size(), 800u);
}

TEST(Tracer, BadArgumentsAreErrors) {
  std::string dir = testing::MakeTempDir("trace");
  EXPECT_NE(testing::ErrorText([&] { Tracer(dir, -1, "trainer"); }).find("got -1"), std::string::npos);
  EXPECT_NE(testing::ErrorText([&] { Tracer(dir, 0, ""); }).find("role"), std::string::npos);
  Tracer tracer(dir, 0, "trainer");
  EXPECT_NE(testing::ErrorText([&] { tracer.Complete("train", 0, -5); }).find("got -5"), std::string::npos);
}

TEST(MergeTrace, WritesAValidChromeTraceFromAllRanks) {
  std::string dir = testing::MakeTempDir("trace");
  {
    Tracer trainer(dir, 0, "trainer");
    Tracer generator(dir, 1, "generator");
    generator.Complete("generate", 1000, 500, {{"tokens", 64}});
    trainer.Complete("wait", 900, 700);
    trainer.Complete("train", 1600, 300);
    generator.Instant("weights_applied", {{"version", 1}});
    generator.Complete("sync", 1650, 100);
  }
  {
    Tracer trainer_again(dir, 0, "trainer");  // a resumed run re-announces its lane
    trainer_again.Complete("train", 2000, 100);
  }
  MergeTrace(dir);
  EXPECT_FALSE(std::filesystem::exists(dir + "/trace.json.tmp"));
  json trace = ParseFile(dir + "/trace.json");
  EXPECT_EQ(trace["displayTimeUnit"], "ms");
  std::vector<json> events = trace["traceEvents"];
  // Metadata first, one per (rank, name), then the timed events in time order.
  std::vector<json> meta = OfPhase(events, "M");
  ASSERT_EQ(meta.size(), 4u);
  for (size_t i = 0; i < meta.size(); ++i) EXPECT_EQ(events[i]["ph"], "M");
  EXPECT_EQ(meta[0]["args"]["name"], "rank 0 (trainer)");
  EXPECT_EQ(meta[2]["args"]["name"], "rank 1 (generator)");
  std::vector<std::string> names;
  std::vector<int64_t> starts;
  for (const auto& e : events) {
    if (e["ph"] == "M" || e["ph"] == "i") continue;
    names.push_back(e["name"]);
    starts.push_back(e["ts"]);
  }
  EXPECT_EQ(names, (std::vector<std::string>{"wait", "generate", "train", "sync", "train"}));
  EXPECT_EQ(starts, (std::vector<int64_t>{900, 1000, 1600, 1650, 2000}));
  EXPECT_EQ(OfPhase(events, "i").size(), 1u);
  EXPECT_EQ(ReadTraceJson(dir + "/trace.json"), events);
}

TEST(MergeTrace, ToleratesTornLastLinesButNotCorruptMiddles) {
  std::string dir = testing::MakeTempDir("trace");
  {
    Tracer tracer(dir, 0, "trainer");
    tracer.Complete("train", 10, 5);
  }
  std::string rank0 = dir + "/trace/rank_0.jsonl";
  std::ofstream(rank0, std::ios::app) << R"({"name":"sync","ph":"X","ts":2)";
  MergeTrace(dir);
  EXPECT_EQ(OfPhase(ParseFile(dir + "/trace.json")["traceEvents"], "X").size(), 1u);

  std::ofstream(dir + "/trace/rank_1.jsonl") << "{\"name\":\"x\"\n{\"name\":\"train\",\"ph\":\"X\",\"ts\":1,\"dur\":1,\"pid\":1}\n";
  std::string error = testing::ErrorText([&] { MergeTrace(dir); });
  EXPECT_NE(error.find("rank_1.jsonl:1 is not valid JSON"), std::string::npos) << error;

  std::ofstream(dir + "/trace/rank_1.jsonl") << "{\"name\":\"train\",\"ph\":\"X\",\"ts\":1,\"pid\":1}\n";
  error = testing::ErrorText([&] { MergeTrace(dir); });
  EXPECT_NE(error.find("rank_1.jsonl:1 is a complete event and needs a numeric \"dur\""), std::string::npos) << error;
}

TEST(MergeTrace, NoRankFilesIsAClearError) {
  std::string dir = testing::MakeTempDir("trace");
  std::string error = testing::ErrorText([&] { MergeTrace(dir); });
  EXPECT_NE(error.find("no per-rank trace files in '" + dir + "/trace'"), std::string::npos) << error;
  std::filesystem::create_directories(dir + "/trace");
  std::ofstream(dir + "/trace/notes.txt") << "not a rank file";
  EXPECT_TRUE(TraceRankFiles(dir).empty());
}

TEST(ReadTraceJson, RejectsWhatIsNotAChromeTrace) {
  std::string dir = testing::MakeTempDir("trace");
  std::ofstream(dir + "/a.json") << "{\"events\": []}";
  EXPECT_NE(testing::ErrorText([&] { ReadTraceJson(dir + "/a.json"); }).find("\"traceEvents\" array"), std::string::npos);
  std::ofstream(dir + "/b.json") << "{\"traceEvents\": [";
  EXPECT_NE(testing::ErrorText([&] { ReadTraceJson(dir + "/b.json"); }).find("is not valid JSON"), std::string::npos);
}

}  // namespace
}  // namespace llamarl
