// Trainer::RunStep: one optimizer step (see trainer.h for the sequence and the collectives).
// Legend: N = response tokens of a micro-batch, D = hidden size.
#include "trainer/trainer.h"

#include "core/communicator.h"
#include "kernels/token_logprobs.h"
#include "trainer/adamw.h"
#include "trainer/advantages.h"
#include "trainer/packing.h"
#include "trainer/step_context.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>

#include <cmath>
#include <limits>

namespace llamarl {
namespace {

bool NeedsBehaviour(const std::string& a) {
  return a == "grpo" || a == "aipo" || a == "tis" || a == "decoupled_ppo" || a == "ppo";
}

void CheckTokens(const std::vector<int64_t>& tokens, int64_t vocab, size_t sample, const char* what) {
  for (int64_t t : tokens)
    TORCH_CHECK(t >= 0 && t < vocab, "train sample ", sample, " has ", what, " token ", t, " outside [0, vocab_size ",
                vocab, "); the tokenizer does not match this model");
}

void CheckSamples(const TrainBatch& batch, const std::string& algorithm, int64_t vocab) {
  for (size_t i = 0; i < batch.samples.size(); ++i) {
    const TrainSample& s = batch.samples[i];
    const size_t n = s.response.size();
    CheckTokens(s.prompt, vocab, i, "prompt");
    CheckTokens(s.response, vocab, i, "response");
    TORCH_CHECK(!s.prompt.empty() || n == 0, "train sample ", i, " (group ", s.group_id,
                ") has an empty prompt; every sample needs at least one prompt token (e.g. BOS)");
    TORCH_CHECK(s.behaviour_logprobs.size() == n || (s.behaviour_logprobs.empty() && !NeedsBehaviour(algorithm)),
                "train sample ", i, " (group ", s.group_id, ") has ", s.behaviour_logprobs.size(),
                " behaviour log-probs for ", n, " response tokens; algorithm '", algorithm,
                "' needs the generator's log-prob of every response token");
    TORCH_CHECK(s.proximal_logprobs.empty() || s.proximal_logprobs.size() == n, "train sample ", i, " has ",
                s.proximal_logprobs.size(), " proximal log-probs for ", n,
                " response tokens; pass one per token or none");
  }
}

// Uneven all-gather of a 1-D tensor; returns the concatenation over ranks and this rank's offset.
at::Tensor AllGatherVar(Communicator& comm, const at::Tensor& local, int64_t* offset) {
  at::Tensor count = at::full({1}, local.numel(), at::kLong);
  std::vector<at::Tensor> counts;
  for (int r = 0; r < comm.Size(); ++r) counts.push_back(at::empty({1}, at::kLong));
  comm.AllGather(counts, count)->Wait();
  int64_t total = 0;
  std::vector<at::Tensor> parts;
  at::Tensor out = at::empty({at::cat(counts).sum().item<int64_t>()}, local.options());
  for (int r = 0; r < comm.Size(); ++r) {
    const int64_t n = counts[size_t(r)].item<int64_t>();
    if (r == comm.Rank()) *offset = total;
    parts.push_back(out.narrow(0, total, n));
    total += n;
  }
  comm.AllGather(parts, local.contiguous())->Wait();
  return out;
}

template <typename T>
std::vector<T> ToVector(const at::Tensor& t) {
  at::Tensor c = t.contiguous();
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

double Sum(Communicator& comm, double value) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  comm.AllReduce(t)->Wait();
  return t.item<double>();
}

}  // namespace

using trainer_detail::MicroBatchOutput;
using trainer_detail::StepAccumulators;
using trainer_detail::StepContext;

void trainer_detail::CollectiveTry(Communicator& comm, bool active, const std::function<void()>& fn,
                                   const std::string& what) {
  std::exception_ptr error;
  if (active) {
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
  }
  at::Tensor failed = at::full({1}, error ? 1 : 0, at::kLong);
  comm.AllReduce(failed, {ReduceOp::kMax})->Wait();
  if (error) std::rethrow_exception(error);
  TORCH_CHECK(failed.item<int64_t>() == 0, what, " failed on another rank; see that rank's error");
}

TrainStepMetrics Trainer::RunStep(const TrainBatch& batch, const std::string& algorithm) {
  // A bad sample on one rank must fail every rank before the first collective of the step.
  trainer_detail::CollectiveTry(dp_, true, [&] { CheckSamples(batch, algorithm, model_config_.vocab_size); },
                                "checking the train batch");
  for (auto& p : work_->parameters()) p.mutable_grad() = at::Tensor();  // left over by a failed step
  GatherParams();
  StepContext ctx;
  ctx.algorithm = algorithm;
  ctx.temperature = algorithm == "sft" ? 1.0 : cfg_.temperature;
  ctx.micro = PackSamples(batch.samples, cfg_.micro_batch_tokens);
  if (zero3_) {
    // Per-layer gathers are collective: every rank runs as many micro-batches as the busiest one.
    at::Tensor count = at::full({1}, int64_t(ctx.micro.size()), at::kLong);
    dp_.AllReduce(count, {ReduceOp::kMax})->Wait();
    while (int64_t(ctx.micro.size()) < count.item<int64_t>()) ctx.micro.push_back(PaddingMicroBatch());
    grad_ = at::zeros_like(shard_);
  }
  PrepareStep(batch, ctx);
  StepAccumulators acc;
  at::Tensor value_param;
  if (value_master_.defined()) value_param = value_master_.detach().requires_grad_(true);
  for (const PackedMicroBatch& mb : ctx.micro) {
    MicroBatchOutput out = ForwardMicroBatch(ctx, mb, value_param);
    if (mb.padding) {  // zero loss; the backward still runs every layer's collectives
      at::Tensor zero = out.logp.sum() * 0.0;
      if (out.values.defined()) zero = zero + out.values.sum() * 0.0;
      zero.backward();
      continue;
    }
    at::Tensor loss_t = TokenLoss(ctx, mb, out, acc);
    at::Tensor total = (loss_t * BroadcastPerSample(mb, ctx.token_weight)).sum();
    total.backward();
    acc.loss += total.item<double>();
    acc.entropy += out.entropy.detach().to(at::kDouble).sum().item<double>();
  }
  if (value_param.defined()) {
    value_grad_ = value_param.grad().defined() ? value_param.grad().clone() : at::zeros_like(value_master_);
  }

  TrainStepMetrics m;
  const std::vector<double> partial{acc.loss,   acc.kl,        acc.entropy,      acc.value_loss,
                                    acc.iw.sum, acc.iw.sum_sq, acc.iw.truncated, acc.iw.count};
  at::Tensor sums = at::tensor(partial, at::kDouble);
  dp_.AllReduce(sums)->Wait();
  at::Tensor iw_max = at::full({1}, acc.iw.max, at::kDouble);
  dp_.AllReduce(iw_max, {ReduceOp::kMax})->Wait();
  const auto s = ToVector<double>(sums);
  ImportanceStats iw{s[4], s[5], iw_max.item<double>(), s[6], s[7]};
  const double tokens = std::max<double>(1.0, double(ctx.global_tokens));
  m.loss = s[0];
  m.kl = s[1] / tokens;
  m.entropy = s[2] / tokens;
  m.value_loss = s[3];
  m.iw_mean = iw.Mean(), m.iw_max = iw.max, m.iw_truncated_fraction = iw.TruncatedFraction(), m.iw_ess = iw.Ess();
  m.tokens = ctx.global_tokens;
  m.samples = ctx.global_samples;
  m.grad_norm = ReduceGrads();
  ReleaseParams();
  m.lr = LearningRateAt(cfg_.schedule, cfg_.optimizer.lr, adam_->step());
  if (!std::isfinite(m.loss) || !std::isfinite(m.grad_norm)) {
    // Every rank sees the same global loss and norm, so every rank skips together.
    m.skipped = true;
    m.skipped_steps = ++skipped_steps_;
    grad_ = at::Tensor();
    value_grad_ = at::Tensor();
    return m;
  }
  double clip_coef = 1.0;
  if (cfg_.max_grad_norm > 0) clip_coef = std::min(1.0, cfg_.max_grad_norm / (m.grad_norm + 1e-6));
  ApplyUpdate(m.lr, clip_coef);
  ++version_;
  m.skipped_steps = skipped_steps_;
  return m;
}

void Trainer::PrepareStep(const TrainBatch& batch, StepContext& ctx) {
  const auto& samples = batch.samples;
  const size_t n = samples.size();
  int64_t local_tokens = 0, local_samples = 0;
  for (const auto& s : samples) {
    local_tokens += int64_t(s.response.size());
    local_samples += s.response.empty() ? 0 : 1;
    ctx.mu.push_back(s.behaviour_logprobs);
    ctx.prox.push_back(s.proximal_logprobs);
  }
  ctx.global_tokens = int64_t(Sum(dp_, double(local_tokens)));
  ctx.global_samples = int64_t(Sum(dp_, double(local_samples)));
  ctx.token_weight.assign(n, 0.0);
  for (size_t i = 0; i < n; ++i) {
    const double len = double(samples[i].response.size());
    if (len == 0) continue;
    if (cfg_.aggregation == "token_mean") ctx.token_weight[i] = 1.0 / double(ctx.global_tokens);
    else if (cfg_.aggregation == "seq_mean_token_mean") ctx.token_weight[i] = 1.0 / (len * double(ctx.global_samples));
    else ctx.token_weight[i] = 1.0 / (double(ctx.global_samples) * cfg_.norm_constant);
  }
  if (ctx.algorithm == "sft") return;

  std::vector<double> rewards;
  for (const auto& s : samples) rewards.push_back(s.reward);
  std::vector<std::vector<float>> kl_tokens;  // k1 per token, when the KL is folded into the reward
  if (cfg_.kl.coef > 0 && cfg_.kl.mode == "reward") kl_tokens = PerTokenNoGrad(ctx, samples, /*values=*/false);
  if (ctx.algorithm == "ppo") {
    PreparePpo(samples, kl_tokens, ctx);
    return;
  }
  for (size_t i = 0; i < n; ++i)
    for (float k : kl_tokens.empty() ? std::vector<float>() : kl_tokens[i]) rewards[i] -= cfg_.kl.coef * k;

  std::vector<int64_t> groups;
  for (const auto& s : samples) groups.push_back(s.group_id);
  int64_t offset = 0;
  const auto all_rewards = ToVector<double>(AllGatherVar(dp_, at::tensor(rewards, at::kDouble), &offset));
  const auto all_groups = ToVector<int64_t>(AllGatherVar(dp_, at::tensor(groups, at::kLong), &offset));
  std::vector<double> all_adv;
  if (ctx.algorithm == "rloo") all_adv = RlooAdvantages(all_rewards, all_groups);
  else if (ctx.algorithm == "reinforce") all_adv = BaselineAdvantages(all_rewards);
  else all_adv = GroupAdvantages(all_rewards, all_groups, cfg_.grpo.normalize_std, cfg_.grpo.std_eps);
  ctx.advantage.assign(all_adv.begin() + offset, all_adv.begin() + offset + int64_t(n));
}

void Trainer::PreparePpo(const std::vector<TrainSample>& samples, const std::vector<std::vector<float>>& kl_tokens,
                         StepContext& ctx) {
  ctx.old_values = PerTokenNoGrad(ctx, samples, /*values=*/true);
  double sum = 0, sum_sq = 0, count = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    const size_t len = samples[i].response.size();
    std::vector<double> rewards(len, 0.0), values(ctx.old_values[i].begin(), ctx.old_values[i].end());
    if (len > 0) rewards[len - 1] = samples[i].reward;
    if (!kl_tokens.empty())
      for (size_t t = 0; t < len; ++t) rewards[t] -= cfg_.kl.coef * kl_tokens[i][t];
    GaeResult gae = Gae(rewards, values, cfg_.ppo.gamma, cfg_.ppo.lambda);
    for (double a : gae.advantages) sum += a, sum_sq += a * a, count += 1;
    ctx.token_advantage.emplace_back(gae.advantages.begin(), gae.advantages.end());
    ctx.returns.emplace_back(gae.returns.begin(), gae.returns.end());
  }
  if (!cfg_.ppo.whiten_advantages) return;
  at::Tensor stats = at::tensor(std::vector<double>{sum, sum_sq, count}, at::kDouble);
  dp_.AllReduce(stats)->Wait();
  const auto s = ToVector<double>(stats);
  const double mean = s[2] > 0 ? s[0] / s[2] : 0.0;
  const double std = s[2] > 0 ? std::sqrt(std::max(0.0, s[1] / s[2] - mean * mean)) : 0.0;
  for (auto& adv : ctx.token_advantage) {
    std::vector<double> a(adv.begin(), adv.end());
    Whiten(a, mean, std);
    adv.assign(a.begin(), a.end());
  }
}

