#include "reward/arithmetic.h"

#include "core/check.h"
#include "reward/number.h"

namespace llamarl::reward {

ArithmeticConfig ArithmeticConfig::FromJson(const Json& j, const std::string& path) {
  ArithmeticConfig c;
  ConfigReader r(j, path);
  r.Read("pick", &c.pick, {"first", "last"}, "which number of the response is the answer");
  r.Read("correct_score", &c.correct_score, {}, "score of a correct answer");
  r.Read("incorrect_score", &c.incorrect_score, {}, "score of a wrong answer");
  r.Read("no_answer_score", &c.no_answer_score, {}, "score of a response without a number");
  r.Finish();
  return c;
}

int64_t ParseArithmeticTarget(const Json& answer, const std::string& where) {
  const Json& target = answer.is_object() && answer.contains("target") ? answer["target"] : answer;
  if (target.is_number_integer()) return target.get<int64_t>();
  if (target.is_string()) {
    std::optional<ParsedNumber> n = ParseNumber(target.get<std::string>());
    if (n && n->integer) return *n->integer;
  }
  LLAMARL_FAIL(where, ": arithmetic expects the answer as an integer or {\"target\": integer}, got ",
               DescribeJson(answer), "; generate it with controller/tasks.h or point the dataset's ",
               "answer_field at an integer");
}

RewardResult ArithmeticReward::Score(const std::vector<RewardItem>& items) {
  RewardResult result;
  for (size_t i = 0; i < items.size(); ++i) {
    int64_t target = ParseArithmeticTarget(items[i].answer, "item " + std::to_string(i));
    std::vector<ParsedNumber> numbers = FindNumbers(items[i].response);
    Json info = {{"reference", target}};
    double score = config_.no_answer_score;
    if (!numbers.empty()) {
      const ParsedNumber& got = config_.pick == "first" ? numbers.front() : numbers.back();
      bool correct = got.integer.has_value() && *got.integer == target;
      info["parsed"] = got.text;
      info["correct"] = correct;
      score = correct ? config_.correct_score : config_.incorrect_score;
    }
    result.scores.push_back(score);
    result.info.push_back(std::move(info));
  }
  return result;
}

}  // namespace llamarl::reward
