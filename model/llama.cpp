#include "model/llama.h"

#include "core/check.h"
#include "model/attention.h"

#include <ATen/ATen.h>

namespace llamarl {

LlamaBackboneImpl::LlamaBackboneImpl(const LlamaConfig& config, const at::TensorOptions& options) {
  embed_tokens = register_module("embed_tokens", LlamaEmbedding(config.vocab_size, config.hidden_size, options));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    typed_layers.emplace_back(config, options);
    layers->push_back(typed_layers.back());
  }
  norm = register_module("norm", LlamaRMSNorm(config.hidden_size, config.rms_norm_eps, options));
}

LlamaForCausalLMImpl::LlamaForCausalLMImpl(const LlamaConfig& config, const at::TensorOptions& options)
    : config_(config) {
  config_.Validate();
  model = register_module("model", LlamaBackbone(config_, options));
  if (!config_.tie_word_embeddings) {
    lm_head = register_module("lm_head", LlamaLinear(config_.hidden_size, config_.vocab_size, false, options));
  }
  inv_freq_ = kernels::RopeInvFreq(config_.RopeOptions());
}

at::Tensor LlamaForCausalLMImpl::Embed(const at::Tensor& input_ids) {
  LLAMARL_CHECK(input_ids.dim() == 2, "input_ids must be [batch, tokens], got shape ", input_ids.sizes());
  LLAMARL_CHECK(input_ids.scalar_type() == at::kLong || input_ids.scalar_type() == at::kInt,
                "input_ids must be int64 or int32, got ", input_ids.scalar_type());
  if (input_ids.numel() > 0) {
    const int64_t lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    LLAMARL_CHECK(lo >= 0 && hi < config_.vocab_size, "input_ids must lie in [0, vocab_size ", config_.vocab_size,
                  "), got values in [", lo, ", ", hi, "]; the tokenizer does not match this model");
  }
  return model->embed_tokens(input_ids.to(at::kLong));
}

RopePositions LlamaForCausalLMImpl::Rope(const at::Tensor& position_ids) const {
  LLAMARL_CHECK(position_ids.dim() == 2, "position_ids must be [batch, tokens], got shape ", position_ids.sizes());
  LLAMARL_CHECK(!at::isFloatingType(position_ids.scalar_type()), "position_ids must be integer, got ",
                position_ids.scalar_type());
  return {position_ids.to(at::kLong), {inv_freq_.to(position_ids.device()), 1.0}};
}

LlamaDecoderLayerImpl& LlamaForCausalLMImpl::Layer(int64_t index) {
  LLAMARL_CHECK(index >= 0 && index < NumLayers(), "layer index ", index, " out of range [0, ", NumLayers(), ")");
  return *model->typed_layers[size_t(index)];
}

at::Tensor LlamaForCausalLMImpl::FinalNorm(const at::Tensor& hidden) { return model->norm(hidden); }

const at::Tensor& LlamaForCausalLMImpl::LmHeadWeight() const {
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

at::Tensor LlamaForCausalLMImpl::LmHead(const at::Tensor& hidden) { return at::linear(hidden, LmHeadWeight()); }

at::Tensor LlamaForCausalLMImpl::Hidden(const LlamaInputs& in) {
  at::Tensor h = Embed(in.input_ids);
  const int64_t batch = in.input_ids.size(0), tokens = in.input_ids.size(1);
  LLAMARL_CHECK(config_.sliding_window == 0 || tokens <= config_.sliding_window, "sequence of ", tokens,
                " tokens exceeds sliding_window ", config_.sliding_window,
                " of config.json; windowed attention is not implemented, so keep sequences within the window");
  at::Tensor positions = in.position_ids;
  if (positions.defined()) {
    LLAMARL_CHECK(positions.sizes() == in.input_ids.sizes(), "position_ids must have the shape of input_ids ",
                  in.input_ids.sizes(), ", got ", positions.sizes());
    positions = positions.to(h.device());
  } else if (in.segment_ids.defined()) {
    LLAMARL_CHECK(in.segment_ids.sizes() == in.input_ids.sizes(), "segment_ids must have the shape of input_ids ",
                  in.input_ids.sizes(), ", got ", in.segment_ids.sizes());
    positions = PackedPositionIds(in.segment_ids.to(h.device()));
  } else {
    positions = at::arange(tokens, at::TensorOptions().dtype(at::kLong).device(h.device())).expand({batch, tokens});
  }
  AttentionLayout layout = BuildAttentionLayout({batch, tokens, in.attention_mask, in.segment_ids}, h.device());
  RopePositions rope = Rope(positions);
  for (auto& layer : model->typed_layers) h = layer(h, rope, layout);
  return FinalNorm(h);
}

at::Tensor LlamaForCausalLMImpl::Logits(const LlamaInputs& inputs) { return LmHead(Hidden(inputs)); }

at::Tensor LlamaForCausalLMImpl::forward(const at::Tensor& input_ids) {
  LlamaInputs inputs;
  inputs.input_ids = input_ids;
  return Logits(inputs);
}

}  // namespace llamarl
