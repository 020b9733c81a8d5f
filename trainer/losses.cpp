#include "trainer/losses.h"

#include "core/check.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <limits>

namespace llamarl {
namespace {

// exp(logp - sg(logp)): value 1, gradient grad logp.
at::Tensor UnitWithLogGrad(const at::Tensor& logp) { return at::exp(logp - logp.detach()); }

at::Tensor ClippedSurrogate(const at::Tensor& ratio, const at::Tensor& advantages, const ClipConfig& clip) {
  at::Tensor clipped = at::clamp(ratio, 1.0 - clip.eps_low, 1.0 + clip.eps_high);
  return -at::min(ratio * advantages, clipped * advantages);
}

void CheckSameShape(const at::Tensor& a, const at::Tensor& b, const char* what) {
  LLAMARL_CHECK(a.sizes() == b.sizes(), what, " must have the shape of the log-probs ", a.sizes(), ", got ",
                b.sizes());
}

}  // namespace

ClipConfig ClipConfig::Read(ConfigReader& r) { return Read(r, ClipConfig()); }

ClipConfig ClipConfig::Read(ConfigReader& r, ClipConfig c) {
  r.Read("eps_low", &c.eps_low, Range::Closed(0, 1), "ratio clip below: 1 - eps_low");
  r.Read("eps_high", &c.eps_high, Range::AtLeast(0), "ratio clip above: 1 + eps_high (DAPO's clip-higher)");
  return c;
}

GrpoConfig GrpoConfig::FromJson(const Json& j, const std::string& path) {
  GrpoConfig c;
  ConfigReader r(j, path);
  r.Read("normalize_std", &c.normalize_std, "divide group-centred rewards by the group's std");
  r.Read("std_eps", &c.std_eps, Range::AtLeast(0), "added to the group std before dividing");
  c.clip = ClipConfig::Read(r);
  r.Finish();
  return c;
}

AipoConfig AipoConfig::FromJson(const Json& j, const std::string& path) {
  AipoConfig c;
  ConfigReader r(j, path);
  r.Read("rho", &c.rho, Range::Positive(), "truncation of the importance weight pi/mu");
  r.Finish();
  return c;
}

TruncatedIsConfig TruncatedIsConfig::FromJson(const Json& j, const std::string& path, double default_cap) {
  TruncatedIsConfig c{default_cap};
  ConfigReader r(j, path);
  r.Read("cap", &c.cap, Range::AtLeast(0), "truncation of the behaviour weight pi_prox/mu; 0 = none");
  r.Finish();
  return c;
}

ClipConfig ClipConfig::FromJson(const Json& j, const std::string& path, ClipConfig defaults) {
  ConfigReader r(j, path);
  ClipConfig c = Read(r, defaults);
  r.Finish();
  return c;
}

GspoConfig GspoConfig::FromJson(const Json& j, const std::string& path) {
  return GspoConfig{ClipConfig::FromJson(j, path, GspoConfig().clip)};
}

CispoConfig CispoConfig::FromJson(const Json& j, const std::string& path) {
  return CispoConfig{ClipConfig::FromJson(j, path, CispoConfig().clip)};
}

KlConfig KlConfig::FromJson(const Json& j, const std::string& path) {
  KlConfig c;
  ConfigReader r(j, path);
  r.Read("coef", &c.coef, Range::AtLeast(0), "weight of the KL to the frozen reference; 0 = off");
  r.Read("estimator", &c.estimator, {"k1", "k2", "k3", "low_var_kl"}, "per-token KL estimator");
  r.Read("mode", &c.mode, {"loss", "reward"}, "a loss term, or subtracted from the reward");
  r.Read("reference_dtype", &c.reference_dtype, {"bfloat16", "float32"}, "storage dtype of the reference policy");
  r.Finish();
  return c;
}

at::Tensor GrpoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                         const ClipConfig& clip) {
  CheckSameShape(logp, mu, "behaviour log-probs");
  CheckSameShape(logp, advantages, "advantages");
  return ClippedSurrogate(at::exp(logp - mu), advantages, clip);
}

at::Tensor AipoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                         const AipoConfig& config) {
  CheckSameShape(logp, mu, "behaviour log-probs");
  CheckSameShape(logp, advantages, "advantages");
  at::Tensor weight = at::clamp_max(at::exp(logp.detach() - mu), config.rho);
  return -weight * advantages * UnitWithLogGrad(logp);
}

