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

#include <limits>
#include <string>

namespace llamarl {

// PPO-style ratio clipping with separate epsilons (DAPO's clip-higher):
//   l_t = -min(r_t A_t, clip(r_t, 1 - eps_low, 1 + eps_high) A_t)
struct ClipConfig {
  double eps_low = 0.2;
  double eps_high = 0.2;
  // Reads eps_low / eps_high from an open section over the given defaults.
  static ClipConfig Read(ConfigReader& reader, ClipConfig defaults);
  static ClipConfig Read(ConfigReader& reader);  // over the defaults above
  // A section holding only the two epsilons (gspo, cispo).
  static ClipConfig FromJson(const Json& j, const std::string& path, ClipConfig defaults);
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

// GSPO (Zheng et al. 2025, arXiv:2507.18071): one length-normalised importance ratio per sequence,
//   s_i = exp( (1/|y_i|) sum_t (logp_it - mu_it) ),   l_i = -min(s_i A_i, clip(s_i, 1 - eps_low, 1 + eps_high) A_i)
// and every token of sample i carries l_i. With aggregation seq_mean_token_mean (required, checked by
// the trainer) the step's loss is mean_i l_i, the paper's objective; the gradient of a token is
// -(s_i A_i / |y_i|) grad logp_it while the sequence is inside the clip range. The paper's clip range is
// about three orders of magnitude narrower than PPO's: (3e-4, 4e-4) are the defaults.
// `segments` [N] int64 numbers the samples of the micro-batch 0..S-1 (a sample never straddles
// micro-batches, trainer/packing.h), so the per-sequence mean is taken inside one call.
struct GspoConfig {
  ClipConfig clip{3e-4, 4e-4};
  static GspoConfig FromJson(const Json& j, const std::string& path);
};
at::Tensor GspoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                         const at::Tensor& segments, const ClipConfig& clip);
// Per token, the mean of x over the tokens of its segment (differentiable) [N].
at::Tensor SegmentMeanPerToken(const at::Tensor& x, const at::Tensor& segments);

// CISPO (MiniMax-M1, arXiv:2506.13585): the importance weight is clipped and detached, and multiplies
// every token's log-prob gradient, so no token loses its gradient (PPO's clip zeroes it):
//   l_t = -sg(clip(r_t, 1 - eps_low, 1 + eps_high)) * A_t * logp_t,   r_t = exp(logp_t - mu_t)
// written as -w_t A_t exp(logp - sg(logp)) (value -w_t A_t). M1 sets no lower bound: eps_low = 1
// (weights in [0, 1 + eps_high]) is the default; token-level aggregation (token_mean) as in the paper.
struct CispoConfig {
  ClipConfig clip{1.0, 2.0};
  static CispoConfig FromJson(const Json& j, const std::string& path);
};
at::Tensor CispoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                          const ClipConfig& clip);

// REINFORCE with a baseline and RLOO (on-policy): l_t = -A_t * exp(logp - sg(logp)).
at::Tensor PolicyGradientTokenLoss(const at::Tensor& logp, const at::Tensor& advantages);

// SFT: l_t = -logp_t (cross-entropy of the response tokens).
at::Tensor SftTokenLoss(const at::Tensor& logp);

// KL to a frozen reference policy, per token (Schulman's estimators, with d = ref - logp):
//   k1 = -d = logp - ref            (unbiased, any sign)
//   k2 = d^2 / 2                    (biased, low variance, >= 0; its gradient is that of KL's f-divergence form)
//   k3 = exp(d) - d - 1             (>= 0, unbiased for KL(pi || ref))
//   low_var_kl = min(k3, 10)        (verl's name and clamp for k3)
// mode "loss" adds coef * k to l_t; mode "reward" subtracts coef * sum_t k_t from the sample's reward
// (ppo: coef * k_t from each token's reward) before advantages, with no gradient through it.
struct KlConfig {
  double coef = 0.0;             // 0 = no reference model
  std::string estimator = "k3";  // k1 | k2 | k3 | low_var_kl
  std::string mode = "loss";     // loss | reward
  // How the frozen reference policy is stored (sharded like the policy's master weights); it runs in
  // the trainer's compute dtype. bfloat16 halves its memory (verl and OpenRLHF keep it in bf16).
  std::string reference_dtype = "bfloat16";  // bfloat16 | float32
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

// How far the policy moved from the anchor of its ratio (the behaviour policy mu for grpo, ppo, gspo,
// cispo, aipo; the proximal policy for tis and decoupled_ppo), over the tokens of a step (logged every
// step): ratio r = pi/anchor mean, min and max; the fraction of tokens whose clip binds below
// (r < lo with A < 0, or r < lo for a weight clip) and above (r > hi with A > 0, or r > hi); the
// approximate KL(anchor || pi) = mean of (r - 1) - log r (Schulman's k3 for samples drawn from the anchor,
// as CleanRL's approx_kl).
// Partial sums, combined over micro-batches, updates and ranks before the ratios are taken.
struct RatioStats {
  double sum = 0, min = std::numeric_limits<double>::infinity(), max = 0, clipped_low = 0, clipped_high = 0, kl = 0,
         count = 0;
  // ratio, advantages: detached [N]. sign_aware: a PPO clip (binds only where the
  // advantage's sign makes the clipped term the minimum); otherwise a weight clip (binds wherever r leaves
  // [lo, hi]). Pass lo = 0 / hi = inf for no clip.
  void Add(const at::Tensor& ratio, const at::Tensor& advantages, double lo, double hi, bool sign_aware);
  double Mean() const { return count > 0 ? sum / count : 0.0; }
  double Min() const { return count > 0 ? min : 0.0; }
  double ClippedLowFraction() const { return count > 0 ? clipped_low / count : 0.0; }
  double ClippedHighFraction() const { return count > 0 ? clipped_high / count : 0.0; }
  double ApproxKl() const { return count > 0 ? kl / count : 0.0; }
};

}  // namespace llamarl
