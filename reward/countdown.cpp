#include "reward/countdown.h"

#include <algorithm>
#include <map>

#include "core/check.h"
#include "reward/expression.h"

namespace llamarl::reward {
namespace {

void ReplaceAll(std::string* text, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = text->find(from, at)) != std::string::npos; at += to.size()) {
    text->replace(at, from.size(), to);
  }
}

std::string Normalize(std::string expression) {
  ReplaceAll(&expression, "\xC3\x97", "*");      // ×
  ReplaceAll(&expression, "\xC3\xB7", "/");      // ÷
  ReplaceAll(&expression, "\xE2\x88\x92", "-");  // −
  size_t eq = expression.find('=');
  if (eq != std::string::npos) expression.resize(eq);
  return expression;
}

std::string LastNonEmptyLine(const std::string& text) {
  size_t end = text.size();
  while (end > 0) {
    size_t begin = text.rfind('\n', end - 1);
    begin = begin == std::string::npos ? 0 : begin + 1;
    std::string line = text.substr(begin, end - begin);
    if (line.find_first_not_of(" \t\r") != std::string::npos) return line;
    if (begin == 0) break;
    end = begin - 1;
  }
  return "";
}

// Which operands are not allowed: extra uses or numbers that were not given. "" when all are fine.
std::string CheckOperands(const std::vector<int64_t>& used, const CountdownTask& task, bool use_all) {
  std::map<int64_t, int> available;
  for (int64_t n : task.numbers) ++available[n];
  for (int64_t n : used) {
    auto it = available.find(n);
    if (it == available.end()) return "number " + std::to_string(n) + " is not among the given numbers";
    if (--it->second < 0) return "number " + std::to_string(n) + " is used more often than given";
  }
  if (use_all) {
    for (const auto& [n, left] : available) {
      if (left > 0) return "number " + std::to_string(n) + " is not used";
    }
  }
  return "";
}

}  // namespace

CountdownConfig CountdownConfig::FromJson(const Json& j, const std::string& path) {
  CountdownConfig c;
  ConfigReader r(j, path);
  r.Read("answer_pattern", &c.answer_pattern, {}, "PCRE2 pattern whose group 1 is the expression");
  r.Read("answer_pattern_required", &c.answer_pattern_required,
         "without a match, score as incorrect instead of reading the last line");
  r.Read("use_all_numbers", &c.use_all_numbers, "every given number must be used exactly once");
  r.Read("correct_score", &c.correct_score, {}, "score of an expression equal to the target");
  r.Read("format_score", &c.format_score, {}, "score of a valid expression with the wrong value");
  r.Read("incorrect_score", &c.incorrect_score, {}, "score of a missing or invalid expression");
  r.Finish();
  return c;
}

CountdownTask CountdownTask::FromJson(const Json& answer, const std::string& where) {
  auto fail = [&] {
    LLAMARL_FAIL(where,
                 ": countdown expects the answer {\"numbers\": [integers], \"target\": ", "integer}, got ",
                 DescribeJson(answer), "; generate it with controller/tasks.h or ",
                 "point the dataset's answer_field at such an object");
  };
  if (!answer.is_object() || !answer.contains("numbers") || !answer.contains("target")) fail();
  const Json& numbers = answer["numbers"];
  if (!numbers.is_array() || numbers.empty() || !answer["target"].is_number_integer()) fail();
  CountdownTask task;
  for (const Json& n : numbers) {
    if (!n.is_number_integer()) fail();
    task.numbers.push_back(n.get<int64_t>());
  }
  task.target = answer["target"].get<int64_t>();
  return task;
}

CountdownVerdict CheckCountdown(const std::string& expression, const CountdownTask& task,
                                bool use_all_numbers) {
  CountdownVerdict verdict;
  verdict.expression = Normalize(expression);
  EvaluatedExpression eval = EvaluateExpression(verdict.expression);
  if (!eval.value) {
    verdict.error = eval.error;
    return verdict;
  }
  verdict.value = eval.value->ToString();
  verdict.error = CheckOperands(eval.operands, task, use_all_numbers);
  verdict.valid = verdict.error.empty();
  verdict.correct = verdict.valid && *eval.value == Rational{task.target, 1};
  return verdict;
}

CountdownReward::CountdownReward(CountdownConfig config)
    : config_(std::move(config)), answer_regex_(config_.answer_pattern, {}, "countdown.answer_pattern") {}

std::optional<std::string> CountdownReward::FindExpression(const std::string& response) const {
  auto matches = answer_regex_.SearchAll(response);
  if (!matches.empty()) {
    const std::vector<std::string>& last = matches.back();
    return last.size() > 1 ? last[1] : last[0];
  }
  if (config_.answer_pattern_required) return std::nullopt;
  return LastNonEmptyLine(response);
}

RewardResult CountdownReward::Score(const std::vector<RewardItem>& items) {
  RewardResult result;
  for (size_t i = 0; i < items.size(); ++i) {
    CountdownTask task = CountdownTask::FromJson(items[i].answer, "item " + std::to_string(i));
    std::optional<std::string> expression = FindExpression(items[i].response);
    Json info = Json::object();
    double score = config_.incorrect_score;
    if (!expression) {
      info["error"] = "no match for answer_pattern " + config_.answer_pattern;
    } else {
      CountdownVerdict v = CheckCountdown(*expression, task, config_.use_all_numbers);
      info = {{"expression", v.expression}, {"valid", v.valid}, {"correct", v.correct}};
      if (!v.value.empty()) info["value"] = v.value;
      if (!v.error.empty()) info["error"] = v.error;
      score = v.correct ? config_.correct_score : v.valid ? config_.format_score : config_.incorrect_score;
    }
    result.scores.push_back(score);
    result.info.push_back(std::move(info));
  }
  return result;
}

}  // namespace llamarl::reward
