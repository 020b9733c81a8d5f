#include "controller/tasks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include "core/check.h"
#include "reward/registry.h"
#include "tests/reward/error_text.h"

namespace llamarl::controller {
namespace {

using testing::ErrorText;

std::vector<double> ScoreReferences(const std::string& reward_name, const Json& config,
                                    const std::vector<DatasetItem>& items) {
  auto reward = reward::MakeReward(reward_name, config);
  std::vector<reward::RewardItem> batch;
  for (const DatasetItem& item : items) batch.push_back({item.prompt, item.reference_response, item.answer});
  return reward->Score(batch).scores;
}

// Checks "a op b = c" independently of the generator: returns false on a wrong step.
bool StepLineIsRight(const std::string& line) {
  std::istringstream in(line);
  long long a, b, c;
  char op, eq;
  if (!(in >> a >> op >> b >> eq >> c) || eq != '=') return false;
  long long want = op == '+'   ? a + b
                   : op == '-' ? a - b
                   : op == '*' ? a * b
                               : (b != 0 && a % b == 0 ? a / b : c + 1);
  return want == c;
}

TEST(ArithmeticTasks, HandWorkedShapeAndExactAnswers) {
  ArithmeticTaskConfig c = ArithmeticTaskConfig::FromJson({{"num_items", 300},
                                                           {"seed", 5},
                                                           {"min_operands", 3},
                                                           {"max_operands", 3},
                                                           {"min_digits", 2},
                                                           {"max_digits", 2},
                                                           {"steps_fraction", 1.0}},
                                                          "data.arithmetic");
  std::vector<DatasetItem> items =
      GenerateArithmeticTasks(c, PromptConfig::FromJson({{"style", "raw"}}, "p"));
  ASSERT_EQ(items.size(), 300u);
  for (const DatasetItem& item : items) {
    ASSERT_EQ(item.question.rfind("Show your steps. ", 0), 0u) << item.question;
    EXPECT_EQ(item.prompt, item.question);
    EXPECT_EQ(item.answer["num_operands"], 3);
    // "ab op cd op ef =": three two-digit operands.
    std::istringstream expr(item.answer["expression"].get<std::string>());
    long long x;
    char op;
    expr >> x;
    EXPECT_TRUE(x >= 10 && x <= 99) << item.question;
    while (expr >> op >> x)
      EXPECT_TRUE(x >= 10 && x <= 99 && std::string("+-*").find(op) != std::string::npos);
    // Every written step is right, and there are operands - 1 of them before "#### target".
    std::istringstream lines(item.reference_response);
    std::string line;
    int steps = 0;
    while (std::getline(lines, line) && line.rfind("####", 0) != 0) {
      EXPECT_TRUE(StepLineIsRight(line)) << line << " in " << item.reference_response;
      ++steps;
    }
    EXPECT_EQ(steps, 2);
    EXPECT_EQ(line, "#### " + std::to_string(item.answer["target"].get<int64_t>()));
  }
  for (double s : ScoreReferences("arithmetic", Json::object(), items)) ASSERT_EQ(s, 1.0);
}

TEST(ArithmeticTasks, KnownPrecedenceExample) {
  // Independent of the generator's draws: find an item mixing + and * and check it by hand rules.
  ArithmeticTaskConfig c;
  c.num_items = 200;
  c.min_operands = c.max_operands = 3;
  std::vector<DatasetItem> items = GenerateArithmeticTasks(c, PromptConfig{});
  int checked = 0;
  for (const DatasetItem& item : items) {
    std::istringstream expr(item.answer["expression"].get<std::string>());
    long long a, b, d;
    char op1, op2;
    expr >> a >> op1 >> b >> op2 >> d;
    long long want;
    if (op1 != '*' && op2 == '*') {
      want = op1 == '+' ? a + b * d : a - b * d;
    } else if (op1 == '*' && op2 != '*') {
      want = op2 == '+' ? a * b + d : a * b - d;
    } else {
      continue;
    }
    EXPECT_EQ(item.answer["target"].get<long long>(), want) << item.question;
    EXPECT_EQ(item.reference_response, std::to_string(want));  // no steps by default
    EXPECT_EQ(item.prompt, item.question + "\nAnswer:");
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

TEST(ArithmeticTasks, SeededAndLongTailed) {
  ArithmeticTaskConfig c = ArithmeticTaskConfig::FromJson({{"num_items", 2000},
                                                           {"seed", 1},
                                                           {"min_operands", 2},
                                                           {"max_operands", 9},
                                                           {"operand_tail", 0.6},
                                                           {"max_digits", 2},
                                                           {"steps_fraction", 0.5}},
                                                          "data.arithmetic");
  std::vector<DatasetItem> a = GenerateArithmeticTasks(c, PromptConfig{});
  std::vector<DatasetItem> b = GenerateArithmeticTasks(c, PromptConfig{});
  c.seed = 2;
  std::vector<DatasetItem> other = GenerateArithmeticTasks(c, PromptConfig{});
  int same_as_other = 0, num_steps = 0;
  std::vector<size_t> lengths;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].question, b[i].question);
    ASSERT_EQ(a[i].answer, b[i].answer);
    same_as_other += a[i].question == other[i].question;
    num_steps += a[i].answer["steps"].get<bool>();
    lengths.push_back(a[i].reference_response.size());
  }
  EXPECT_LT(same_as_other, 100);
  EXPECT_NEAR(num_steps, 1000, 120);
  std::sort(lengths.begin(), lengths.end());
  size_t median = lengths[lengths.size() / 2], p99 = lengths[lengths.size() * 99 / 100];
  std::printf("reference response length: median %zu, p99 %zu, max %zu chars\n", median, p99, lengths.back());
  EXPECT_GT(p99, 4 * median);  // a long tail
}

TEST(ArithmeticTasks, ConfigErrors) {
  EXPECT_NE(ErrorText([] {
              ArithmeticTaskConfig::FromJson({{"min_operands", 4}, {"max_operands", 3}}, "data.arithmetic");
            }).find("min_operands (4) must be <= max_operands (3)"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              ArithmeticTaskConfig::FromJson({{"operators", "+/"}}, "data.arithmetic");
            }).find("data.arithmetic.operators: expected a non-empty subset"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              ArithmeticTaskConfig::FromJson({{"max_digits", 5}, {"max_operands", 4}}, "data.arithmetic");
            }).find("must be <= 18"),
            std::string::npos);
  EXPECT_NO_THROW(
      ArithmeticTaskConfig::FromJson({{"max_digits", 5}, {"max_operands", 4}, {"operators", "+-"}}, "a"));
}

