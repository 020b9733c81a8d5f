// Per-token policy losses, each a small component with its own Config. Every function takes per-token
// tensors of one micro-batch ([N] float32, N = response tokens) and returns the unweighted per-token
// loss l_t; the trainer multiplies by the aggregation weights (trainer/aggregation.h) and sums, so
// that the gradient over micro-batches and ranks is that of one global loss.
//
// Notation: logp = log pi_theta(token) (differentiable), mu = the generator's log-prob at sampling
// time, prox = a proximal policy's log-prob (detached), A = advantage, sg() = stop-gradient.
// Where a loss is a pure policy-gradient weight c_t (gradient -c_t * grad logp), it is written as
// -c_t * exp(logp - sg(logp)): the value is -c_t (readable in metrics) and the gradient is exact.
#pragma once

#include "core/config.h"

#include <ATen/core/Tensor.h>

#include <string>

namespace llamarl {

// PPO-style ratio clipping with separate epsilons (DAPO's clip-higher):
//   l_t = -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t)
struct ClipConfig {
  double eps_low = 0.2;
  double eps_high = 0.2;
  static ClipConfig Read(ConfigReader& reader);  // reads eps_low / eps_high from an open section
};

// GRPO: group-relative advantages A_i = (R_i - mean_g R) / (std_g R + std_eps) (the division only with
// normalize_std; std unbiased, 0 for a group of one), ratio r_t = exp(logp_t - mu_t), clipped surrogate.
struct GrpoConfig {
  bool normalize_std = true;
  double std_eps = 1e-6;
  ClipConfig clip;
  static GrpoConfig FromJson(const Json& j, const std::string& path);
};
at::Tensor GrpoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                         const ClipConfig& clip);

// AIPO (LlamaRL): l_t = -sg(min(pi/mu, rho)) * A_t * exp(logp - sg(logp)). Past rho the weight is
// truncated, never zeroed: the gradient -rho * A * grad logp does not vanish (unlike PPO's clip).
struct AipoConfig {
  double rho = 4.0;
  static AipoConfig FromJson(const Json& j, const std::string& path);
};
at::Tensor AipoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                         const AipoConfig& config);

// Truncated importance sampling on top of the GRPO surrogate, and AReaL's decoupled PPO: the behaviour
// correction w_t = pi_prox / mu (truncated at `cap` when cap > 0) weights a surrogate clipped around
// the proximal policy:  l_t = -sg(w_t) * min(r_t A_t, clip(r_t) A_t),  r_t = exp(logp - prox).
// TIS defaults to cap 2; decoupled PPO to no cap.
struct TruncatedIsConfig {
  double cap = 2.0;  // 0 = no truncation
  static TruncatedIsConfig FromJson(const Json& j, const std::string& path, double default_cap);
};
at::Tensor DecoupledTokenLoss(const at::Tensor& logp, const at::Tensor& prox, const at::Tensor& mu,
                              const at::Tensor& advantages, double cap, const ClipConfig& clip);

// REINFORCE with a baseline and RLOO (on-policy): l_t = -A_t * exp(logp - sg(logp)).
at::Tensor PolicyGradientTokenLoss(const at::Tensor& logp, const at::Tensor& advantages);

// SFT: l_t = -logp_t (cross-entropy of the response tokens).
at::Tensor SftTokenLoss(const at::Tensor& logp);

// KL to a frozen reference policy, per token (Schulman's estimators, with d = ref - logp):
//   k1 = -d = logp - ref            k3 = exp(d) - d - 1  (>= 0, unbiased for KL(pi || ref))
// mode "loss" adds coef * k to l_t; mode "reward" subtracts coef * sum_t k1_t from the sample's reward
// before advantages (no gradient through it).
struct KlConfig {
  double coef = 0.0;             // 0 = no reference model
  std::string estimator = "k3";  // k1 | k3
  std::string mode = "loss";     // loss | reward
  static KlConfig FromJson(const Json& j, const std::string& path);
};
at::Tensor KlEstimate(const at::Tensor& logp, const at::Tensor& ref_logp, const std::string& estimator);

// Importance-weight diagnostics of w_t = pi/mu over the tokens of a step (logged every step):
//   mean, max, the fraction of tokens the algorithm truncated or clipped, and the normalised effective
//   sample size ESS = (sum w)^2 / (N * sum w^2) in (0, 1].
// Partial sums so that ranks and micro-batches combine them before taking ratios.
struct ImportanceStats {
  double sum = 0, sum_sq = 0, max = 0, truncated = 0, count = 0;
  void Add(const at::Tensor& weights, double truncation_threshold);  // weights detached [N]
  double Mean() const { return count > 0 ? sum / count : 0.0; }
  double TruncatedFraction() const { return count > 0 ? truncated / count : 0.0; }
  double Ess() const { return sum_sq > 0 ? sum * sum / (count * sum_sq) : 0.0; }
};

}  // namespace llamarl
