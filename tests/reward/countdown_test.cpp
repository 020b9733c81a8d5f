#include "reward/countdown.h"

#include <gtest/gtest.h>

#include "core/check.h"
#include "reward/expression.h"

namespace llamarl::reward {
namespace {

std::string Value(const std::string& text) {
  EvaluatedExpression e = EvaluateExpression(text);
  return e.value ? e.value->ToString() : "error: " + e.error;
}

TEST(Expression, PrecedenceAssociativityAndParentheses) {
  EXPECT_EQ(Value("2 + 3 * 4"), "14");
  EXPECT_EQ(Value("(2 + 3) * 4"), "20");
  EXPECT_EQ(Value("10 - 4 - 3"), "3");  // left associative
  EXPECT_EQ(Value("100 / 10 / 5"), "2");
  EXPECT_EQ(Value("7 / 2"), "7/2");  // exact, not 3 or 3.5
  EXPECT_EQ(Value("7 / 2 * 2"), "7");
  EXPECT_EQ(Value("1 / 3 + 1 / 6"), "1/2");
  EXPECT_EQ(Value("2 - 5"), "-3");
  EXPECT_EQ(Value("((((8))))"), "8");
}

TEST(Expression, ErrorsAreValuesNamingThePosition) {
  EXPECT_EQ(Value("4 / (2 - 2)"), "error: division by zero");
  EXPECT_EQ(Value("2 +"), "error: unexpected end at 3");
  EXPECT_EQ(Value("(2 + 3"), "error: expected ')' at 6");
  EXPECT_EQ(Value("2 + 3)"), "error: unexpected ')' at 5");
  EXPECT_EQ(Value("-2 + 3"), "error: unexpected '-' at 0");  // no unary minus
  EXPECT_EQ(Value("2 ** 3"), "error: unexpected '*' at 3");
  EXPECT_EQ(Value("import os"), "error: unexpected 'i' at 0");
  EXPECT_EQ(Value(""), "error: unexpected end at 0");
  EXPECT_EQ(Value("99999999999999999999"), "error: number too large");
  EXPECT_EQ(Value("4294967296 * 4294967296 * 4294967296"), "error: overflow");
  EXPECT_EQ(Value(std::string(100, '(') + "1" + std::string(100, ')')),
            "error: parentheses nested too deeply at 64");
}

TEST(Expression, OperandsInOrder) {
  EXPECT_EQ(EvaluateExpression("(25 - 5) * 4 + 3").operands, (std::vector<int64_t>{25, 5, 4, 3}));
}

CountdownTask Task(std::vector<int64_t> numbers, int64_t target) { return {std::move(numbers), target}; }

TEST(CheckCountdown, UsedAtMostOnceOrExactlyOnce) {
  CountdownTask task = Task({25, 5, 4, 3}, 80);
  CountdownVerdict v = CheckCountdown("(25 - 5) * 4", task, false);
  EXPECT_TRUE(v.valid);
  EXPECT_TRUE(v.correct);
  v = CheckCountdown("(25 - 5) * 4", task, true);
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.error, "number 3 is not used");
  v = CheckCountdown("(25 - 5) * 4 * 3 / 3", task, false);
  EXPECT_FALSE(v.valid);
  EXPECT_EQ(v.error, "number 3 is used more often than given");
  v = CheckCountdown("20 * 4", task, false);
  EXPECT_EQ(v.error, "number 20 is not among the given numbers");
  v = CheckCountdown("25 * 4 - 5 * 3", task, true);
  EXPECT_TRUE(v.valid);
  EXPECT_FALSE(v.correct);
  EXPECT_EQ(v.value, "85");
}

TEST(CheckCountdown, RepeatedGivenNumbersMayBeUsedAsOftenAsGiven) {
  CountdownTask task = Task({5, 5, 2}, 12);
  EXPECT_TRUE(CheckCountdown("5 + 5 + 2", task, true).correct);
  EXPECT_FALSE(CheckCountdown("5 + 5 + 5 - 2 - 1", task, false).valid);
}

TEST(CheckCountdown, UnicodeOperatorsAndEqualsTail) {
  CountdownTask task = Task({6, 3, 2}, 4);
  EXPECT_TRUE(CheckCountdown("6 \xC3\xB7 3 \xC3\x97 2 = 4", task, true).correct);
  EXPECT_TRUE(CheckCountdown("6 \xE2\x88\x92 2", task, false).correct);
}

TEST(CountdownReward, ScoresCorrectFormatAndIncorrect) {
  CountdownReward reward(CountdownConfig::FromJson({{"format_score", 0.25}}, "reward.config"));
  Json task = {{"numbers", {3, 7, 25}}, {"target", 28}};
  RewardResult r = reward.Score({
      {"p", "think... <answer>25 + 3</answer>", task},
      {"p", "<answer>25 + 7</answer>", task},
      {"p", "<answer>25 + 25</answer>", task},
      {"p", "<answer>oops</answer> then\n25 + 3", task},  // the tag wins over the last line
      {"p", "I try\n3 + 25\n", task},                     // no tag: the last line
      {"p", "<answer>28 / (7 - 7)</answer>", task},
  });
  EXPECT_EQ(r.scores, (std::vector<double>{1.0, 0.25, 0.0, 0.0, 1.0, 0.0}));
  EXPECT_EQ(r.info[0]["expression"], "25 + 3");
  EXPECT_EQ(r.info[1]["value"], "32");
  EXPECT_EQ(r.info[5]["error"], "division by zero");
}

TEST(CountdownReward, RequiredPatternAndExactlyOnce) {
  CountdownReward reward(CountdownConfig::FromJson(
      {{"answer_pattern_required", true}, {"use_all_numbers", true}, {"answer_pattern", "Answer: (.*)$"}},
      "r"));
  Json task = {{"numbers", {3, 7, 25}}, {"target", 28}};
  RewardResult r = reward.Score({{"p", "3 + 25", task},
                                 {"p", "Answer: 25 + 3", task},      // 7 unused
                                 {"p", "Answer: 25 + 7 - 3", task},  // valid, 29
                                 {"p", "Answer: 25 + 3 + 7 - 7", task},
                                 {"p", "Answer: 25 + 7 - 3 - 1", task},
                                 {"p", "Answer: (25 - 7) / 3 * 7 - 14", task},
                                 {"p", "Answer: 3 * 7 + 25", Json{{"numbers", {3, 7, 25}}, {"target", 46}}}});
  EXPECT_EQ(r.scores, (std::vector<double>{0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 1.0}));
}

TEST(CountdownReward, MalformedTaskAndPatternAreUserErrors) {
  CountdownReward reward(CountdownConfig{});
  try {
    reward.Score({{"p", "1 + 2", Json{{"numbers", {1, 2}}}}});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("item 0: countdown expects"), std::string::npos) << e.what();
  }
  EXPECT_THROW(reward.Score({{"p", "1", Json{{"numbers", {1.5}}, {"target", 1}}}}), Error);
  try {
    CountdownReward bad(CountdownConfig::FromJson({{"answer_pattern", "<answer>(.*"}}, "r"));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("countdown.answer_pattern: invalid regular expression"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace llamarl::reward
