#include "trainer/zero3_layers.h"

#include "core/check.h"
#include "core/communicator.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>
#include <utility>

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

// Frees the bytes of `t`'s storage in place: every tensor that shares the storage (the parameters'
// views, the views an autograd graph saved) keeps referring to it, and must not be read until
// RefillStorage gives it bytes again.
void FreeStorage(const at::Tensor& t) {
  c10::StorageImpl* impl = t.storage().unsafeGetStorageImpl();
  impl->set_data_ptr_noswap(at::DataPtr(nullptr, t.device()));
  impl->set_nbytes(0);
}

// Gives `target`'s freed storage the values of `full` (its layer range in the shards' dtype): takes
// full's bytes when the dtypes agree, else allocates and converts.
void RefillStorage(const at::Tensor& target, const at::Tensor& full) {
  c10::StorageImpl* impl = target.storage().unsafeGetStorageImpl();
  const size_t nbytes = size_t(target.numel()) * target.element_size();
  LLAMARL_CHECK(impl->nbytes() == 0 && target.storage_offset() == 0 && target.numel() == full.numel(),
                "RefillStorage: the target is not a freed layer buffer");
  if (full.scalar_type() == target.scalar_type() && full.storage_offset() == 0 && full.is_contiguous()) {
    impl->set_data_ptr_noswap(full.storage().unsafeGetStorageImpl()->set_data_ptr(at::DataPtr(nullptr, full.device())));
    impl->set_nbytes(nbytes);
    return;
  }
  impl->set_data_ptr_noswap(impl->allocator()->allocate(nbytes));
  impl->set_nbytes(nbytes);
  at::NoGradGuard no_grad;
  target.copy_(full);
}

// The group's full range in the shards' dtype: its prefetched gather, else one issued now; waited for.
at::Tensor TakeGather(ShardedLayer& s);

// The buffer the parameters become views of: `full` itself, or one converted copy of the whole range
// when every parameter has another dtype (so that neighbours stay back to back: the decoder's fused
// q/k/v and gate/up GEMMs read them in place); undefined when the parameters have several dtypes.
at::Tensor SourceOf(const ShardedLayer& s, const at::Tensor& full) {
  const auto& params = s.params;
  bool one_dtype = !params.empty();
  for (const at::Tensor& p : params) one_dtype = one_dtype && p.scalar_type() == params[0].scalar_type();
  if (!one_dtype) return at::Tensor();
  at::NoGradGuard no_grad;
  return params[0].scalar_type() == full.scalar_type() ? full : full.to(params[0].scalar_type());
}

// Points the parameters at their ranges of `source` (views, no copy); with an undefined source each
// gets a converted copy of its range of `full`.
void BindParams(const ShardedLayer& s, const at::Tensor& source, const at::Tensor& full) {
  at::NoGradGuard no_grad;
  int64_t offset = 0;
  for (size_t i = 0; i < s.params.size(); ++i) {
    int64_t numel = 1;
    for (int64_t d : s.shapes[i]) numel *= d;
    at::Tensor p = s.params[i];
    if (source.defined())
      p.set_data(source.narrow(0, offset, numel).view(s.shapes[i]));
    else
      p.set_data(full.narrow(0, offset, numel).view(s.shapes[i]).to(p.scalar_type()));
    offset += numel;
  }
}

