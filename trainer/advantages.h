// Advantage estimators over the GLOBAL batch (the trainer all-gathers rewards and group ids first),
// plain double arithmetic: they are cheap, and tests check them by hand.
#pragma once

#include <cstdint>
#include <vector>

namespace llamarl {

// GRPO: A_i = R_i - mean_g, divided by (std_g + std_eps) when normalize_std (std unbiased; a group of
// one has std 0 and advantage 0). Groups are the samples that share a group id, wherever they sit.
std::vector<double> GroupAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& group_ids,
                                    bool normalize_std, double std_eps);

// RLOO: A_i = R_i - mean of the other samples of its group = n/(n-1) (R_i - mean_g); 0 for a group of one.
std::vector<double> RlooAdvantages(const std::vector<double>& rewards, const std::vector<int64_t>& group_ids);

// REINFORCE with the batch-mean baseline: A_i = R_i - mean_i R.
std::vector<double> BaselineAdvantages(const std::vector<double>& rewards);

// GAE over one sequence: delta_t = r_t + gamma V_{t+1} - V_t (V after the last token = 0),
// A_t = delta_t + gamma lambda A_{t+1}; returns R_t = A_t + V_t are the value targets.
// With a loss mask (multi-turn episodes, TrainSample::loss_mask; empty = every token trained) the
// recursion runs over the trained (model) tokens only, as verl and OpenRLHF do for multi-turn PPO:
// t + 1 above is the next trained token, so the bootstrap V_{t+1} skips the observation between two
// turns, and a masked token's reward is not counted. A masked token gets A = 0 and R = V (no target).
struct GaeResult {
  std::vector<double> advantages, returns;
};
GaeResult Gae(const std::vector<double>& token_rewards, const std::vector<double>& values, double gamma,
              double lambda, const std::vector<uint8_t>& loss_mask = {});

// How much of the returns' variance the values explain, 1 - Var(R - V) / Var(R), from sums over n
// tokens (so that ranks can add them): 1 = perfect, 0 = no better than the mean, negative = worse.
// The variances are both biased (the n/(n-1) cancels); 0 when Var(R) is 0 or n is 0.
double ExplainedVariance(double sum_r, double sum_r_sq, double sum_err, double sum_err_sq, double n);

// (x - mean) / (std + eps) with the biased std over all entries, in place; the mean and std may come
// from a larger (global) population.
void Whiten(std::vector<double>& x, double mean, double std, double eps = 1e-8);

}  // namespace llamarl
