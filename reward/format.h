// format: whether a response follows a required shape, by a PCRE2 pattern, e.g.
// "<think>.*</think>\\s*<answer>.*</answer>" (full_match) or "#### -?[0-9]" (search).
// The reference answer is not used. Combine with a correctness reward through `weighted`.
#pragma once

#include <string>

#include "reward/regex.h"
#include "reward/reward.h"

namespace llamarl::reward {

struct FormatConfig {
  std::string pattern;      // required; PCRE2, UTF-8
  bool full_match = false;  // the whole response must match (else: found anywhere)
  bool dotall = true;       // '.' matches newlines
  bool case_insensitive = false;
  double match_score = 1.0;     // the response follows the pattern
  double mismatch_score = 0.0;  // it does not

  static FormatConfig FromJson(const Json& j, const std::string& path);
};

class FormatReward : public Reward {
 public:
  explicit FormatReward(FormatConfig config);
  std::string Name() const override { return "format"; }
  RewardResult Score(const std::vector<RewardItem>& items) override;

 private:
  FormatConfig config_;
  Regex regex_;
};

}  // namespace llamarl::reward
