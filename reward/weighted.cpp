#include "reward/weighted.h"

#include "core/check.h"
#include "reward/registry.h"

namespace llamarl::reward {

std::unique_ptr<WeightedReward> WeightedReward::FromJson(const Json& config, const std::string& path) {
  ConfigReader r(config, path);
  const Json& terms = r.Raw("terms");
  r.Finish();
  LLAMARL_CHECK(terms.is_array() && !terms.empty(), r.PathOf("terms"),
                ": expected a non-empty list of {\"name\", \"weight\", \"config\"}, got ",
                DescribeJson(terms));
  std::vector<Term> built;
  for (size_t i = 0; i < terms.size(); ++i) {
    std::string term_path = r.PathOf("terms") + "[" + std::to_string(i) + "]";
    ConfigReader t(terms[i], term_path);
    std::string name;
    double weight = 1.0;
    t.Require("name", &name, std::vector<std::string>{}, "registry name of the term's reward");
    t.Read("weight", &weight, {}, "the term's weight in the sum");
    const Json& term_config = t.Raw("config");
    t.Finish();
    built.push_back({MakeReward(name, term_config, t.PathOf("config")), weight});
  }
  return std::make_unique<WeightedReward>(std::move(built));
}

WeightedReward::WeightedReward(std::vector<Term> terms) : terms_(std::move(terms)) {
  LLAMARL_ASSERT(!terms_.empty(), "a weighted reward needs at least one term");
}

RewardResult WeightedReward::Score(const std::vector<RewardItem>& items) {
  RewardResult total;
  total.scores.assign(items.size(), 0.0);
  total.info.assign(items.size(), Json{{"terms", Json::array()}});
  for (Term& term : terms_) {
    RewardResult part = term.reward->Score(items);
    LLAMARL_ASSERT(part.scores.size() == items.size(), term.reward->Name(), " returned ", part.scores.size(),
                   " scores for ", items.size(), " items");
    for (size_t i = 0; i < items.size(); ++i) {
      total.scores[i] += term.weight * part.scores[i];
      Json info = i < part.info.size() ? part.info[i] : Json::object();
      total.info[i]["terms"].push_back({{"name", term.reward->Name()},
                                        {"weight", term.weight},
                                        {"score", part.scores[i]},
                                        {"info", info}});
    }
  }
  return total;
}

}  // namespace llamarl::reward
