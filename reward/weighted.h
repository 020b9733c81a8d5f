// weighted: a weighted sum of other rewards, e.g. correctness plus a small format bonus:
//   {"name": "weighted", "config": {"terms": [
//       {"name": "gsm8k", "weight": 1.0},
//       {"name": "format", "weight": 0.1, "config": {"pattern": "#### -?[0-9]"}}]}}
// Each item's info lists every term's name, score and info.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "reward/reward.h"

namespace llamarl::reward {

class WeightedReward : public Reward {
 public:
  struct Term {
    std::unique_ptr<Reward> reward;
    double weight = 1.0;
  };
  // Terms are built through the global registry; throws for an empty list or a bad term.
  static std::unique_ptr<WeightedReward> FromJson(const Json& config, const std::string& path);

  explicit WeightedReward(std::vector<Term> terms);
  std::string Name() const override { return "weighted"; }
  RewardResult Score(const std::vector<RewardItem>& items) override;

 private:
  std::vector<Term> terms_;
};

}  // namespace llamarl::reward
