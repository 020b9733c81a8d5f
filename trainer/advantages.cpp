#include "trainer/advantages.h"

#include "core/check.h"

#include <algorithm>
#include <cmath>
#include <map>

namespace llamarl {
namespace {

struct GroupStats {
  double sum = 0, sum_sq = 0;
  int64_t n = 0;
};

std::map<int64_t, GroupStats> StatsByGroup(const std::vector<double>& rewards, const std::vector<int64_t>& groups) {
  LLAMARL_CHECK(rewards.size() == groups.size(), "rewards (", rewards.size(), ") and group ids (", groups.size(),
                ") must have one entry per sample");
  std::map<int64_t, GroupStats> stats;
  for (size_t i = 0; i < rewards.size(); ++i) {
    GroupStats& s = stats[groups[i]];
    s.sum += rewards[i];
    s.sum_sq += rewards[i] * rewards[i];
    ++s.n;
  }
  return stats;
}

}  // namespace

std::vector<double> GroupAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& group_ids,
                                    bool normalize_std, double std_eps) {
  const auto stats = StatsByGroup(rewards, group_ids);
  std::vector<double> out(rewards.size());
  for (size_t i = 0; i < rewards.size(); ++i) {
    const GroupStats& s = stats.at(group_ids[i]);
    const double mean = s.sum / double(s.n);
    out[i] = rewards[i] - mean;
    if (!normalize_std) continue;
    double var = 0;
    if (s.n > 1) {
      for (size_t k = 0; k < rewards.size(); ++k)
        if (group_ids[k] == group_ids[i]) var += (rewards[k] - mean) * (rewards[k] - mean);
      var /= double(s.n - 1);
    }
    // A group whose rewards are all equal (or a group of one) has centred rewards of 0: keep 0
    // rather than 0/0 when std_eps is 0.
    const double denom = std::sqrt(var) + std_eps;
    out[i] = denom == 0 ? 0.0 : out[i] / denom;  // a NaN reward stays NaN: the step is skipped
  }
  return out;
}

std::vector<double> RlooAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& group_ids) {
  const auto stats = StatsByGroup(rewards, group_ids);
  std::vector<double> out(rewards.size(), 0.0);
  for (size_t i = 0; i < rewards.size(); ++i) {
    const GroupStats& s = stats.at(group_ids[i]);
    if (s.n > 1) out[i] = rewards[i] - (s.sum - rewards[i]) / double(s.n - 1);
  }
  return out;
}

std::vector<double> BaselineAdvantages(const std::vector<double>& rewards) {
  double mean = 0;
  for (double r : rewards) mean += r;
  if (!rewards.empty()) mean /= double(rewards.size());
  std::vector<double> out;
  out.reserve(rewards.size());
  for (double r : rewards) out.push_back(r - mean);
  return out;
}

GaeResult Gae(const std::vector<double>& token_rewards, const std::vector<double>& values, double gamma,
              double lambda, const std::vector<uint8_t>& loss_mask) {
  LLAMARL_CHECK(token_rewards.size() == values.size(), "GAE needs one value per token: ", token_rewards.size(),
                " rewards, ", values.size(), " values");
  LLAMARL_CHECK(loss_mask.empty() || loss_mask.size() == values.size(), "GAE's loss mask has ", loss_mask.size(),
                " entries for ", values.size(), " tokens; pass one per token or none");
  GaeResult out;
  out.advantages.assign(values.size(), 0.0);
  out.returns.assign(values.size(), 0.0);
  double next_value = 0, next_advantage = 0;
  for (size_t k = values.size(); k-- > 0;) {
    if (!loss_mask.empty() && loss_mask[k] == 0) {  // an observation token: skipped by the recursion
      out.returns[k] = values[k];
      continue;
    }
    const double delta = token_rewards[k] + gamma * next_value - values[k];
    next_advantage = delta + gamma * lambda * next_advantage;
    out.advantages[k] = next_advantage;
    out.returns[k] = next_advantage + values[k];
    next_value = values[k];
  }
  return out;
}

double ExplainedVariance(double sum_r, double sum_r_sq, double sum_err, double sum_err_sq, double n) {
  if (n <= 0) return 0.0;
  const double mean_r = sum_r / n, mean_err = sum_err / n;
  const double var_r = sum_r_sq / n - mean_r * mean_r, var_err = sum_err_sq / n - mean_err * mean_err;
  if (!(var_r > 1e-12)) return 0.0;
  return 1.0 - std::max(0.0, var_err) / var_r;
}

void Whiten(std::vector<double>& x, double mean, double std, double eps) {
  for (double& v : x) v = (v - mean) / (std + eps);
}

}  // namespace llamarl