TEST(CountdownTasks, ReferenceSolutionsCheckAndStayInRange) {
  for (bool use_all : {false, true}) {
    CountdownTaskConfig c = CountdownTaskConfig::FromJson({{"num_items", 300},
                                                           {"seed", 3},
                                                           {"min_numbers", 3},
                                                           {"max_numbers", 5},
                                                           {"max_number", 20},
                                                           {"max_target", 200},
                                                           {"use_all_numbers", use_all},
                                                           {"steps_fraction", 0.5}},
                                                          "data.countdown");
    std::vector<DatasetItem> items = GenerateCountdownTasks(c, PromptConfig{});
    ASSERT_EQ(items.size(), 300u);
    for (const DatasetItem& item : items) {
      const Json& numbers = item.answer["numbers"];
      EXPECT_TRUE(numbers.size() >= 3 && numbers.size() <= 5);
      for (const Json& n : numbers) EXPECT_TRUE(n >= 1 && n <= 20);
      int64_t target = item.answer["target"];
      EXPECT_TRUE(target >= 1 && target <= 200);
      EXPECT_NE(item.question.find("equals " + std::to_string(target)), std::string::npos);
      EXPECT_NE(item.question.find(use_all ? "exactly once" : "at most once"), std::string::npos);
    }
    Json reward_config = {{"use_all_numbers", use_all}, {"answer_pattern_required", true}};
    for (double s : ScoreReferences("countdown", reward_config, items)) ASSERT_EQ(s, 1.0);
  }
}

TEST(CountdownTasks, SeededAndImpossibleRangesFail) {
  CountdownTaskConfig c;
  c.num_items = 50;
  std::vector<DatasetItem> a = GenerateCountdownTasks(c, PromptConfig{}),
                           b = GenerateCountdownTasks(c, PromptConfig{});
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i].answer, b[i].answer);
  c.max_number = 1000;
  c.max_target = 1;
  c.min_numbers = c.max_numbers = 2;
  c.use_all_numbers = true;
  EXPECT_NE(ErrorText([&] { GenerateCountdownTasks(c, PromptConfig{}); }).find("raise max_target"),
            std::string::npos);
}

TEST(GeneratedDatasets, LoadDatasetHoldsOutEvalItems) {
  DatasetSplits s =
      LoadDataset(DatasetConfig::FromJson({{"source", "countdown"},
                                           {"countdown", {{"num_items", 40}}},
                                           {"eval", {{"num_items", 8}}},
                                           {"prompt", {{"style", "chat"}, {"chat_format", "chatml"}}}},
                                          "data"));
  EXPECT_EQ(s.eval.size(), 8u);
  EXPECT_EQ(s.train.size(), 32u);
  EXPECT_EQ(s.train[0].id, 8);
  EXPECT_EQ(s.train[0].prompt.rfind("<|im_start|>user\nUsing the numbers [", 0), 0u) << s.train[0].prompt;
  EXPECT_NE(ErrorText([] {
              DatasetConfig::FromJson({{"source", "arithmetic"}, {"arithmetic", {{"digits", 3}}}}, "data");
            }).find("data.arithmetic: unknown key 'digits'"),
            std::string::npos);
  EXPECT_NE(ErrorText([] {
              DatasetConfig::FromJson({{"source", "countdown"}, {"jsonl", {{"path", "x"}}}}, "data");
            }).find("data: unknown key 'jsonl'"),
            std::string::npos);
}

}  // namespace
}  // namespace llamarl::controller
