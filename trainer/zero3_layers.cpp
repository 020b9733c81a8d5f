#include "trainer/zero3_layers.h"

#include "core/communicator.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>

#include <algorithm>

namespace llamarl {
namespace {

// The part [lo, hi) of rank r's shard that falls inside [begin, end).
std::pair<int64_t, int64_t> Overlap(const ShardedLayer& s, int r) {
  // Clamped into [begin, end] so that an empty overlap is still a valid (empty) narrow.
  const int64_t lo = std::min(s.end, std::max(s.begin, (*s.bounds)[size_t(r)]));
  const int64_t hi = std::max(lo, std::min(s.end, (*s.bounds)[size_t(r) + 1]));
  return {lo, hi};
}

// This rank's overlap with the group as a view of `shard` (empty when they do not overlap).
at::Tensor LocalPart(const ShardedLayer& s, const at::Tensor& shard) {
  auto [lo, hi] = Overlap(s, s.comm->Rank());
  if (hi == lo) return shard.narrow(0, 0, 0);
  return shard.narrow(0, lo - (*s.bounds)[size_t(s.comm->Rank())], hi - lo);
}

class LayerFunction : public torch::autograd::Function<LayerFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& positions,
                            const at::Tensor& inv_freq, double attention_scaling,
                            const c10::optional<at::Tensor>& allowed_or_none, std::vector<int64_t> segment_starts,
                            int64_t state) {
    // A packed layout has no mask; an undefined tensor may not be an input of a custom function.
    const at::Tensor allowed = allowed_or_none.value_or(at::Tensor());
    auto* s = reinterpret_cast<ShardedLayer*>(state);
    ctx->saved_data["state"] = state;
    ctx->saved_data["attention_scaling"] = attention_scaling;
    ctx->saved_data["segment_starts"] = segment_starts;
    ctx->save_for_backward({x, positions, inv_freq, allowed});
    GatherLayer(*s);
    at::Tensor out;
    {
      at::NoGradGuard no_grad;
      out = s->layer->forward(x, RopePositions{positions, {inv_freq, attention_scaling}},
                              AttentionLayout{std::move(segment_starts), allowed});
    }
    ReleaseLayer(*s);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* s = reinterpret_cast<ShardedLayer*>(ctx->saved_data["state"].toInt());
    auto saved = ctx->get_saved_variables();
    GatherLayer(*s);
    at::Tensor x = saved[0].detach().requires_grad_(true);
    std::vector<at::Tensor> inputs{x};
    inputs.insert(inputs.end(), s->params.begin(), s->params.end());
    std::vector<at::Tensor> g;
    {
      at::AutoGradMode enable(true);
      const double attention_scaling = ctx->saved_data["attention_scaling"].toDouble();
      AttentionLayout layout{ctx->saved_data["segment_starts"].toIntVector(), saved[3]};
      at::Tensor out = s->layer->forward(x, RopePositions{saved[1], {saved[2], attention_scaling}}, layout);
      g = torch::autograd::grad({out}, inputs, {grads[0]}, /*retain_graph=*/false, /*create_graph=*/false,
                                /*allow_unused=*/true);
    }
    ReduceScatterLayerGrads(*s, std::vector<at::Tensor>(g.begin() + 1, g.end()));
    ReleaseLayer(*s);
    return {g[0], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

void GatherLayer(const ShardedLayer& s) {
  const int ranks = s.comm->Size();
  at::Tensor full = at::empty({s.end - s.begin}, s.shard->options());
  std::vector<at::Tensor> outputs;
  for (int r = 0; r < ranks; ++r) {
    auto [lo, hi] = Overlap(s, r);
    outputs.push_back(full.narrow(0, lo - s.begin, hi - lo));
  }
  s.comm->AllGather(outputs, LocalPart(s, *s.shard))->Wait();
  at::NoGradGuard no_grad;
  const auto& params = s.params;
  // Parameters of one dtype other than the shard's get one converted copy of the whole range, so that
  // neighbours stay back to back (the decoder's fused q/k/v and gate/up GEMMs read them in place).
  at::Tensor source = full;
  bool one_dtype = !params.empty();
  for (const at::Tensor& p : params) one_dtype = one_dtype && p.scalar_type() == params[0].scalar_type();
  if (one_dtype && params[0].scalar_type() != full.scalar_type()) source = full.to(params[0].scalar_type());
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    int64_t numel = 1;
    for (int64_t d : s.shapes[i]) numel *= d;
    at::Tensor view = source.narrow(0, offset, numel).view(s.shapes[i]);
    // Parameters of the source's dtype alias it; others get a converted copy.
    at::Tensor p = params[i];
    p.set_data(p.scalar_type() == source.scalar_type() ? view : view.to(p.scalar_type()));
    offset += numel;
  }
}

void ReleaseLayer(const ShardedLayer& s) {
  for (at::Tensor p : s.params) p.set_data(at::empty({0}, p.options()));
}

void ReduceScatterLayerGrads(const ShardedLayer& s, const std::vector<at::Tensor>& grads) {
  // The gradients are converted straight into one float32 buffer (no per-parameter float32 copies
  // and their concatenation: for a 0.5B model's tied embedding those were 1 GB more at the peak).
  at::Tensor full = at::empty({s.end - s.begin}, s.grad_shard->options().dtype(at::kFloat));
  int64_t offset = 0;
  for (size_t i = 0; i < grads.size(); ++i) {
    int64_t numel = 1;
    for (int64_t d : s.shapes[i]) numel *= d;
    TORCH_INTERNAL_ASSERT(offset + numel <= full.numel(), "layer gradients exceed the range ", s.end - s.begin);
    at::Tensor part = full.narrow(0, offset, numel);
    if (grads[i].defined())
      part.copy_(grads[i].reshape({-1}));
    else
      part.zero_();
    offset += numel;
  }
  TORCH_INTERNAL_ASSERT(offset == full.numel(), "layer gradient has ", offset, " elements, range ", full.numel());
  at::Tensor local = LocalPart(s, *s.grad_shard);
  if (s.comm->Size() == 1) {
    local.add_(full);
    return;
  }
  std::vector<at::Tensor> inputs;
  for (int r = 0; r < s.comm->Size(); ++r) {
    auto [lo, hi] = Overlap(s, r);
    inputs.push_back(full.narrow(0, lo - s.begin, hi - lo));
  }
  at::Tensor out = at::empty({local.numel()}, full.options());
  s.comm->ReduceScatter(out, inputs)->Wait();
  local.add_(out);
}

at::Tensor ShardedLayerForward(ShardedLayer* s, const at::Tensor& x, const RopePositions& rope,
                               const AttentionLayout& layout) {
  const c10::optional<at::Tensor> allowed =
      layout.allowed.defined() ? c10::optional<at::Tensor>(layout.allowed) : c10::nullopt;
  return LayerFunction::apply(x, rope.positions, rope.tables.inv_freq, rope.tables.attention_scaling, allowed,
                              layout.segment_starts, reinterpret_cast<int64_t>(s));
}

}  // namespace llamarl