std::vector<std::vector<float>> Trainer::PerTokenNoGrad(const StepContext& ctx,
                                                        const std::vector<TrainSample>& samples, bool values) {
  at::NoGradGuard no_grad;
  std::vector<std::vector<float>> out(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) out[i].resize(samples[i].response.size());
  at::Tensor value_param = values ? value_master_ : at::Tensor();
  for (const PackedMicroBatch& mb : ctx.micro) {
    MicroBatchOutput o = ForwardMicroBatch(ctx, mb, value_param);
    if (mb.padding) continue;
    at::Tensor per_token = values ? o.values : KlEstimate(o.logp, ReferenceLogprobs(ctx, mb), "k1");
    const auto v = ToVector<float>(per_token.to(at::kFloat));
    for (size_t t = 0; t < v.size(); ++t) out[size_t(mb.sample_index[t])][size_t(mb.token_index[t])] = v[t];
  }
  return out;
}

MicroBatchOutput Trainer::ForwardMicroBatch(const StepContext& ctx, const PackedMicroBatch& mb,
                                            const at::Tensor& value_param) {
  LlamaInputs inputs;
  inputs.input_ids = mb.input_ids;
  inputs.segment_ids = mb.segment_ids;
  at::Tensor hidden = Hidden(inputs).squeeze(0).index_select(0, mb.positions);  // [N, D]
  kernels::TokenLogprobsOptions options;
  options.token_chunk = cfg_.logprob_token_chunk;
  options.vocab_chunk = cfg_.logprob_vocab_chunk;
  options.temperature = ctx.temperature;
  kernels::TokenLogprobsResult r = kernels::TokenLogprobsAndEntropy(hidden, work_->LmHeadWeight(), mb.targets, options);
  MicroBatchOutput out{r.logprobs, r.entropy, at::Tensor()};
  if (value_param.defined()) {
    const int64_t d = hidden.size(1);
    out.values = at::matmul(hidden.to(at::kFloat), value_param.narrow(0, 0, d)) + value_param.narrow(0, d, 1);
  }
  return out;
}

at::Tensor Trainer::ReferenceLogprobs(const StepContext& ctx, const PackedMicroBatch& mb) {
  at::NoGradGuard no_grad;
  LlamaInputs inputs;
  inputs.input_ids = mb.input_ids;
  inputs.segment_ids = mb.segment_ids;
  at::Tensor hidden = reference_->Hidden(inputs).squeeze(0).index_select(0, mb.positions);
  kernels::TokenLogprobsOptions options;
  options.token_chunk = cfg_.logprob_token_chunk;
  options.vocab_chunk = cfg_.logprob_vocab_chunk;
  options.temperature = ctx.temperature;
  return kernels::TokenLogprobs(hidden, reference_->LmHeadWeight(), mb.targets, options);
}

}  // namespace llamarl