class LayerFunction : public torch::autograd::Function<LayerFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& positions,
                            const at::Tensor& inv_freq, double attention_scaling,
                            const c10::optional<at::Tensor>& allowed_or_none, std::vector<int64_t> segment_starts,
                            int64_t state, bool keep_graph) {
    // A packed layout has no mask; an undefined tensor may not be an input of a custom function.
    const at::Tensor allowed = allowed_or_none.value_or(at::Tensor());
    auto* s = reinterpret_cast<ShardedLayer*>(state);
    ctx->saved_data["state"] = state;
    ctx->saved_data["keep_graph"] = keep_graph;
    const at::Tensor source = GatherLayer(*s);
    if (s->next) PrefetchLayer(*s->next);
    const RopePositions rope{positions, {inv_freq, attention_scaling}};
    at::Tensor out;
    if (keep_graph && source.defined()) {
      // Record the layer's own graph on a detached input; backward runs through it after refilling
      // the parameters' storage, which is freed in between.
      at::Tensor x_in = x.detach().requires_grad_(true);
      {
        at::AutoGradMode enable(true);
        out = s->layer->forward(x_in, rope, AttentionLayout{std::move(segment_starts), allowed});
      }
      ctx->saved_data["x_in"] = x_in;
      ctx->saved_data["out"] = out;
      ctx->saved_data["source"] = source;
      ReleaseLayer(*s);
      FreeStorage(source);
      return out.detach();
    }
    ctx->saved_data["keep_graph"] = false;  // several dtypes: recompute (no one storage to free)
    ctx->saved_data["attention_scaling"] = attention_scaling;
    ctx->saved_data["segment_starts"] = segment_starts;
    ctx->save_for_backward({x, positions, inv_freq, allowed});
    {
      at::NoGradGuard no_grad;
      out = s->layer->forward(x, rope, AttentionLayout{std::move(segment_starts), allowed});
    }
    ReleaseLayer(*s);
    return out;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto* s = reinterpret_cast<ShardedLayer*>(ctx->saved_data["state"].toInt());
    std::vector<at::Tensor> g = ctx->saved_data["keep_graph"].toBool() ? Replay(ctx, s, grads[0])
                                                                       : Recompute(ctx, s, grads[0]);
    ReduceScatterLayerGrads(*s, std::vector<at::Tensor>(g.begin() + 1, g.end()));
    ReleaseLayer(*s);
    return {g[0], at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }

 private:
  // Gradients of (input, parameters...) through the graph the forward recorded.
  static std::vector<at::Tensor> Replay(torch::autograd::AutogradContext* ctx, ShardedLayer* s,
                                        const at::Tensor& grad_out) {
    const at::Tensor source = ctx->saved_data["source"].toTensor();
    RefillStorage(source, TakeGather(*s));
    BindParams(*s, source, at::Tensor());
    if (s->prev) PrefetchLayer(*s->prev);
    std::vector<at::Tensor> inputs{ctx->saved_data["x_in"].toTensor()};
    inputs.insert(inputs.end(), s->params.begin(), s->params.end());
    const at::Tensor out = ctx->saved_data["out"].toTensor();
    ctx->saved_data.erase("out");  // the graph and its activations go with the last reference
    at::AutoGradMode enable(true);
    std::vector<at::Tensor> g = torch::autograd::grad({out}, inputs, {grad_out}, /*retain_graph=*/false,
                                                      /*create_graph=*/false, /*allow_unused=*/true);
    FreeStorage(source);
    return g;
  }

  // Gradients of (input, parameters...) through a recomputed forward (activation checkpointing).
  static std::vector<at::Tensor> Recompute(torch::autograd::AutogradContext* ctx, ShardedLayer* s,
                                           const at::Tensor& grad_out) {
    auto saved = ctx->get_saved_variables();
    GatherLayer(*s);
    if (s->prev) PrefetchLayer(*s->prev);
    at::Tensor x = saved[0].detach().requires_grad_(true);
    std::vector<at::Tensor> inputs{x};
    inputs.insert(inputs.end(), s->params.begin(), s->params.end());
    at::AutoGradMode enable(true);
    const double attention_scaling = ctx->saved_data["attention_scaling"].toDouble();
    AttentionLayout layout{ctx->saved_data["segment_starts"].toIntVector(), saved[3]};
    at::Tensor out = s->layer->forward(x, RopePositions{saved[1], {saved[2], attention_scaling}}, layout);
    return torch::autograd::grad({out}, inputs, {grad_out}, /*retain_graph=*/false, /*create_graph=*/false,
                                 /*allow_unused=*/true);
  }
};

}  // namespace

struct PendingGather {
  at::Tensor full;  // the group's range in the shards' dtype, being filled
  WorkPtr work;
};

namespace {

at::Tensor TakeGather(ShardedLayer& s) {
  if (!s.pending) PrefetchLayer(s);
  std::shared_ptr<PendingGather> p = std::move(s.pending);
  p->work->Wait();
  return p->full;
}

}  // namespace

void LinkDecoderLayers(std::vector<ShardedLayer>& groups, bool checkpoint) {
  for (size_t i = 1; i + 1 < groups.size(); ++i) {
    groups[i].checkpoint = checkpoint;
    groups[i].next = i + 2 < groups.size() ? &groups[i + 1] : nullptr;
    groups[i].prev = i > 1 ? &groups[i - 1] : nullptr;
  }
}

void PrefetchLayer(ShardedLayer& s) {
  LLAMARL_CHECK(!s.pending, "PrefetchLayer: the layer at [", s.begin, ", ", s.end, ") already has a gather in flight");
  auto p = std::make_shared<PendingGather>();
  p->full = at::empty({s.end - s.begin}, s.shard->options());
  std::vector<at::Tensor> outputs;
  for (int r = 0; r < s.comm->Size(); ++r) {
    auto [lo, hi] = Overlap(s, r);
    outputs.push_back(p->full.narrow(0, lo - s.begin, hi - lo));
  }
  p->work = s.comm->AllGather(outputs, LocalPart(s, *s.shard));
  s.pending = std::move(p);
}

at::Tensor GatherLayer(ShardedLayer& s) {
  const at::Tensor full = TakeGather(s);
  const at::Tensor source = SourceOf(s, full);
  BindParams(s, source, full);
  return source;
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
    LLAMARL_ASSERT(offset + numel <= full.numel(), "layer gradients exceed the range ", s.end - s.begin);
    at::Tensor part = full.narrow(0, offset, numel);
    if (grads[i].defined())
      part.copy_(grads[i].reshape({-1}));
    else
      part.zero_();
    offset += numel;
  }
  LLAMARL_ASSERT(offset == full.numel(), "layer gradient has ", offset, " elements, range ", full.numel());
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
  // The graph is kept only where a backward will come: a trainable layer with grad mode on.
  const bool keep_graph = !s->checkpoint && s->grad_shard != nullptr && at::GradMode::is_enabled();
  return LayerFunction::apply(x, rope.positions, rope.tables.inv_freq, rope.tables.attention_scaling, allowed,
                              layout.segment_starts, reinterpret_cast<int64_t>(s), keep_graph);
}

}  // namespace llamarl
