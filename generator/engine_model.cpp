#include "generator/engine_model.h"

#include "core/check.h"
#include "core/communicator.h"
#include "generator/kv_cache.h"
#include "kernels/fp8.h"
#include "kernels/paged_attention.h"
#include "model/attention.h"
#include "model/shard_layout.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <cstring>
#include <string>
#include <unordered_map>

namespace llamarl {
namespace {

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Dimension along which TP splits `name`: 0 column-parallel, 1 row-parallel, -1 replicated.
int SplitDim(const std::string& name) {
  for (const char* suffix : {"q_proj.weight", "k_proj.weight", "v_proj.weight", "q_proj.bias", "k_proj.bias",
                             "v_proj.bias", "gate_proj.weight", "up_proj.weight"}) {
    if (EndsWith(name, suffix)) return 0;
  }
  if (EndsWith(name, "o_proj.weight") || EndsWith(name, "down_proj.weight")) return 1;
  return -1;
}

// The weights fp8 engines quantise: the 2-D projections inside the decoder layers.
bool IsLayerLinearWeight(const std::string& name) {
  return name.rfind("model.layers.", 0) == 0 && EndsWith(name, "_proj.weight");
}

int64_t LayerIndexOf(const std::string& name) {  // name starts with "model.layers.{i}."
  return std::stoll(name.substr(std::strlen("model.layers.")));
}

bool IsVocabParameter(const std::string& name) {
  return name == "model.embed_tokens.weight" || name == "lm_head.weight";
}

void CheckDivides(int tp, int64_t value, const char* field) {
  LLAMARL_CHECK(value % tp == 0, "generator tp_size (", tp, ") must divide ", field, " (", value,
                "); choose a tp_size that divides the model's head counts and intermediate_size");
}

}  // namespace

void CheckTensorParallel(const LlamaConfig& config, int tp_size) {
  LLAMARL_CHECK(tp_size >= 1, "generator tp_size must be >= 1, got ", tp_size);
  CheckDivides(tp_size, config.num_attention_heads, "num_attention_heads");
  CheckDivides(tp_size, config.num_key_value_heads, "num_key_value_heads");
  CheckDivides(tp_size, config.intermediate_size, "intermediate_size");
}

EngineModel::EngineModel(const LlamaConfig& config, LlamaForCausalLMImpl& full, Communicator* tp_group,
                         bool fp8_weights)
    : EngineModel(config, LlamaWeightSource::FromModel(full),
                  at::TensorOptions().dtype(full.LmHeadWeight().scalar_type()).device(full.LmHeadWeight().device()),
                  tp_group, fp8_weights) {}

EngineModel::EngineModel(const LlamaConfig& config, const LlamaWeightSource& weights, const at::TensorOptions& options,
                         Communicator* tp_group, bool fp8_weights)
    : config_(config), local_config_(config), tp_(tp_group && tp_group->Size() > 1 ? tp_group : nullptr) {
  const int tp = TpSize();
  CheckTensorParallel(config, tp);
  local_config_.num_attention_heads /= tp;
  local_config_.num_key_value_heads /= tp;
  local_config_.intermediate_size /= tp;
  // fp8: the module is built on the CPU, where at::empty leaves its pages untouched (never resident),
  // and each parameter then gets its storage on `options`' device: the layers' projections one
  // shared layer of scratch, the rest their own. No compute-dtype copy of the layers ever exists.
  local_ = LlamaForCausalLM(local_config_, fp8_weights ? options.device(at::kCPU) : options);
  if (fp8_weights) {
    ShareLayerScratch(options);
    fp8_layers_.resize(size_t(local_config_.num_hidden_layers));
  }
  torch::NoGradGuard no_grad;
  for (auto& item : local_->named_parameters()) {
    const at::Tensor full = weights.Get(item.key());
    const at::Tensor shard = ShardOf(item.key(), full);
    LLAMARL_CHECK(shard.sizes() == item.value().sizes(), "the weights passed to the engine have '", item.key(),
                  "' of shape ", full.sizes(), ", which does not match the engine's config; build them from the ",
                  "same config");
    if (fp8_weights && IsLayerLinearWeight(item.key())) {
      // Per row of the local shard, straight from the source's bytes (mapped pages, for a checkpoint).
      kernels::Fp8Tensor q = kernels::CastToFp8E4m3(shard, kernels::Fp8Scaling::kPerRow);
      fp8_[item.key()] = Fp8Weight{q.data.to(options.device()), q.scales.to(options.device())};
      fp8_layers_[size_t(LayerIndexOf(item.key()))].push_back(item.key());
    } else {
      if (item.value().device() != options.device()) item.value().set_data(at::empty(item.value().sizes(), options));
      LoadInto(item.value(), shard);  // the one conversion, from the slice (mapped pages) into the local dtype
    }
    weights.DoneWith(item.key());
    item.value().set_requires_grad(false);
    params_[item.key()] = item.value();
  }
}

void EngineModel::ShareLayerScratch(const at::TensorOptions& options) {
  LlamaDecoderLayerImpl& first = local_->Layer(0);
  auto& attn = *first.self_attn;
  auto& mlp = *first.mlp;
  // One buffer per group that kernels::FusedLinear reads as one matrix, as the layers lay them out.
  for (const auto& group : std::vector<std::vector<LlamaLinear>>{
           {attn.q_proj, attn.k_proj, attn.v_proj}, {attn.o_proj}, {mlp.gate_proj, mlp.up_proj}, {mlp.down_proj}}) {
    PlaceBackToBack(group, options);
  }
  for (int64_t i = 1; i < local_->NumLayers(); ++i) {
    LlamaDecoderLayerImpl& layer = local_->Layer(i);
    layer.self_attn->q_proj->weight.set_data(attn.q_proj->weight);
    layer.self_attn->k_proj->weight.set_data(attn.k_proj->weight);
    layer.self_attn->v_proj->weight.set_data(attn.v_proj->weight);
    layer.self_attn->o_proj->weight.set_data(attn.o_proj->weight);
    layer.mlp->gate_proj->weight.set_data(mlp.gate_proj->weight);
    layer.mlp->up_proj->weight.set_data(mlp.up_proj->weight);
    layer.mlp->down_proj->weight.set_data(mlp.down_proj->weight);
  }
}

void EngineModel::DecodeLayer(int64_t index) {
  for (const std::string& name : fp8_layers_[size_t(index)]) {
    const Fp8Weight& w = fp8_.at(name);
    kernels::CastFromFp8E4m3Into(w.data, w.scales, params_.at(name));
  }
}

std::vector<std::pair<std::string, at::Tensor>> EngineModel::LocalParameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& item : local_->named_parameters()) {
    auto it = fp8_.find(item.key());
    if (it == fp8_.end()) {
      out.emplace_back(item.key(), item.value());
    } else {
      out.emplace_back(item.key(),
                       kernels::CastFromFp8E4m3(it->second.data, it->second.scales, options().dtype().toScalarType()));
    }
  }
  return out;
}