at::Tensor DecoupledTokenLoss(const at::Tensor& logp, const at::Tensor& prox, const at::Tensor& mu,
                              const at::Tensor& advantages, double cap, const ClipConfig& clip) {
  CheckSameShape(logp, prox, "proximal log-probs");
  CheckSameShape(logp, mu, "behaviour log-probs");
  CheckSameShape(logp, advantages, "advantages");
  at::Tensor behaviour_weight = at::exp(prox.detach() - mu);
  if (cap > 0) behaviour_weight = at::clamp_max(behaviour_weight, cap);
  return behaviour_weight * ClippedSurrogate(at::exp(logp - prox.detach()), advantages, clip);
}

at::Tensor SegmentMeanPerToken(const at::Tensor& x, const at::Tensor& segments) {
  CheckSameShape(x, segments, "segments");
  if (x.numel() == 0) return x;
  const int64_t num_segments = segments.max().item<int64_t>() + 1;
  at::Tensor sums = at::zeros({num_segments}, x.options()).index_add(0, segments, x);
  at::Tensor counts = at::zeros({num_segments}, x.options()).index_add(0, segments, at::ones_like(x));
  return (sums / counts.clamp_min(1.0)).index_select(0, segments);
}

at::Tensor GspoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                         const at::Tensor& segments, const ClipConfig& clip) {
  CheckSameShape(logp, mu, "behaviour log-probs");
  CheckSameShape(logp, advantages, "advantages");
  return ClippedSurrogate(at::exp(SegmentMeanPerToken(logp - mu, segments)), advantages, clip);
}

at::Tensor CispoTokenLoss(const at::Tensor& logp, const at::Tensor& mu, const at::Tensor& advantages,
                          const ClipConfig& clip) {
  CheckSameShape(logp, mu, "behaviour log-probs");
  CheckSameShape(logp, advantages, "advantages");
  at::Tensor weight = at::clamp(at::exp(logp.detach() - mu), 1.0 - clip.eps_low, 1.0 + clip.eps_high);
  return -weight * advantages * UnitWithLogGrad(logp);
}

at::Tensor PolicyGradientTokenLoss(const at::Tensor& logp, const at::Tensor& advantages) {
  CheckSameShape(logp, advantages, "advantages");
  return -advantages * UnitWithLogGrad(logp);
}

at::Tensor SftTokenLoss(const at::Tensor& logp) { return -logp; }

at::Tensor KlEstimate(const at::Tensor& logp, const at::Tensor& ref_logp, const std::string& estimator) {
  CheckSameShape(logp, ref_logp, "reference log-probs");
  at::Tensor d = ref_logp.detach() - logp;
  if (estimator == "k1") return -d;
  if (estimator == "k2") return 0.5 * d * d;
  LLAMARL_CHECK(estimator == "k3" || estimator == "low_var_kl",
                "trainer.kl.estimator must be one of k1, k2, k3, low_var_kl; got '", estimator, "'");
  at::Tensor k3 = at::exp(d) - d - 1.0;
  return estimator == "k3" ? k3 : at::clamp_max(k3, 10.0);
}

void ImportanceStats::Add(const at::Tensor& weights, double truncation_threshold) {
  if (weights.numel() == 0) return;
  at::Tensor w = weights.detach().to(at::kDouble);
  sum += w.sum().item<double>();
  sum_sq += (w * w).sum().item<double>();
  max = std::max(max, w.max().item<double>());
  truncated += (w > truncation_threshold).sum().item<double>();
  count += double(w.numel());
}

void RatioStats::Add(const at::Tensor& ratio, const at::Tensor& advantages, double lo, double hi, bool sign_aware) {
  if (ratio.numel() == 0) return;
  at::Tensor r = ratio.detach().to(at::kDouble);
  at::Tensor low = r < lo, high = r > hi;
  if (sign_aware) {
    at::Tensor a = advantages.detach();
    low = low & (a < 0);
    high = high & (a > 0);
  }
  sum += r.sum().item<double>();
  min = std::min(min, r.min().item<double>());
  max = std::max(max, r.max().item<double>());
  clipped_low += low.sum().item<double>();
  clipped_high += high.sum().item<double>();
  kl += (r - 1.0 - at::log(r)).sum().item<double>();
  count += double(r.numel());
}

}  // namespace llamarl
