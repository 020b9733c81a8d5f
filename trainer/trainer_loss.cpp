// Trainer::TokenLoss: the per-token loss of the configured algorithm for one micro-batch, with the
// KL term, the entropy bonus and (ppo) the value loss, and the importance-weight and ratio diagnostics.
#include "trainer/trainer.h"

#include "trainer/ppo.h"
#include "trainer/step_context.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <limits>

namespace llamarl {

using trainer_detail::MicroBatchOutput;
using trainer_detail::StepAccumulators;
using trainer_detail::StepContext;

namespace {

// Per-token proximal log-probs: the sample's own when given (or recorded by the step's no-grad pass,
// Trainer::PrepareStep, when the step runs more than one update), else the current policy
// (detached): with one update per step the parameters have not moved yet, so that is exactly the
// policy at the start of the step.
at::Tensor ProximalLogprobs(const StepContext& ctx, const PackedMicroBatch& mb, const at::Tensor& logp) {
  bool any_given = false;
  for (int64_t s : mb.sample_index) any_given |= !ctx.prox[size_t(s)].empty();
  if (!any_given) return logp.detach();
  at::Tensor current = logp.detach().clone();
  auto acc = current.accessor<float, 1>();
  for (size_t t = 0; t < mb.sample_index.size(); ++t) {
    const auto& p = ctx.prox[size_t(mb.sample_index[t])];
    if (!p.empty()) acc[int64_t(t)] = p[size_t(mb.token_index[t])];
  }
  return current;
}

}  // namespace

at::Tensor Trainer::PolicyTokenLoss(const StepContext& ctx, const PackedMicroBatch& mb, const at::Tensor& logp,
                                    StepAccumulators& acc) {
  const std::string& a = ctx.algorithm;
  // Behaviour log-probs are required by the off-policy algorithms (checked up front) and optional for
  // the on-policy ones, where they only feed the diagnostics.
  bool has_mu = true;
  for (int64_t s : mb.sample_index) has_mu &= !ctx.mu[size_t(s)].empty();
  const at::Tensor mu = has_mu ? GatherPerToken(mb, ctx.mu) : at::Tensor();
  const at::Tensor adv = a == "ppo" ? GatherPerToken(mb, ctx.token_advantage) : BroadcastPerSample(mb, ctx.advantage);
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double iw_threshold = kInf, lo = 0, hi = kInf;  // where the importance weight truncates; the clip range
  bool sign_aware = false;                        // a PPO clip (RatioStats::Add)
  at::Tensor anchor = mu, ratio, iw = has_mu ? at::exp(logp.detach() - mu) : at::Tensor();
  auto clip_range = [&](const ClipConfig& c, bool ppo_clip) {
    lo = 1.0 - c.eps_low, hi = 1.0 + c.eps_high, sign_aware = ppo_clip, iw_threshold = hi;
  };
  at::Tensor loss;
  if (a == "grpo" || a == "ppo") {
    loss = GrpoTokenLoss(logp, mu, adv, cfg_.grpo.clip);
    clip_range(cfg_.grpo.clip, true);
  } else if (a == "gspo") {
    const at::Tensor segments = SegmentOfTokens(mb);
    loss = GspoTokenLoss(logp, mu, adv, segments, cfg_.gspo.clip);
    ratio = at::exp(SegmentMeanPerToken(logp.detach() - mu, segments));
    clip_range(cfg_.gspo.clip, true);
  } else if (a == "cispo") {
    loss = CispoTokenLoss(logp, mu, adv, cfg_.cispo.clip);
    clip_range(cfg_.cispo.clip, false);
  } else if (a == "aipo") {
    loss = AipoTokenLoss(logp, mu, adv, cfg_.aipo);
    hi = iw_threshold = cfg_.aipo.rho;
  } else if (a == "tis" || a == "decoupled_ppo") {
    const double cap = a == "tis" ? cfg_.tis.cap : cfg_.decoupled_ppo.cap;
    anchor = ProximalLogprobs(ctx, mb, logp);
    loss = DecoupledTokenLoss(logp, anchor, mu, adv, cap, cfg_.grpo.clip);
    clip_range(cfg_.grpo.clip, true);
    iw = at::exp(anchor - mu);
    iw_threshold = cap > 0 ? cap : kInf;
  } else {  // rloo, reinforce: on-policy
    loss = PolicyGradientTokenLoss(logp, adv);
  }
  if (iw.defined()) acc.iw.Add(iw, iw_threshold);
  if (anchor.defined()) acc.ratio.Add(ratio.defined() ? ratio : at::exp(logp.detach() - anchor), adv, lo, hi, sign_aware);
  return loss;
}

at::Tensor Trainer::ValueLoss(const StepContext& ctx, const PackedMicroBatch& mb, const at::Tensor& values,
                              StepAccumulators& acc) {
  const at::Tensor old_values = GatherPerToken(mb, ctx.old_values), returns = GatherPerToken(mb, ctx.returns);
  at::Tensor value_loss = ValueTokenLoss(values, old_values, returns, cfg_.ppo.value_clip);
  acc.value_loss += (value_loss.detach() * BroadcastPerSample(mb, ctx.token_weight)).sum().item<double>();
  acc.value_clipped += ValueClipped(values, old_values, returns, cfg_.ppo.value_clip).sum().item<double>();
  acc.value_tokens += double(values.numel());
  return value_loss;
}

at::Tensor Trainer::TokenLoss(const StepContext& ctx, const PackedMicroBatch& mb, const MicroBatchOutput& out,
                              StepAccumulators& acc) {
  if (ctx.algorithm == "value") return ValueLoss(ctx, mb, out.values, acc);  // a separate critic: nothing else
  const bool sft = ctx.algorithm == "sft";
  const at::Tensor& logp = out.logp;
  at::Tensor loss = sft ? SftTokenLoss(logp) : PolicyTokenLoss(ctx, mb, logp, acc);
  if (ctx.algorithm == "ppo" && out.values.defined()) {  // the head on the policy trunk
    loss = loss + cfg_.ppo.value_coef * ValueLoss(ctx, mb, out.values, acc);
  }
  if (cfg_.kl.coef > 0) {
    at::Tensor kl = KlEstimate(logp, ReferenceLogprobs(ctx, mb), cfg_.kl.estimator);
    acc.kl += kl.detach().to(at::kDouble).sum().item<double>();
    if (cfg_.kl.mode == "loss" && !sft) loss = loss + cfg_.kl.coef * kl;
  }
  if (cfg_.entropy_coef > 0 && !sft) loss = loss - cfg_.entropy_coef * out.entropy;
  return loss;
}

}  // namespace llamarl