int EngineModel::TpSize() const { return tp_ ? tp_->Size() : 1; }
int EngineModel::TpRank() const { return tp_ ? tp_->Rank() : 0; }

at::TensorOptions EngineModel::options() const {
  const at::Tensor& w = local_->LmHeadWeight();
  return at::TensorOptions().dtype(w.scalar_type()).device(w.device());
}

at::Tensor EngineModel::ShardOf(const std::string& name, const at::Tensor& full) const {
  const int dim = SplitDim(name);
  if (dim < 0 || TpSize() == 1) return full;
  LLAMARL_CHECK(full.dim() > dim, "parameter '", name, "' has shape ", full.sizes(), "; expected at least ",
                dim + 1, " dimensions");
  const int64_t width = full.size(dim) / TpSize();
  return full.narrow(dim, TpRank() * width, width);
}

at::Tensor EngineModel::AllReduce(at::Tensor partial) {
  if (!tp_) return partial;
  partial = partial.contiguous();
  tp_->AllReduce(partial)->Wait();
  return partial;
}

template <typename Attend>
at::Tensor EngineModel::RunLayer(int64_t index, const at::Tensor& x, const RopePositions& rope, Attend&& attend) {
  // The same composition as LlamaDecoderLayerImpl::forward, with the row-parallel outputs reduced.
  if (!fp8_.empty()) DecodeLayer(index);
  LlamaDecoderLayerImpl& layer = local_->Layer(index);
  QkvStates qkv = layer.self_attn->ProjectQkv(layer.input_layernorm(x), rope);
  at::Tensor h = x + AllReduce(layer.self_attn->ProjectOutput(attend(qkv)));
  return h + AllReduce(layer.mlp(layer.post_attention_layernorm(h)));
}

