// Trainer::TokenLoss: the per-token loss of the configured algorithm for one micro-batch, with the
// KL term, the entropy bonus and (ppo) the value loss, and the importance-weight diagnostics.
#include "trainer/trainer.h"

#include "trainer/step_context.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <limits>

namespace llamarl {

using trainer_detail::MicroBatchOutput;
using trainer_detail::StepAccumulators;
using trainer_detail::StepContext;

namespace {

// Per-token proximal log-probs: the sample's own when given, else the current policy (detached). The
// parameters do not change within a step, so the detached current log-probs are exactly the
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

at::Tensor Trainer::TokenLoss(const StepContext& ctx, const PackedMicroBatch& mb, const MicroBatchOutput& out,
                              StepAccumulators& acc) {
  const std::string& a = ctx.algorithm;
  const at::Tensor& logp = out.logp;
  at::Tensor loss;
  // Behaviour log-probs are required by the off-policy algorithms (checked up front) and optional for
  // the on-policy ones, where they only feed the diagnostics.
  bool has_mu = a != "sft";
  for (int64_t s : mb.sample_index) has_mu &= !ctx.mu[size_t(s)].empty();
  at::Tensor mu = has_mu ? GatherPerToken(mb, ctx.mu) : at::Tensor();
  double threshold = std::numeric_limits<double>::infinity();
  at::Tensor iw = has_mu ? at::exp(logp.detach() - mu) : at::Tensor();
  if (a == "sft") {
    loss = SftTokenLoss(logp);
  } else if (a == "ppo") {
    at::Tensor adv = GatherPerToken(mb, ctx.token_advantage);
    loss = GrpoTokenLoss(logp, mu, adv, cfg_.grpo.clip);
    threshold = 1.0 + cfg_.grpo.clip.eps_high;
    at::Tensor value_loss = ValueTokenLoss(out.values, GatherPerToken(mb, ctx.old_values),
                                           GatherPerToken(mb, ctx.returns), cfg_.ppo.value_clip);
    acc.value_loss += (value_loss.detach() * BroadcastPerSample(mb, ctx.token_weight)).sum().item<double>();
    loss = loss + cfg_.ppo.value_coef * value_loss;
  } else {
    at::Tensor adv = BroadcastPerSample(mb, ctx.advantage);
    if (a == "grpo") {
      loss = GrpoTokenLoss(logp, mu, adv, cfg_.grpo.clip);
      threshold = 1.0 + cfg_.grpo.clip.eps_high;
    } else if (a == "aipo") {
      loss = AipoTokenLoss(logp, mu, adv, cfg_.aipo);
      threshold = cfg_.aipo.rho;
    } else if (a == "tis" || a == "decoupled_ppo") {
      const double cap = a == "tis" ? cfg_.tis.cap : cfg_.decoupled_ppo.cap;
      at::Tensor prox = ProximalLogprobs(ctx, mb, logp);
      loss = DecoupledTokenLoss(logp, prox, mu, adv, cap, cfg_.grpo.clip);
      iw = at::exp(prox - mu);
      if (cap > 0) threshold = cap;
    } else {  // rloo, reinforce: on-policy
      loss = PolicyGradientTokenLoss(logp, adv);
    }
  }
  if (iw.defined()) acc.iw.Add(iw, threshold);
  if (cfg_.kl.coef > 0) {
    at::Tensor kl = KlEstimate(logp, ReferenceLogprobs(ctx, mb), cfg_.kl.estimator);
    acc.kl += kl.detach().to(at::kDouble).sum().item<double>();
    if (cfg_.kl.mode == "loss" && a != "sft") loss = loss + cfg_.kl.coef * kl;
  }
  if (cfg_.entropy_coef > 0 && a != "sft") loss = loss - cfg_.entropy_coef * out.entropy;
  return loss;
}

}  // namespace llamarl
