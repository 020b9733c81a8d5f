// Trainer::RunStep: one optimizer step (see trainer.h for the sequence and the collectives).
// Legend: N = response tokens of a micro-batch, D = hidden size.
#include "trainer/trainer.h"

#include "core/check.h"
#include "core/communicator.h"
#include "kernels/token_logprobs.h"
#include "trainer/adamw.h"
#include "trainer/advantages.h"
#include "trainer/packing.h"
#include "trainer/step_context.h"
#include "trainer/zero3_layers.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <limits>

namespace llamarl {
namespace {

bool NeedsBehaviour(const std::string& a) {
  return a == "grpo" || a == "aipo" || a == "tis" || a == "decoupled_ppo" || a == "ppo" || a == "gspo" ||
         a == "cispo";
}

void CheckTokens(const std::vector<int64_t>& tokens, int64_t vocab, size_t sample, const char* what) {
  for (int64_t t : tokens)
    LLAMARL_CHECK(t >= 0 && t < vocab, "train sample ", sample, " has ", what, " token ", t, " outside [0, vocab_size ",
                  vocab, "); the tokenizer does not match this model");
}

void CheckSamples(const TrainBatch& batch, const std::string& algorithm, int64_t vocab, int64_t sampled_vocab) {
  for (size_t i = 0; i < batch.samples.size(); ++i) {
    const TrainSample& s = batch.samples[i];
    const size_t n = s.response.size();
    CheckTokens(s.prompt, vocab, i, "prompt");
    CheckTokens(s.response, vocab, i, "response");
    for (int64_t t : s.response)
      LLAMARL_CHECK(t < sampled_vocab, "train sample ", i, " has response token ", t, " at or above the sampled ",
                    "vocabulary (", sampled_vocab, " of ", vocab, " rows; the rest are padding the sampler never draws)");
    LLAMARL_CHECK(!s.prompt.empty() || n == 0, "train sample ", i, " (group ", s.group_id,
                  ") has an empty prompt; every sample needs at least one prompt token (e.g. BOS)");
    LLAMARL_CHECK(s.behaviour_logprobs.size() == n || (s.behaviour_logprobs.empty() && !NeedsBehaviour(algorithm)),
                  "train sample ", i, " (group ", s.group_id, ") has ", s.behaviour_logprobs.size(),
                  " behaviour log-probs for ", n, " response tokens; algorithm '", algorithm,
                  "' needs the generator's log-prob of every response token");
    LLAMARL_CHECK(s.loss_mask.empty() || s.loss_mask.size() == n, "train sample ", i, " has a loss_mask of ",
                  s.loss_mask.size(), " entries for ", n, " response tokens; pass one per token or none");
    LLAMARL_CHECK(s.proximal_logprobs.empty() || s.proximal_logprobs.size() == n, "train sample ", i, " has ",
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
  at::Tensor c = t.cpu().contiguous();  // a no-op on the host
  return std::vector<T>(c.data_ptr<T>(), c.data_ptr<T>() + c.numel());
}

double Sum(Communicator& comm, double value) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  comm.AllReduce(t)->Wait();
  return t.item<double>();
}

}  // namespace

using trainer_detail::MicroBatchOutput;
using trainer_detail::NoGradScores;
using trainer_detail::ScoreRequest;
using trainer_detail::StepAccumulators;
using trainer_detail::StepContext;
using trainer_detail::UpdateResult;

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
  LLAMARL_CHECK(failed.item<int64_t>() == 0, what, " failed on another rank; see that rank's error");
}

TrainStepMetrics Trainer::RunStep(const TrainBatch& batch, const std::string& algorithm) {
  // A bad sample on one rank must fail every rank before the first collective of the step.
  trainer_detail::CollectiveTry(dp_, true,
                                [&] { CheckSamples(batch, algorithm, model_config_.vocab_size, SampledVocab()); },
                                "checking the train batch");
  for (auto& p : work_->parameters()) p.mutable_grad() = at::Tensor();  // left over by a failed step
  GatherParams();
  StepContext ctx;
  ctx.algorithm = algorithm;
  ctx.temperature = algorithm == "sft" ? 1.0 : cfg_.temperature;
  PrepareStep(batch, ctx);
  StepAccumulators acc;
  std::vector<UpdateResult> updates = RunUpdates(batch.samples, ctx, acc);
  TrainStepMetrics m = ReduceStepMetrics(acc, updates);
  m.tokens = ctx.step_tokens, m.samples = ctx.step_samples;
  m.explained_variance = ctx.explained_variance;
  if (critic_ && algorithm == "ppo") {
    const TrainStepMetrics c = critic_->FitValues(batch.samples, ctx);
    m.value_loss = c.value_loss, m.value_clip_frac = c.value_clip_frac;
    m.critic_grad_norm = c.grad_norm, m.critic_lr = c.lr;
  }
  if (m.updates_applied > 0) ++version_;
  m.skipped_steps = skipped_steps_;
  return m;
}

std::vector<UpdateResult> Trainer::RunUpdates(const std::vector<TrainSample>& samples, StepContext& ctx,
                                              StepAccumulators& acc) {
  const bool sft = ctx.algorithm == "sft";
  const int64_t epochs = sft ? 1 : cfg_.ppo_epochs, parts = sft ? 1 : cfg_.num_minibatches;
  const std::vector<int64_t> bounds = EvenSplit(int64_t(samples.size()), int(parts));
  std::vector<UpdateResult> updates;
  for (int64_t epoch = 0; epoch < epochs; ++epoch) {
    for (int64_t part = 0; part < parts; ++part) {
      if (!updates.empty()) GatherParams();  // the previous update changed the shards
      if (parts > 1) {  // with one part, the caller selected the whole batch
        std::vector<int64_t> subset;
        for (int64_t i = bounds[size_t(part)]; i < bounds[size_t(part) + 1]; ++i) subset.push_back(i);
        SelectMinibatch(samples, subset, ctx);
      }
      updates.push_back(RunUpdate(ctx, acc));
    }
  }
  return updates;
}

std::vector<std::vector<float>> Trainer::ScoreValues(const std::vector<TrainSample>& samples) {
  LLAMARL_ASSERT(value_only_, "ScoreValues is the separate critic's");
  StepContext ctx;
  ctx.algorithm = "value";
  ScoreRequest want;
  want.values = true;
  GatherParams();
  NoGradScores scores = ScoreNoGrad(ctx, samples, want);
  ReleaseParams();
  return std::move(scores.values);
}

TrainStepMetrics Trainer::FitValues(const std::vector<TrainSample>& samples, const StepContext& policy_ctx) {
  LLAMARL_ASSERT(value_only_, "FitValues is the separate critic's");
  for (auto& p : work_->parameters()) p.mutable_grad() = at::Tensor();  // left over by a failed step
  GatherParams();
  StepContext ctx;
  ctx.algorithm = "value";
  ctx.returns = policy_ctx.returns;
  ctx.old_values = policy_ctx.old_values;
  std::vector<int64_t> all(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) all[i] = int64_t(i);
  SelectMinibatch(samples, all, ctx);
  StepAccumulators acc;
  std::vector<UpdateResult> updates = RunUpdates(samples, ctx, acc);
  TrainStepMetrics m = ReduceStepMetrics(acc, updates);
  m.tokens = ctx.global_tokens, m.samples = ctx.global_samples;
  m.skipped_steps = skipped_steps_;
  return m;
}

UpdateResult Trainer::RunUpdate(StepContext& ctx, StepAccumulators& acc) {
  if (zero3_) {
    if (!grad_buffer_.defined()) grad_buffer_ = at::empty_like(shard_);
    grad_ = grad_buffer_.zero_();
  }
  at::Tensor value_param;
  if (value_master_.defined()) value_param = value_master_.detach().requires_grad_(true);
  double local_loss = 0;
  for (const PackedMicroBatch& mb : ctx.micro) {
    MicroBatchOutput out = ForwardMicroBatch(ctx, mb, value_param);
    if (mb.padding) {  // zero loss; the backward still runs every layer's collectives
      if (cfg_.kl.coef > 0) ReferenceLogprobs(ctx, mb);  // and so does the reference's forward
      at::Tensor zero = (out.logp.defined() ? out.logp : out.values).sum() * 0.0;
      if (out.logp.defined() && out.values.defined()) zero = zero + out.values.sum() * 0.0;
      zero.backward();
      continue;
    }
    at::Tensor loss_t = TokenLoss(ctx, mb, out, acc);
    at::Tensor total = (loss_t * BroadcastPerSample(mb, ctx.token_weight)).sum();
    total.backward();
    local_loss += total.item<double>();
    if (out.entropy.defined()) acc.entropy += out.entropy.detach().to(at::kDouble).sum().item<double>();
  }
  if (value_param.defined()) {
    value_grad_ = value_param.grad().defined() ? value_param.grad().clone() : at::zeros_like(value_master_);
  }
  acc.tokens += double(ctx.global_tokens);
  UpdateResult u;
  u.loss = Sum(dp_, local_loss);
  acc.loss += u.loss;
  u.grad_norm = ReduceGrads();
  ReleaseParams();
  u.lr = LearningRateAt(cfg_.schedule, cfg_.optimizer.lr, adam_->step());
  if (!std::isfinite(u.loss) || !std::isfinite(u.grad_norm)) {
    // Every rank sees the same global loss and norm, so every rank skips together.
    u.skipped = true;
    ++skipped_steps_;
    grad_ = at::Tensor();
    value_grad_ = at::Tensor();
    return u;
  }
  double clip_coef = 1.0;
  if (cfg_.max_grad_norm > 0) clip_coef = std::min(1.0, cfg_.max_grad_norm / (u.grad_norm + 1e-6));
  ApplyUpdate(u.lr, clip_coef);
  return u;
}

TrainStepMetrics Trainer::ReduceStepMetrics(const StepAccumulators& acc, const std::vector<UpdateResult>& updates) {
  const RatioStats& r = acc.ratio;
  const std::vector<double> partial{acc.kl,          acc.entropy,         acc.value_loss, acc.iw.sum,
                                    acc.iw.sum_sq,   acc.iw.truncated,    acc.iw.count,   r.sum,
                                    r.clipped_low,   r.clipped_high,      r.kl,           r.count,
                                    acc.value_clipped, acc.value_tokens};
  at::Tensor sums = at::tensor(partial, at::kDouble);
  dp_.AllReduce(sums)->Wait();
  at::Tensor maxes = at::tensor(std::vector<double>{acc.iw.max, r.max, -r.min}, at::kDouble);
  dp_.AllReduce(maxes, {ReduceOp::kMax})->Wait();
  const auto s = ToVector<double>(sums);
  const auto mx = ToVector<double>(maxes);
  const ImportanceStats iw{s[3], s[4], mx[0], s[5], s[6]};
  const RatioStats ratio{s[7], -mx[2], mx[1], s[8], s[9], s[10], s[11]};
  const double tokens = std::max(1.0, acc.tokens), num_updates = double(updates.size());
  TrainStepMetrics m;
  m.kl = s[0] / tokens;
  m.entropy = s[1] / tokens;
  m.value_loss = s[2] / num_updates;
  m.value_clip_frac = s[13] > 0 ? s[12] / s[13] : 0.0;
  m.iw_mean = iw.Mean(), m.iw_max = iw.max, m.iw_truncated_fraction = iw.TruncatedFraction(), m.iw_ess = iw.Ess();
  m.ratio_mean = ratio.Mean(), m.ratio_min = ratio.Min(), m.ratio_max = ratio.max;
  m.clip_frac_low = ratio.ClippedLowFraction(), m.clip_frac_high = ratio.ClippedHighFraction();
  m.approx_kl = ratio.ApproxKl();
  m.lr = updates.front().lr;
  for (const UpdateResult& u : updates) {
    m.loss += u.loss / num_updates;
    m.grad_norm += u.grad_norm / num_updates;
    m.updates_applied += u.skipped ? 0 : 1;
  }
  m.updates = int64_t(updates.size());
  m.skipped = m.updates_applied == 0;
  return m;
}

void Trainer::PadForCollectives(std::vector<PackedMicroBatch>& micro) {
  if (!zero3_) return;
  // Per-layer gathers are collective: every rank runs as many micro-batches as the busiest one.
  at::Tensor count = at::full({1}, int64_t(micro.size()), at::kLong);
  dp_.AllReduce(count, {ReduceOp::kMax})->Wait();
  while (int64_t(micro.size()) < count.item<int64_t>()) micro.push_back(PaddingMicroBatch());
}

void Trainer::SelectMinibatch(const std::vector<TrainSample>& samples, const std::vector<int64_t>& subset,
                              StepContext& ctx) {
  std::vector<int64_t> trained;
  double local[2] = {0, 0};  // tokens, samples
  for (int64_t i : subset) {
    const TrainSample& s = samples[size_t(i)];
    if (s.NumTrainedTokens() == 0 || s.loss_masked) continue;
    trained.push_back(i);
    local[0] += double(s.NumTrainedTokens());
    local[1] += 1;
  }
  at::Tensor counts = at::tensor(std::vector<double>{local[0], local[1]}, at::kDouble);
  dp_.AllReduce(counts)->Wait();
  ctx.global_tokens = int64_t(counts[0].item<double>());
  ctx.global_samples = int64_t(counts[1].item<double>());
  ctx.micro = PackSamples(samples, trained, cfg_.micro_batch_tokens);
  PadForCollectives(ctx.micro);
  MoveToDevice(&ctx.micro, cfg_.device);
  ctx.token_weight.assign(samples.size(), 0.0);
  for (int64_t i : trained) {
    const double len = double(samples[size_t(i)].NumTrainedTokens());
    double& w = ctx.token_weight[size_t(i)];
    if (cfg_.aggregation == "token_mean") w = 1.0 / double(ctx.global_tokens);
    else if (cfg_.aggregation == "seq_mean_token_mean") w = 1.0 / (len * double(ctx.global_samples));
    else w = 1.0 / (double(ctx.global_samples) * cfg_.norm_constant);
  }
}

bool Trainer::NeedsProximalPass(const StepContext& ctx, const std::vector<TrainSample>& samples) const {
  if (ctx.algorithm != "tis" && ctx.algorithm != "decoupled_ppo") return false;
  // With one update the detached current log-probs are exactly the policy at the start of the step.
  if (cfg_.UpdatesPerStep() == 1) return false;
  bool missing = false;
  for (const auto& s : samples) missing |= s.proximal_logprobs.empty() && !s.response.empty();
  at::Tensor any = at::full({1}, int64_t(missing), at::kLong);
  dp_.AllReduce(any, {ReduceOp::kMax})->Wait();  // the pass is collective under zero3
  return any.item<int64_t>() > 0;
}

void Trainer::PrepareStep(const TrainBatch& batch, StepContext& ctx) {
  const auto& samples = batch.samples;
  const size_t n = samples.size();
  for (const auto& s : samples) {
    ctx.mu.push_back(s.behaviour_logprobs);
    ctx.prox.push_back(s.proximal_logprobs);
  }
  std::vector<int64_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = int64_t(i);
  SelectMinibatch(samples, all, ctx);
  ctx.step_tokens = ctx.global_tokens, ctx.step_samples = ctx.global_samples;
  if (ctx.algorithm == "sft") return;

  ScoreRequest want;
  want.logp = NeedsProximalPass(ctx, samples);
  want.values = ctx.algorithm == "ppo" && !critic_;
  want.kl = cfg_.kl.coef > 0 && cfg_.kl.mode == "reward";
  NoGradScores scores;
  if (want.logp || want.values || want.kl) scores = ScoreNoGrad(ctx, samples, want);
  for (size_t i = 0; i < n && want.logp; ++i)
    if (ctx.prox[i].empty()) ctx.prox[i] = scores.logp[i];
  if (ctx.algorithm == "ppo") {
    ctx.old_values = critic_ ? critic_->ScoreValues(samples) : std::move(scores.values);
    PreparePpo(samples, scores.kl, ctx);
    return;
  }
  std::vector<double> rewards;
  for (const auto& s : samples) rewards.push_back(s.reward);
  for (size_t i = 0; i < n && want.kl; ++i)
    for (float k : scores.kl[i]) rewards[i] -= cfg_.kl.coef * k;

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
  double sum = 0, sum_sq = 0, count = 0;
  std::vector<double> ev_local(4, 0.0);  // sums of R, R^2, R - V, (R - V)^2 for the explained variance
  for (size_t i = 0; i < samples.size(); ++i) {
    const TrainSample& sample = samples[i];
    const size_t len = sample.response.size();
    std::vector<double> rewards(len, 0.0), values(ctx.old_values[i].begin(), ctx.old_values[i].end());
    size_t last = len;  // the sample's reward sits on its last trained token
    while (last > 0 && !sample.Trains(last - 1)) --last;
    if (last > 0) rewards[last - 1] = sample.reward;
    if (!kl_tokens.empty())
      for (size_t t = 0; t < len; ++t) rewards[t] -= cfg_.kl.coef * kl_tokens[i][t];
    GaeResult gae = Gae(rewards, values, cfg_.ppo.gamma, cfg_.ppo.lambda, sample.loss_mask);
    for (size_t t = 0; t < len; ++t) {
      if (!sample.Trains(t)) continue;  // observation tokens: no advantage, no value target
      const double a = gae.advantages[t];
      sum += a, sum_sq += a * a, count += 1;
      const double r = gae.returns[t], e = r - values[t];
      ev_local[0] += r, ev_local[1] += r * r, ev_local[2] += e, ev_local[3] += e * e;
    }
    ctx.token_advantage.emplace_back(gae.advantages.begin(), gae.advantages.end());
    ctx.returns.emplace_back(gae.returns.begin(), gae.returns.end());
  }
  ev_local.insert(ev_local.end(), {sum, sum_sq, count});
  at::Tensor stats = at::tensor(ev_local, at::kDouble);
  dp_.AllReduce(stats)->Wait();
  const auto all = ToVector<double>(stats);
  ctx.explained_variance = ExplainedVariance(all[0], all[1], all[2], all[3], all[6]);
  if (!cfg_.ppo.whiten_advantages) return;
  const std::vector<double> s(all.begin() + 4, all.end());
  const double mean = s[2] > 0 ? s[0] / s[2] : 0.0;
  const double std = s[2] > 0 ? std::sqrt(std::max(0.0, s[1] / s[2] - mean * mean)) : 0.0;
  for (auto& adv : ctx.token_advantage) {
    std::vector<double> a(adv.begin(), adv.end());
    Whiten(a, mean, std);
    adv.assign(a.begin(), a.end());
  }
}

trainer_detail::NoGradScores Trainer::ScoreNoGrad(const StepContext& ctx, const std::vector<TrainSample>& samples,
                                                  const trainer_detail::ScoreRequest& want) {
  at::NoGradGuard no_grad;
  NoGradScores out;
  std::vector<std::vector<float>> shape(samples.size());
  for (size_t i = 0; i < samples.size(); ++i) shape[i].resize(samples[i].response.size());
  if (want.logp) out.logp = shape;
  if (want.values) out.values = shape;
  if (want.kl) out.kl = shape;
  auto scatter = [](const PackedMicroBatch& mb, const at::Tensor& per_token, std::vector<std::vector<float>>& dst) {
    const auto v = ToVector<float>(per_token.to(at::kFloat));
    for (size_t t = 0; t < v.size(); ++t) dst[size_t(mb.sample_index[t])][size_t(mb.token_index[t])] = v[t];
  };
  std::vector<PackedMicroBatch> micro = PackSamples(samples, cfg_.micro_batch_tokens);  // masked ones too
  PadForCollectives(micro);
  MoveToDevice(&micro, cfg_.device);
  at::Tensor value_param = want.values ? value_master_ : at::Tensor();
  for (const PackedMicroBatch& mb : micro) {
    MicroBatchOutput o = ForwardMicroBatch(ctx, mb, value_param);
    if (mb.padding) {
      if (want.kl) ReferenceLogprobs(ctx, mb);  // its gathers are collective
      continue;
    }
    if (want.logp) scatter(mb, o.logp, out.logp);
    if (want.values) scatter(mb, o.values, out.values);
    if (want.kl) scatter(mb, KlEstimate(o.logp, ReferenceLogprobs(ctx, mb), cfg_.kl.estimator), out.kl);
  }
  return out;
}

MicroBatchOutput Trainer::ForwardMicroBatch(const StepContext& ctx, const PackedMicroBatch& mb,
                                            const at::Tensor& value_param) {
  LlamaInputs inputs;
  inputs.input_ids = mb.input_ids;
  inputs.segment_ids = mb.segment_ids;
  at::Tensor hidden = Hidden(inputs).squeeze(0).index_select(0, mb.positions);  // [N, D]
  MicroBatchOutput out;
  if (ctx.algorithm != "value") {  // a critic scores no tokens
    kernels::TokenLogprobsOptions options;
    options.token_chunk = cfg_.logprob_token_chunk;
    options.vocab_chunk = cfg_.logprob_vocab_chunk;
    options.temperature = ctx.temperature;
    kernels::TokenLogprobsResult r = kernels::TokenLogprobsAndEntropy(hidden, SampledHead(*work_), mb.targets, options);
    out.logp = r.logprobs, out.entropy = r.entropy;
  }
  if (value_param.defined()) {
    const int64_t d = hidden.size(1);
    out.values = at::matmul(hidden.to(at::kFloat), value_param.narrow(0, 0, d)) + value_param.narrow(0, d, 1);
  }
  return out;
}

int64_t Trainer::SampledVocab() const {
  return cfg_.sampled_vocab_size > 0 ? cfg_.sampled_vocab_size : model_config_.vocab_size;
}

at::Tensor Trainer::SampledHead(LlamaForCausalLMImpl& model) const {
  const at::Tensor& w = model.LmHeadWeight();
  return SampledVocab() == w.size(0) ? w : w.narrow(0, 0, SampledVocab());
}

at::Tensor Trainer::ReferenceLogprobs(const StepContext& ctx, const PackedMicroBatch& mb) {
  // Collective under zero3 (the reference's layers are gathered like the policy's): every rank calls
  // it for each of its micro-batches, padding ones included.
  at::NoGradGuard no_grad;
  GatherLayer(reference_groups_.front());
  GatherLayer(reference_groups_.back());
  LlamaInputs inputs;
  inputs.input_ids = mb.input_ids;
  inputs.segment_ids = mb.segment_ids;
  at::Tensor hidden = HiddenThrough(*reference_, reference_groups_, inputs).squeeze(0).index_select(0, mb.positions);
  kernels::TokenLogprobsOptions options;
  options.token_chunk = cfg_.logprob_token_chunk;
  options.vocab_chunk = cfg_.logprob_vocab_chunk;
  options.temperature = ctx.temperature;
  at::Tensor logprobs = kernels::TokenLogprobs(hidden, SampledHead(*reference_), mb.targets, options);
  ReleaseLayer(reference_groups_.front());
  ReleaseLayer(reference_groups_.back());
  return logprobs;
}

}  // namespace llamarl
