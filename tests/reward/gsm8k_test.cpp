#include "reward/gsm8k.h"

#include <gtest/gtest.h>

#include <fstream>

#include "core/check.h"
#include "tests/test_util.h"

namespace llamarl::reward {
namespace {

double ScoreOne(Gsm8kReward& reward, const std::string& response, const Json& answer, Json* info = nullptr) {
  RewardResult r = reward.Score({{"q", response, answer}});
  EXPECT_EQ(r.scores.size(), 1u);
  EXPECT_EQ(r.info.size(), 1u);
  if (info) *info = r.info[0];
  return r.scores[0];
}

TEST(Gsm8kExtract, PrefersExplicitMarkersOverTheLastNumber) {
  auto a = ExtractFinalAnswer("so #### 18 and then 99", true);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->number.value, 18);
  EXPECT_EQ(a->source, "####");
  a = ExtractFinalAnswer("We get \\boxed{42} after 7 steps", true);
  EXPECT_EQ(a->number.value, 42);
  EXPECT_EQ(a->source, "boxed");
  a = ExtractFinalAnswer("\\boxed{\\frac{3}{4}} in 2 steps", true);
  EXPECT_DOUBLE_EQ(a->number.value, 0.75);
  a = ExtractFinalAnswer("\\boxed{\\$1{,}234} total of 3", true);
  EXPECT_EQ(a->number.value, 1234);
  a = ExtractFinalAnswer("The answer is $70,000. It took 3 days.", true);
  EXPECT_EQ(a->number.value, 70000);
  EXPECT_EQ(a->source, "answer_is");
  a = ExtractFinalAnswer("Answer: -3\nchecked with 5", true);
  EXPECT_EQ(a->number.value, -3);
  a = ExtractFinalAnswer("2 + 3 = 5, then 5 * 2 = 10.", true);
  EXPECT_EQ(a->number.value, 10);
  EXPECT_EQ(a->source, "last_number");
  EXPECT_FALSE(ExtractFinalAnswer("2 + 3 = 5", false).has_value());
  EXPECT_FALSE(ExtractFinalAnswer("no digits at all", true).has_value());
}

TEST(Gsm8kReference, ReadsHashesNumbersAndRejectsGarbage) {
  EXPECT_EQ(ParseGsm8kReference("He pays 2*3=<<2*3=6>>6\n#### 6", "x"), 6);
  EXPECT_EQ(ParseGsm8kReference("#### 1,234", "x"), 1234);
  EXPECT_EQ(ParseGsm8kReference("-5", "x"), -5);
  EXPECT_EQ(ParseGsm8kReference(Json(2.5), "x"), 2.5);
  try {
    ParseGsm8kReference("worked solution\n#### none", "item 4");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("item 4"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("after '####'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ParseGsm8kReference(Json::array({1}), "item 0"), Error);
}

TEST(Gsm8kReward, TrickyFormatsScoreAsTheSameNumber) {
  Gsm8kReward reward(Gsm8kConfig{});
  EXPECT_EQ(ScoreOne(reward, "She makes $1,234.50 in total.", "#### 1234.5"), 1.0);
  EXPECT_EQ(ScoreOne(reward, "It is 5.00", "#### 5"), 1.0);
  EXPECT_EQ(ScoreOne(reward, "It drops by -3", "#### -3"), 1.0);
  EXPECT_EQ(ScoreOne(reward, "So the answer is 3.", "#### 3"), 1.0);
  EXPECT_EQ(ScoreOne(reward, "Half: 1/2", "#### 0.5"), 1.0);
  EXPECT_EQ(ScoreOne(reward, "It is 4", "#### 5"), 0.0);
  Json info;
  ScoreOne(reward, "#### 7\nbut really 8", "#### 7", &info);
  EXPECT_EQ(info["parsed"], "7");
  EXPECT_EQ(info["source"], "####");
  EXPECT_EQ(info["reference"], "7");
  EXPECT_EQ(info["correct"], true);
}

TEST(Gsm8kReward, ConfiguredScoresAndRequiredMarker) {
  Gsm8kConfig c = Gsm8kConfig::FromJson({{"correct_score", 2.0},
                                         {"incorrect_score", -1.0},
                                         {"no_answer_score", -2.0},
                                         {"require_marker", true}},
                                        "reward.config");
  Gsm8kReward reward(c);
  EXPECT_EQ(ScoreOne(reward, "#### 9", "#### 9"), 2.0);
  EXPECT_EQ(ScoreOne(reward, "#### 8", "#### 9"), -1.0);
  EXPECT_EQ(ScoreOne(reward, "I think 9", "#### 9"), -2.0);  // no marker: not an answer
  EXPECT_EQ(ScoreOne(reward, "nothing", "#### 9"), -2.0);
}

TEST(Gsm8kConfig, RejectsUnknownKeysAndBadValues) {
  try {
    Gsm8kConfig::FromJson({{"corect_score", 1.0}}, "reward.config");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'corect_score'"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Gsm8kConfig::FromJson({{"relative_tolerance", -1}}, "r"), Error);
  EXPECT_THROW(Gsm8kConfig::FromJson({{"require_marker", "yes"}}, "r"), Error);
}

// Every GSM8K test solution must score as correct against itself, through the "#### N" line, and
// mostly through its last number once that line is removed.
TEST(Gsm8kReward, RealTestSetSolutionsScoreAsCorrect) {
  LLAMARL_REQUIRE_SHARED_DATA(path, "gsm8k/test.jsonl");
  std::ifstream in(path);
  std::vector<RewardItem> with_hashes, without_hashes;
  for (std::string line; std::getline(in, line);) {
    Json row = Json::parse(line);
    std::string answer = row["answer"].get<std::string>();
    std::string question = row["question"].get<std::string>();
    with_hashes.push_back({question, answer, answer});
    size_t hashes = answer.rfind("####");
    ASSERT_NE(hashes, std::string::npos) << line;
    without_hashes.push_back({question, answer.substr(0, hashes), answer});
  }
  ASSERT_EQ(with_hashes.size(), 1319u);
  Gsm8kReward reward(Gsm8kConfig{});
  RewardResult exact = reward.Score(with_hashes);
  for (size_t i = 0; i < exact.scores.size(); ++i) {
    ASSERT_EQ(exact.scores[i], 1.0) << "item " << i << ": " << exact.info[i].dump();
  }
  RewardResult last = reward.Score(without_hashes);
  double correct = 0;
  for (double s : last.scores) correct += s;
  double rate = correct / double(last.scores.size());
  std::printf("worked solutions without '####': last number correct for %.1f%% of %zu\n", 100 * rate,
              last.scores.size());
  EXPECT_GT(rate, 0.9);
}

}  // namespace
}  // namespace llamarl::reward