template <typename Attend>
at::Tensor EngineModel::RunRows(KvCache& cache, at::Tensor h, const RopePositions& rope, const RowsInCache& rows,
                                Attend&& attend) {
  const int64_t num_rows = h.size(0), tokens = h.size(1);
  auto written = [&](const at::Tensor& kv_RKTE) {  // -> [M, K, E]
    return kv_RKTE.transpose(1, 2).reshape({num_rows * tokens, kv_RKTE.size(1), kv_RKTE.size(3)}).index_select(0, rows.tokens);
  };
  for (int64_t l = 0; l < local_->NumLayers(); ++l) {
    h = RunLayer(l, h, rope, [&](const QkvStates& s) {
      cache.Write(l, written(s.k), written(s.v), rows.slots);
      return attend(l, s);
    });
  }
  at::Tensor last = (rows.lengths - 1).view({num_rows, 1, 1}).expand({num_rows, 1, h.size(2)});
  return local_->LmHead(local_->FinalNorm(h.gather(1, last))).squeeze(1);
}

at::Tensor EngineModel::Prefill(KvCache& cache, const PrefillBatch& batch) {
  const int64_t rows = batch.input_ids.size(0), tokens = batch.input_ids.size(1);
  at::Tensor h = local_->Embed(batch.input_ids);
  const auto long_options = batch.input_ids.options().dtype(at::kLong);
  at::Tensor positions = at::arange(tokens, long_options).expand({rows, tokens});
  // Right padding: a real token never sees a padded key, since padding comes after it.
  at::Tensor padding = positions.lt(batch.lengths.unsqueeze(1));
  at::Tensor allowed = BuildAttentionMask({rows, tokens, padding, at::Tensor()}, h.device());
  return RunRows(cache, h, local_->Rope(positions), {batch.lengths, batch.slots, batch.tokens},
                 [&](int64_t, const QkvStates& s) { return AttendEager(s.q, s.k, s.v, allowed); });
}

at::Tensor EngineModel::Extend(KvCache& cache, const ExtendBatch& batch) {
  const int64_t rows = batch.input_ids.size(0), tokens = batch.input_ids.size(1);
  at::Tensor h = local_->Embed(batch.input_ids);
  at::Tensor positions = batch.starts.view({rows, 1}) + at::arange(tokens, batch.starts.options()).view({1, tokens});
  // Row r's query at position p sees the keys at positions <= p: its cached history and the row's
  // earlier tokens. Padding queries see as much and are never read.
  const int64_t attended = (batch.starts + batch.lengths).max().item<int64_t>();
  at::Tensor allowed = at::arange(attended, positions.options()).view({1, 1, 1, attended}).le(positions.view({rows, 1, tokens, 1}));
  return RunRows(cache, h, local_->Rope(positions), {batch.lengths, batch.slots, batch.tokens},
                 [&](int64_t l, const QkvStates& s) {
                   auto [keys, values] = cache.Gather(l, batch.blocks, attended);  // [R, S, K, E]
                   return AttendEager(s.q, keys.transpose(1, 2), values.transpose(1, 2), allowed);
                 });
}

at::Tensor EngineModel::Decode(KvCache& cache, const DecodeBatch& batch) {
  const int64_t n = batch.tokens.size(0);
  // One query per sequence at its cached length; it attends to positions [0, length].
  const at::Tensor lengths = batch.positions + 1;
  at::Tensor h = local_->Embed(batch.tokens.view({n, 1}));
  RopePositions rope = local_->Rope(batch.positions.view({n, 1}));
  for (int64_t l = 0; l < local_->NumLayers(); ++l) {
    h = RunLayer(l, h, rope, [&](const QkvStates& s) {  // q [N, H, 1, E]
      cache.Write(l, s.k.squeeze(2), s.v.squeeze(2), batch.slots);
      at::Tensor q_NHE = s.q.reshape({n, s.q.size(1), s.q.size(3)});
      return kernels::PagedDecodeAttention(q_NHE, cache.Paged(l, batch.blocks, lengths)).view({n, 1, -1});
    });
  }
  return local_->LmHead(local_->FinalNorm(h)).squeeze(1);
}

void EngineModel::SyncSampled(std::vector<int64_t>& tokens, std::vector<float>& logprobs) {
  if (!tp_ || tokens.empty()) return;
  // One message: the tokens and the logprobs' bits, as int64.
  const int64_t n = int64_t(tokens.size());
  at::Tensor packed = at::empty({2 * n}, at::kLong);
  int64_t* data = packed.data_ptr<int64_t>();
  for (int64_t i = 0; i < n; ++i) {
    data[i] = tokens[size_t(i)];
    int32_t bits = 0;
    std::memcpy(&bits, &logprobs[size_t(i)], sizeof bits);
    data[n + i] = bits;
  }
  tp_->Broadcast(packed, {0})->Wait();
  for (int64_t i = 0; i < n; ++i) {
    tokens[size_t(i)] = data[i];
    const int32_t bits = int32_t(data[n + i]);
    std::memcpy(&logprobs[size_t(i)], &bits, sizeof bits);
  }
}

