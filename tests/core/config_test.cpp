// ConfigReader, Range, DescribeJson, ApplyOverride and ReadJsonFile (core/config.h): every field type,
// ranges, required fields, unknown keys, and the full path of a field in every error message.
#include "core/check.h"
#include "core/config.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>

namespace llamarl {
namespace {

// Runs `body`, expecting llamarl::Error with exactly `message`.
template <typename Body>
void ExpectError(Body body, const std::string& message) {
  try {
    body();
    ADD_FAILURE() << "expected the error: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), message);
  }
}

// Runs `body`, expecting llamarl::Error whose message starts with `prefix` and ends with `suffix`.
template <typename Body>
void ExpectErrorAround(Body body, const std::string& prefix, const std::string& suffix) {
  try {
    body();
    ADD_FAILURE() << "expected an error starting with: " << prefix;
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_EQ(message.rfind(prefix, 0), 0u) << message;
    EXPECT_TRUE(message.size() >= suffix.size() && message.substr(message.size() - suffix.size()) == suffix) << message;
  }
}

TEST(RangeTest, ContainsRespectsOpenAndClosedEnds) {
  Range r = Range::OpenClosed(0, 1);
  EXPECT_FALSE(r.Contains(0));
  EXPECT_TRUE(r.Contains(1e-9));
  EXPECT_TRUE(r.Contains(1));
  EXPECT_FALSE(r.Contains(1.5));
  EXPECT_FALSE(r.Contains(std::nan("")));
  EXPECT_TRUE(Range::ClosedOpen(0, 1).Contains(0));
  EXPECT_FALSE(Range::ClosedOpen(0, 1).Contains(1));
  EXPECT_FALSE(Range::Positive().Contains(0));
  EXPECT_TRUE(Range::AtLeast(-2).Contains(-2));
  EXPECT_TRUE(Range{}.Contains(-1e300));
}

TEST(RangeTest, PrintsIntervalNotation) {
  EXPECT_EQ(Range::OpenClosed(0, 1).ToString(), "(0, 1]");
  EXPECT_EQ(Range::Closed(1, 8).ToString(), "[1, 8]");
  EXPECT_EQ(Range::Open(-0.5, 2).ToString(), "(-0.5, 2)");
  EXPECT_EQ(Range::AtLeast(1).ToString(), "[1, inf)");
  EXPECT_EQ(Range::Positive().ToString(), "(0, inf)");
  EXPECT_EQ(Range{}.ToString(), "(-inf, inf)");
}

TEST(ConfigReaderTest, ReadsEveryTypeAndKeepsDefaultsForAbsentOrNullKeys) {
  Json j = Json::parse(R"({"flag": true, "n": 3, "big": 5000000000, "lr": 0.5, "scale": 2, "name": "grpo",
                           "ids": [1, 2], "eos": 7, "tags": ["a", "b"], "unset": null})");
  bool flag = false;
  int n = 0, unset = 42, absent = 9;
  int64_t big = 0;
  double lr = 0;
  float scale = 0;
  std::string name;
  std::vector<int64_t> ids, eos;
  std::vector<std::string> tags;
  ConfigReader r(j, "trainer");
  r.Read("flag", &flag);
  r.Read("n", &n, Range::Closed(1, 8));
  r.Read("big", &big);
  r.Read("lr", &lr, Range::OpenClosed(0, 1));
  r.Read("scale", &scale);
  r.Read("name", &name, {"grpo", "ppo"});
  r.Read("ids", &ids);
  r.Read("eos", &eos);  // a single integer where a list is expected
  r.Read("tags", &tags);
  r.Read("unset", &unset);
  r.Read("absent", &absent);
  r.Finish();
  EXPECT_TRUE(flag);
  EXPECT_EQ(n, 3);
  EXPECT_EQ(big, 5000000000);
  EXPECT_EQ(lr, 0.5);
  EXPECT_EQ(scale, 2.0f);
  EXPECT_EQ(name, "grpo");
  EXPECT_EQ(ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(eos, (std::vector<int64_t>{7}));
  EXPECT_EQ(tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(unset, 42);
  EXPECT_EQ(absent, 9);
}

TEST(ConfigReaderTest, IntegersAcceptIntegralFloatsOnly) {
  Json j = Json::parse(R"({"whole": 3.0, "half": 3.5, "huge": 1e30})");
  ConfigReader r(j, "g");
  int whole = 0, half = 0;
  int64_t huge = 0;
  r.Read("whole", &whole);
  EXPECT_EQ(whole, 3);
  ExpectErrorAround([&] { r.Read("half", &half); }, "g.half: expected an integer", ", got 3.5");
  ExpectError([&] { r.Read("huge", &huge); }, "g.huge: expected an integer, got 1e+30");
}

TEST(ConfigReaderTest, ErrorsNameThePathTheExpectationAndTheValue) {
  Json j = Json::parse(R"({"flag": 1, "n": 9, "lr": 1.5, "word": 3, "mode": "sgd", "ids": [1, "x"],
                           "tags": "a", "i32": 3000000000, "u64": 18446744073709551615})");
  ConfigReader r(j, "generator.sampling");
  bool flag;
  int n, i32;
  int64_t u64;
  double lr;
  std::string word, mode;
  std::vector<int64_t> ids;
  std::vector<std::string> tags;
  ExpectError([&] { r.Read("flag", &flag); }, "generator.sampling.flag: expected true or false, got 1");
  ExpectError([&] { r.Read("n", &n, Range::Closed(1, 8)); }, "generator.sampling.n: expected an integer in [1, 8], got 9");
  ExpectError([&] { r.Read("lr", &lr, Range::OpenClosed(0, 1)); },
              "generator.sampling.lr: expected a number in (0, 1], got 1.5");
  ExpectError([&] { r.Read("word", &word); }, "generator.sampling.word: expected a string, got 3");
  ExpectError([&] { r.Read("mode", &mode, {"adamw", "sgd-momentum"}); },
              "generator.sampling.mode: expected one of 'adamw', 'sgd-momentum', got \"sgd\"");
  ExpectError([&] { r.Read("ids", &ids); }, "generator.sampling.ids[1]: expected an integer, got \"x\"");
  ExpectError([&] { r.Read("tags", &tags); }, "generator.sampling.tags: expected a list of strings, got \"a\"");
  // An int field is bounded by int's range even without an explicit one.
  ExpectErrorAround([&] { r.Read("i32", &i32); }, "generator.sampling.i32: expected an integer in [",
                    "], got 3000000000");
  ExpectError([&] { r.Read("u64", &u64); }, "generator.sampling.u64: expected an integer, got 18446744073709551615");
}

TEST(ConfigReaderTest, RequiredFieldsMustBePresent) {
  Json j = Json::parse(R"({"top_k": 5})");
  ConfigReader r(j, "gen");
  int top_k = 0;
  double top_p = 1;
  r.Require("top_k", &top_k, Range::AtLeast(1));
  EXPECT_EQ(top_k, 5);
  ExpectError([&] { r.Require("top_p", &top_p, Range::OpenClosed(0, 1)); }, "gen.top_p: missing (a required field)");
}

TEST(ConfigReaderTest, FinishListsTheKnownKeysForAnUnknownOne) {
  Json j = Json::parse(R"({"top_k": 5, "topp": 0.9})");
  ConfigReader r(j, "gen");
  int top_k = 0;
  double top_p = 1;
  r.Read("top_k", &top_k);
  r.Read("top_p", &top_p);
  ExpectError([&] { r.Finish(); }, "gen: unknown key 'topp'; known: top_k, top_p");
  ConfigReader root(Json::parse(R"({"x": 1})"), "");
  ExpectError([&] { root.Finish(); }, "config: unknown key 'x'; known: (none)");
}

TEST(ConfigReaderTest, ChildReadersCarryTheNestedPath) {
  Json j = Json::parse(R"({"generator": {"sampling": {"top_p": 2}}, "trainer": 3})");
  ConfigReader root(j, "");
  ConfigReader generator = root.Child("generator");
  EXPECT_EQ(generator.path(), "generator");
  ConfigReader sampling = generator.Child("sampling");
  EXPECT_EQ(sampling.PathOf("top_p"), "generator.sampling.top_p");
  double top_p = 1;
  ExpectError([&] { sampling.Read("top_p", &top_p, Range::OpenClosed(0, 1)); },
              "generator.sampling.top_p: expected a number in (0, 1], got 2");
  ConfigReader absent = root.Child("reward");  // all defaults
  EXPECT_FALSE(absent.Has("anything"));
  absent.Finish();
  ExpectError([&] { root.Child("trainer"); }, "trainer: expected an object, got 3");
  root.Finish();  // generator, reward and trainer were all read
}

TEST(ConfigReaderTest, RawValuesAreMarkedAsRead) {
  Json j = Json::parse(R"({"schedule": {"kind": "cosine"}, "nothing": null})");
  ConfigReader r(j, "trainer");
  EXPECT_TRUE(r.Has("schedule"));
  EXPECT_FALSE(r.Has("nothing"));
  EXPECT_EQ(r.Raw("schedule")["kind"], "cosine");
  EXPECT_TRUE(r.Raw("missing").is_null());
  r.Raw("schedule");  // read twice (TrainerConfig's critic reads optimizer again), listed once
  ExpectError([&] { r.Finish(); }, "trainer: unknown key 'nothing'; known: schedule, missing");
}

TEST(ConfigReaderTest, TheConfigMustBeAnObject) {
  ExpectError([] { ConfigReader(Json::parse("[1, 2]"), ""); }, "config: expected an object, got array [1,2]");
  ConfigReader from_null(Json(), "x");  // null reads as an empty object
  from_null.Finish();
}

TEST(DescribeJsonTest, ShortensLongValuesAndNamesContainers) {
  EXPECT_EQ(DescribeJson(Json()), "null");
  EXPECT_EQ(DescribeJson(Json("abc")), "\"abc\"");
  EXPECT_EQ(DescribeJson(Json(2.5)), "2.5");
  EXPECT_EQ(DescribeJson(Json::parse(R"({"a": 1})")), "object {\"a\":1}");
  std::string described = DescribeJson(Json(std::string(200, 'x')));
  EXPECT_EQ(described.size(), 80u);
  EXPECT_EQ(described.substr(77), "...");
}

TEST(ApplyOverrideTest, SetsNestedValuesParsedAsJsonOrAsBareStrings) {
  Json root = Json::parse(R"({"trainer": {"lr": 1e-5, "name": "x"}})");
  ApplyOverride(root, "trainer.lr=3e-6");
  ApplyOverride(root, "trainer.name=grpo run");
  ApplyOverride(root, "trainer.quoted=\"5\"");
  ApplyOverride(root, "generator.sampling.top_k=[1,2]");
  ApplyOverride(root, "generator.enabled=false");
  ApplyOverride(root, "empty=");
  EXPECT_EQ(root["trainer"]["lr"], 3e-6);
  EXPECT_EQ(root["trainer"]["name"], "grpo run");
  EXPECT_EQ(root["trainer"]["quoted"], "5");
  EXPECT_EQ(root["generator"]["sampling"]["top_k"], Json::parse("[1, 2]"));
  EXPECT_EQ(root["generator"]["enabled"], false);
  EXPECT_EQ(root["empty"], "");
}

TEST(ApplyOverrideTest, RejectsMalformedAssignments) {
  Json root = Json::parse(R"({"trainer": 3})");
  ExpectError([&] { ApplyOverride(root, "trainer.lr"); },
              "--set expects key=value (for example trainer.lr=1e-5), got 'trainer.lr'");
  ExpectError([&] { ApplyOverride(root, "=3"); }, "--set expects key=value (for example trainer.lr=1e-5), got '=3'");
  ExpectError([&] { ApplyOverride(root, "a..b=1"); }, "--set a..b=1: empty key segment in 'a..b'");
  ExpectError([&] { ApplyOverride(root, "trainer.lr=1"); }, "--set trainer.lr=1: 'trainer' is not an object");
}

TEST(ReadJsonFileTest, ReadsAFileAndNamesItInErrors) {
  std::string dir = llamarl::testing::MakeTempDir("config");
  std::ofstream(dir + "/good.json") << R"({"a": [1, 2]})";
  std::ofstream(dir + "/bad.json") << R"({"a": )";
  EXPECT_EQ(ReadJsonFile(dir + "/good.json")["a"][1], 2);
  ExpectError([&] { ReadJsonFile(dir + "/missing.json"); }, "cannot open " + dir + "/missing.json");
  try {
    ReadJsonFile(dir + "/bad.json");
    ADD_FAILURE() << "invalid JSON was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(dir + "/bad.json: invalid JSON: ", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace llamarl
