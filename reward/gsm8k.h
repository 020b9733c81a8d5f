// gsm8k: the final numeric answer of a grade-school math problem.
//
// Reference (RewardItem::answer): GSM8K's answer field (a worked solution whose last line is
// "#### N"), a bare number string ("1,234"), or a JSON number.
// Response: the explicitly stated answer when there is one, searched in this order and taking the
// last occurrence of each form: "#### N", "\boxed{N}" (also \boxed{\frac{a}{b}}), "answer is N" /
// "answer: N" (case-insensitive); otherwise, unless require_marker, the last number in the text.
// Numbers are normalised as reward/number.h describes ("$1,234.50" == 1234.5, "5.00" == 5).
#pragma once

#include <optional>
#include <string>

#include "reward/number.h"
#include "reward/reward.h"

namespace llamarl::reward {

struct Gsm8kConfig {
  double correct_score = 1.0;        // answer matches the reference
  double incorrect_score = 0.0;      // an answer was found and it is wrong
  double no_answer_score = 0.0;      // no answer could be read from the response
  bool require_marker = false;       // only "#### N", \boxed{N} or "answer is N" count as an answer
  double relative_tolerance = 1e-6;  // |got - want| <= tol * max(1, |want|) counts as equal

  static Gsm8kConfig FromJson(const Json& j, const std::string& path);
};

struct ExtractedAnswer {
  ParsedNumber number;
  std::string source;  // "####", "boxed", "answer_is" or "last_number"
};

// The answer a response states (see the header comment), or nullopt.
std::optional<ExtractedAnswer> ExtractFinalAnswer(std::string_view response, bool allow_last_number);

// The reference value of a GSM8K answer field or number; throws naming `where` and the value when
// it has none.
double ParseGsm8kReference(const Json& answer, const std::string& where);

class Gsm8kReward : public Reward {
 public:
  explicit Gsm8kReward(Gsm8kConfig config) : config_(config) {}
  std::string Name() const override { return "gsm8k"; }
  RewardResult Score(const std::vector<RewardItem>& items) override;

 private:
  Gsm8kConfig config_;
};

}  // namespace llamarl::reward
