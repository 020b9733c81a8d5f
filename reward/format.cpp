#include "reward/format.h"

namespace llamarl::reward {

FormatConfig FormatConfig::FromJson(const Json& j, const std::string& path) {
  FormatConfig c;
  ConfigReader r(j, path);
  r.Require("pattern", &c.pattern, std::vector<std::string>{}, "PCRE2 pattern the response must follow");
  r.Read("full_match", &c.full_match, "the whole response must match");
  r.Read("dotall", &c.dotall, "'.' also matches newlines");
  r.Read("case_insensitive", &c.case_insensitive, "match ignoring case");
  r.Read("match_score", &c.match_score, {}, "score when the response follows the pattern");
  r.Read("mismatch_score", &c.mismatch_score, {}, "score when it does not");
  r.Finish();
  return c;
}

FormatReward::FormatReward(FormatConfig config)
    : config_(std::move(config)),
      regex_(config_.pattern, RegexOptions{config_.dotall, config_.case_insensitive}, "format.pattern") {}

RewardResult FormatReward::Score(const std::vector<RewardItem>& items) {
  RewardResult result;
  for (const RewardItem& item : items) {
    bool ok = config_.full_match ? regex_.FullMatch(item.response) : regex_.Search(item.response).has_value();
    result.scores.push_back(ok ? config_.match_score : config_.mismatch_score);
    result.info.push_back({{"matched", ok}});
  }
  return result;
}

}  // namespace llamarl::reward
