// arithmetic: exact integer answers to generated "a op b op c =" tasks (controller/tasks.h).
//
// Reference (RewardItem::answer): an integer, an integer string, or {"target": N, ...}.
// Response: the first or the last number in the text (config `pick`), read as reward/number.h
// describes; it is correct when its value is exactly the target ("12.0" counts, "12.5" does not).
#pragma once

#include <cstdint>
#include <string>

#include "reward/reward.h"

namespace llamarl::reward {

struct ArithmeticConfig {
  std::string pick = "last";     // "first" or "last": which number of the response is the answer
  double correct_score = 1.0;    // the picked number equals the target
  double incorrect_score = 0.0;  // it does not
  double no_answer_score = 0.0;  // the response has no number

  static ArithmeticConfig FromJson(const Json& j, const std::string& path);
};

// The target of one item; throws naming `where` and the value when there is none.
int64_t ParseArithmeticTarget(const Json& answer, const std::string& where);

class ArithmeticReward : public Reward {
 public:
  explicit ArithmeticReward(ArithmeticConfig config) : config_(std::move(config)) {}
  std::string Name() const override { return "arithmetic"; }
  RewardResult Score(const std::vector<RewardItem>& items) override;

 private:
  ArithmeticConfig config_;
};

}  // namespace llamarl::reward
