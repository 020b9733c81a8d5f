#include "kernels/token_logprobs.h"

#include "core/check.h"
#include "kernels/cuda_ops.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace llamarl::kernels {
namespace {

// Per-row state of the online log-sum-exp over vocab tiles, all [Tc] float32 views into [T] tensors.
// Invariant after each tile: max = max of the logits seen, sum = sum exp(l - max), and (with
// entropy) weighted = sum exp(l - max) * (l - max); rescaling by exp(old_max - new_max) keeps all
// three relative to the current max, so no [T, V] state is needed.
struct OnlineLse {
  at::Tensor max, sum, weighted, target_logit;
};

// Folds one tile of logits [Tc, Vc] (columns [v0, v0 + Vc)) into the state. The tile is
// overwritten. `first` marks the first tile of a row block, where the state holds no data yet.
void FoldTileCpu(at::Tensor& logits, const at::Tensor& targets, int64_t v0, bool first, bool with_entropy,
                 at::Tensor& exp_buffer, OnlineLse& state) {
  const int64_t num_cols = logits.size(1);
  const at::Tensor in_tile = targets.ge(v0).logical_and(targets.lt(v0 + num_cols));
  const at::Tensor picked = logits.gather(1, (targets - v0).clamp(0, num_cols - 1).unsqueeze(1)).squeeze(1);
  state.target_logit.copy_(at::where(in_tile, picked, state.target_logit));

  const at::Tensor tile_max = logits.amax({1});
  const at::Tensor new_max = first ? tile_max : at::maximum(state.max, tile_max);
  logits.sub_(new_max.unsqueeze(1));                     // l - new_max
  at::exp_out(exp_buffer, logits);                       // exp(l - new_max)
  const at::Tensor tile_sum = exp_buffer.sum({1});
  if (first) {
    state.sum.copy_(tile_sum);
    if (with_entropy) state.weighted.copy_(exp_buffer.mul_(logits).sum({1}));
  } else {
    const at::Tensor shift = state.max - new_max;        // <= 0
    const at::Tensor alpha = shift.exp();
    if (with_entropy) {
      // weighted' = alpha * (weighted + shift * sum) + tile's own term, all relative to new_max.
      state.weighted.add_(shift * state.sum).mul_(alpha).add_(exp_buffer.mul_(logits).sum({1}));
    }
    state.sum.mul_(alpha).add_(tile_sum);
  }
  state.max.copy_(new_max);
}

// Turns a tile of logits [Tc, Vc] into d(loss)/d(logits) in place:
//   G = g_lp * onehot(target) - p * (g_lp + g_H * (log p + H)),  p = exp(l - lse)
// (the second term is the entropy's gradient, dH/dl = -p * (log p + H)).
void TileGradientCpu(at::Tensor& logits, const at::Tensor& targets, int64_t v0, const at::Tensor& lse,
                     const at::Tensor& grad_logprobs, const at::Tensor& entropy, const at::Tensor& grad_entropy,
                     at::Tensor& exp_buffer) {
  const int64_t num_cols = logits.size(1);
  logits.sub_(lse.unsqueeze(1));  // log p
  at::exp_out(exp_buffer, logits);
  if (grad_entropy.defined()) {
    logits.add_(entropy.unsqueeze(1)).mul_(grad_entropy.unsqueeze(1)).add_(grad_logprobs.unsqueeze(1));
    logits.mul_(exp_buffer).neg_();
  } else {
    at::mul_out(logits, exp_buffer, grad_logprobs.neg().unsqueeze(1));
  }
  const at::Tensor rows = targets.ge(v0).logical_and(targets.lt(v0 + num_cols)).nonzero().squeeze(1);
  if (rows.numel() > 0) {
    logits.index_put_({rows, targets.index_select(0, rows) - v0}, grad_logprobs.index_select(0, rows),
                      /*accumulate=*/true);
  }
}

at::Tensor AsFloat(const at::Tensor& t) { return t.scalar_type() == at::kFloat ? t : t.to(at::kFloat); }

struct ForwardResult {
  at::Tensor logprobs, lse, entropy;
};

ForwardResult Forward(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                      const TokenLogprobsOptions& o, bool with_entropy) {
  const int64_t num_tokens = hidden.size(0), vocab = weight.size(0);
  const auto f32 = hidden.options().dtype(at::kFloat);
  at::Tensor max = at::empty({num_tokens}, f32), sum = at::empty({num_tokens}, f32);
  at::Tensor weighted = at::zeros({num_tokens}, f32), target_logit = at::zeros({num_tokens}, f32);
  const int64_t tc = std::min(o.token_chunk, num_tokens), vc = std::min(o.vocab_chunk, vocab);
  at::Tensor tile = at::empty({tc, vc}, f32), exp_buffer = at::empty({tc, vc}, f32);
  for (int64_t t0 = 0; t0 < num_tokens; t0 += tc) {
    const int64_t rows = std::min(tc, num_tokens - t0);
    const at::Tensor h = AsFloat(hidden.narrow(0, t0, rows));
    const at::Tensor y = targets.narrow(0, t0, rows);
    OnlineLse state{max.narrow(0, t0, rows), sum.narrow(0, t0, rows), weighted.narrow(0, t0, rows),
                    target_logit.narrow(0, t0, rows)};
    for (int64_t v0 = 0; v0 < vocab; v0 += vc) {
      const int64_t cols = std::min(vc, vocab - v0);
      at::Tensor logits = tile.narrow(0, 0, rows).narrow(1, 0, cols);
      at::Tensor exps = exp_buffer.narrow(0, 0, rows).narrow(1, 0, cols);
      if (cols != vc) {  // a narrowed column range is not contiguous; mm_out needs a dense tile
        logits = at::empty({rows, cols}, f32);
        exps = at::empty({rows, cols}, f32);
      }
      at::mm_out(logits, h, AsFloat(weight.narrow(0, v0, cols)).t());
      if (o.temperature != 1.0) logits.div_(o.temperature);
      if (hidden.is_cuda()) {
        cuda::FoldLogprobsTile(logits, y, v0, v0 == 0, with_entropy, state.max, state.sum, state.weighted,
                               state.target_logit);
      } else {
        FoldTileCpu(logits, y, v0, v0 == 0, with_entropy, exps, state);
      }
    }
  }
  at::Tensor lse = max + sum.log();
  ForwardResult result{target_logit - lse, lse, at::Tensor()};
  // H = lse - sum p l = log(sum) - weighted / sum, with both relative to the row max.
  if (with_entropy) result.entropy = sum.log() - weighted / sum;
  return result;
}

struct BackwardInputs {
  at::Tensor hidden, weight, targets, lse, entropy;  // entropy undefined without grad_entropy
  at::Tensor grad_logprobs, grad_entropy;            // [T] float32; grad_entropy may be undefined
};

// Returns {grad_hidden (float32), grad_weight (the weight's dtype)}. Vocab tiles are the outer loop
// so that each tile of grad_weight is finished before the next starts: a tile accumulates in float32
// and is rounded once into the weight's dtype, so a bf16 head never holds a float32 [V, D] gradient
// (0.54 GB at Qwen2.5-0.5B's 151,936 x 896). grad_hidden accumulates across vocab tiles.
std::pair<at::Tensor, at::Tensor> Backward(const BackwardInputs& in, const TokenLogprobsOptions& o,
                                           bool need_hidden, bool need_weight) {
  const int64_t num_tokens = in.hidden.size(0), vocab = in.weight.size(0), dim = in.weight.size(1);
  const auto f32 = in.hidden.options().dtype(at::kFloat);
  at::Tensor grad_hidden = need_hidden ? at::zeros({num_tokens, in.hidden.size(1)}, f32) : at::Tensor();
  const int64_t tc = std::min(o.token_chunk, num_tokens), vc = std::min(o.vocab_chunk, vocab);
  const bool f32_weight = in.weight.scalar_type() == at::kFloat;
  at::Tensor grad_weight = need_weight ? at::empty({vocab, dim}, in.weight.options()) : at::Tensor();
  at::Tensor grad_tile = need_weight && !f32_weight ? at::empty({vc, dim}, f32) : at::Tensor();
  const double inv_temperature = 1.0 / o.temperature;
  at::Tensor tile = at::empty({tc, vc}, f32), exp_buffer = at::empty({tc, vc}, f32);
  for (int64_t v0 = 0; v0 < vocab; v0 += vc) {
    const int64_t cols = std::min(vc, vocab - v0);
    const at::Tensor w = AsFloat(in.weight.narrow(0, v0, cols));
    at::Tensor gw;  // this vocab tile's float32 gradient, written in place for a float32 weight
    if (need_weight) gw = (f32_weight ? grad_weight.narrow(0, v0, cols) : grad_tile.narrow(0, 0, cols)).zero_();
    for (int64_t t0 = 0; t0 < num_tokens; t0 += tc) {
      const int64_t rows = std::min(tc, num_tokens - t0);
      const at::Tensor h = AsFloat(in.hidden.narrow(0, t0, rows));
      at::Tensor logits = cols == vc ? tile.narrow(0, 0, rows) : at::empty({rows, cols}, f32);
      at::Tensor exps = cols == vc ? exp_buffer.narrow(0, 0, rows) : at::empty({rows, cols}, f32);
      // mm with alpha folds the temperature into the recomputed logits.
      at::addmm_out(logits, logits, h, w.t(), /*beta=*/0, /*alpha=*/inv_temperature);
      const auto slice = [&](const at::Tensor& t) { return t.defined() ? t.narrow(0, t0, rows) : t; };
      if (in.hidden.is_cuda()) {
        cuda::LogprobsTileGradient(logits, slice(in.targets), v0, slice(in.lse), slice(in.grad_logprobs),
                                   slice(in.entropy), slice(in.grad_entropy));
      } else {
        TileGradientCpu(logits, slice(in.targets), v0, slice(in.lse), slice(in.grad_logprobs), slice(in.entropy),
                        slice(in.grad_entropy), exps);
      }
      if (need_hidden) grad_hidden.narrow(0, t0, rows).addmm_(logits, w, /*beta=*/1, inv_temperature);
      if (need_weight) gw.addmm_(logits.t(), h, /*beta=*/1, inv_temperature);
    }
    if (need_weight && !f32_weight) grad_weight.narrow(0, v0, cols).copy_(gw);
  }
  return {grad_hidden, grad_weight};
}

class TokenLogprobsFunction : public torch::autograd::Function<TokenLogprobsFunction> {
 public:
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden,
                                                const at::Tensor& weight, const at::Tensor& targets,
                                                const TokenLogprobsOptions& options, bool with_entropy) {
    ForwardResult r = Forward(hidden, weight, targets, options, with_entropy);
    ctx->save_for_backward({hidden, weight, targets, r.lse, with_entropy ? r.entropy : at::Tensor()});
    ctx->saved_data["token_chunk"] = options.token_chunk;
    ctx->saved_data["vocab_chunk"] = options.vocab_chunk;
    ctx->saved_data["temperature"] = options.temperature;
    if (!with_entropy) return {r.logprobs};
    return {r.logprobs, r.entropy};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    TokenLogprobsOptions options;
    options.token_chunk = ctx->saved_data["token_chunk"].toInt();
    options.vocab_chunk = ctx->saved_data["vocab_chunk"].toInt();
    options.temperature = ctx->saved_data["temperature"].toDouble();
    BackwardInputs in{saved[0], saved[1], saved[2], saved[3], saved[4], grads[0], at::Tensor()};
    const auto f32 = in.hidden.options().dtype(at::kFloat);
    in.grad_logprobs = grads[0].defined() ? AsFloat(grads[0]).contiguous() : at::zeros({in.hidden.size(0)}, f32);
    if (grads.size() > 1 && grads[1].defined()) in.grad_entropy = AsFloat(grads[1]).contiguous();
    if (!in.grad_entropy.defined()) in.entropy = at::Tensor();
    auto [grad_hidden, grad_weight] =
        Backward(in, options, ctx->needs_input_grad(0), ctx->needs_input_grad(1));
    if (grad_hidden.defined()) grad_hidden = grad_hidden.to(in.hidden.scalar_type());
    return {grad_hidden, grad_weight, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

void CheckInputs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                 const TokenLogprobsOptions& o) {
  LLAMARL_CHECK(hidden.defined() && weight.defined() && targets.defined(),
                "TokenLogprobs: hidden, weight and targets must be defined tensors");
  LLAMARL_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1),
                "TokenLogprobs: expected hidden [T, D] and weight [V, D] with the same D, got ", hidden.sizes(), " and ",
                weight.sizes(), "; flatten batch dims into T first");
  LLAMARL_CHECK(targets.dim() == 1 && targets.size(0) == hidden.size(0), "TokenLogprobs: targets must be [T] = [",
                hidden.size(0), "], got ", targets.sizes());
  LLAMARL_CHECK(targets.scalar_type() == at::kLong, "TokenLogprobs: targets must be int64, got ", targets.scalar_type());
  const auto type = hidden.scalar_type();
  LLAMARL_CHECK(type == at::kFloat || type == at::kBFloat16 || type == at::kHalf,
                "TokenLogprobs: hidden must be float32, bfloat16 or float16, got ", type);
  LLAMARL_CHECK(weight.scalar_type() == type, "TokenLogprobs: weight is ", weight.scalar_type(), " but hidden is ", type,
                "; cast one of them");
  LLAMARL_CHECK(weight.device() == hidden.device() && targets.device() == hidden.device(),
                "TokenLogprobs: hidden, weight and targets must be on one device, got ", hidden.device(), ", ",
                weight.device(), ", ", targets.device());
  LLAMARL_CHECK(hidden.is_cpu() || hidden.is_cuda(), "TokenLogprobs: unsupported device ", hidden.device());
  LLAMARL_CHECK(weight.size(0) > 0, "TokenLogprobs: the vocabulary (weight's first dim) is empty");
  LLAMARL_CHECK(o.token_chunk > 0 && o.vocab_chunk > 0, "TokenLogprobs: token_chunk and vocab_chunk must be positive, got ",
                o.token_chunk, " and ", o.vocab_chunk);
  LLAMARL_CHECK(o.temperature > 0 && std::isfinite(o.temperature),
                "TokenLogprobs: temperature must be positive and finite, got ", o.temperature,
                " (greedy decoding has no log-probabilities; score it with temperature 1)");
  if (targets.numel() > 0) {
    const int64_t lo = targets.min().item<int64_t>(), hi = targets.max().item<int64_t>();
    LLAMARL_CHECK(lo >= 0 && hi < weight.size(0), "TokenLogprobs: targets must lie in [0, ", weight.size(0),
                  ") (the vocabulary), got values in [", lo, ", ", hi, "]; mask padding before scoring");
  }
}

}  // namespace

at::Tensor TokenLogprobs(const at::Tensor& hidden, const at::Tensor& weight, const at::Tensor& targets,
                         const TokenLogprobsOptions& options) {
  CheckInputs(hidden, weight, targets, options);
  return TokenLogprobsFunction::apply(hidden.contiguous(), weight.contiguous(), targets.contiguous(), options,
                                      false)[0];
}

TokenLogprobsResult TokenLogprobsAndEntropy(const at::Tensor& hidden, const at::Tensor& weight,
                                            const at::Tensor& targets, const TokenLogprobsOptions& options) {
  CheckInputs(hidden, weight, targets, options);
  auto out = TokenLogprobsFunction::apply(hidden.contiguous(), weight.contiguous(), targets.contiguous(), options,
                                          true);
  return {out[0], out[1]};
}

}  // namespace llamarl::kernels
