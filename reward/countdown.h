// countdown: reach a target with an arithmetic expression over given numbers.
//
// Reference (RewardItem::answer): {"numbers": [25, 3, 7], "target": 96}.
// Response: the last match of answer_pattern's first group (default: the text inside the last
// <answer>...</answer>); when there is none and answer_pattern_required is false, the response's
// last non-empty line. "×", "÷" and "−" are read as * / -, and an "= N" tail is ignored. The
// expression is evaluated exactly (reward/expression.h); it must use each given number at most
// once (or exactly once with use_all_numbers) and nothing else.
#pragma once

#include <string>

#include "reward/regex.h"
#include "reward/reward.h"

namespace llamarl::reward {

struct CountdownConfig {
  std::string answer_pattern = "<answer>(.*?)</answer>";  // group 1 holds the expression
  bool answer_pattern_required = false;                   // false: fall back to the last line without a match
  bool use_all_numbers = false;  // every given number exactly once (else at most once)
  double correct_score = 1.0;    // valid expression equal to the target
  double format_score = 0.1;     // valid expression over the given numbers, wrong value
  double incorrect_score = 0.0;  // no expression, invalid, or numbers not allowed

  static CountdownConfig FromJson(const Json& j, const std::string& path);
};

struct CountdownTask {
  std::vector<int64_t> numbers;
  int64_t target = 0;
  // Throws naming `where` and the value when `answer` is not {"numbers": [...], "target": N}.
  static CountdownTask FromJson(const Json& answer, const std::string& where);
};

struct CountdownVerdict {
  bool valid = false;    // parsed, evaluated, and used only allowed numbers
  bool correct = false;  // valid and equal to the target
  std::string expression;
  std::string value;  // the exact value ("7/2") when it evaluated
  std::string error;  // why it is not valid
};

// Checks one expression against a task (exposed for tests and the task generator).
CountdownVerdict CheckCountdown(const std::string& expression, const CountdownTask& task,
                                bool use_all_numbers);

class CountdownReward : public Reward {
 public:
  explicit CountdownReward(CountdownConfig config);
  std::string Name() const override { return "countdown"; }
  RewardResult Score(const std::vector<RewardItem>& items) override;

 private:
  std::optional<std::string> FindExpression(const std::string& response) const;
  CountdownConfig config_;
  Regex answer_regex_;
};

}  // namespace llamarl::reward