at::Tensor EngineModel::GatherVocabRows(const at::Tensor& rows) const {
  const std::vector<int64_t> bounds = EvenSplit(config_.vocab_size, TpSize());
  at::Tensor full = at::empty({config_.vocab_size, config_.hidden_size}, options());
  std::vector<at::Tensor> parts;
  for (int r = 0; r < TpSize(); ++r) {
    parts.push_back(full.narrow(0, bounds[size_t(r)], bounds[size_t(r) + 1] - bounds[size_t(r)]));
  }
  at::Tensor mine = rows.to(options()).contiguous();
  tp_->AllGather(parts, mine)->Wait();
  return full;
}

EngineModel::LoadTarget EngineModel::Resolve(const std::string& name, const at::Tensor& value) const {
  auto it = params_.find(name);
  const at::Tensor* param = it == params_.end() ? nullptr : &it->second;
  LLAMARL_CHECK(param != nullptr, "UpdateWeights: unknown parameter '", name, "'; expected an HF name of this ",
                "model such as model.layers.0.self_attn.q_proj.weight");
  LLAMARL_CHECK(value.defined() && value.is_floating_point(), "UpdateWeights: parameter '", name,
                "' must be a floating tensor, got ", value.defined() ? c10::toString(value.scalar_type()) : "undefined");
  if (value.sizes() == param->sizes()) return {*param, LoadKind::kLocal};
  const int dim = SplitDim(name);
  if (TpSize() > 1 && IsVocabParameter(name) && value.dim() == 2 && value.size(1) == config_.hidden_size) {
    const std::vector<int64_t> bounds = EvenSplit(config_.vocab_size, TpSize());
    if (value.size(0) == bounds[size_t(TpRank()) + 1] - bounds[size_t(TpRank())]) return {*param, LoadKind::kVocabRows};
  }
  if (dim >= 0 && TpSize() > 1 && ShardOf(name, value).sizes() == param->sizes()) return {*param, LoadKind::kFull};
  LLAMARL_FAIL("UpdateWeights: parameter '", name, "' has shape ", value.sizes(), "; expected this rank's ",
               "shard ", param->sizes(), " (tp ", TpSize(), ", rank ", TpRank(), ") or the full parameter");
}

at::Tensor EngineModel::InPlaceTarget(const std::string& name, at::IntArrayRef shape, at::ScalarType dtype) const {
  auto it = params_.find(name);
  if (it == params_.end()) return at::Tensor();
  const at::Tensor& p = it->second;
  if (fp8_.count(name) || p.sizes() != shape || p.scalar_type() != dtype || !p.is_contiguous()) return at::Tensor();
  return p;
}

std::pair<at::Tensor, at::Tensor> EngineModel::InPlaceFp8Target(const std::string& name, at::IntArrayRef shape) const {
  auto it = fp8_.find(name);
  if (it == fp8_.end() || it->second.data.sizes() != shape) return {};
  return {it->second.data, it->second.scales};
}

void EngineModel::LoadParameter(const std::string& name, const at::Tensor& value) {
  LoadTarget target = Resolve(name, value);
  // Inference mode, like Step(): an engine built inside InferenceMode holds inference tensors, which
  // may only be written in it.
  c10::InferenceMode inference;
  auto fp8 = fp8_.find(name);
  if (fp8 != fp8_.end()) {  // never vocabulary rows
    const at::Tensor shard = target.kind == LoadKind::kFull ? ShardOf(name, value) : value;
    kernels::Fp8Tensor q = kernels::CastToFp8E4m3(shard.to(fp8->second.data.device()), kernels::Fp8Scaling::kPerRow);
    fp8->second.data.copy_(q.data);
    fp8->second.scales.copy_(q.scales);
    return;
  }
  switch (target.kind) {
    case LoadKind::kLocal: target.param.copy_(value); break;
    case LoadKind::kVocabRows: target.param.copy_(GatherVocabRows(value)); break;
    case LoadKind::kFull: target.param.copy_(ShardOf(name, value)); break;
  }
}

void EngineModel::LoadFp8Parameter(const std::string& name, const at::Tensor& data, const at::Tensor& scales) {
  c10::InferenceMode inference;
  const at::Tensor target = InPlaceTarget(name, data.sizes(), options().dtype().toScalarType());
  if (target.defined()) {  // this rank's shard of a compute-dtype parameter: decoded straight into it
    kernels::CastFromFp8E4m3Into(data, scales, target);
    return;
  }
  LoadParameter(name, kernels::CastFromFp8E4m3(data, scales, options().dtype().toScalarType()));
}

}  // namespace llamarl
