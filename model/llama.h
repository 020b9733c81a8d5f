// The Llama-family decoder (Llama 2/3, Mistral, Qwen2, Qwen3) as a LibTorch module whose
// named_parameters() are exactly Hugging Face's names:
//   model.embed_tokens.weight
//   model.layers.{i}.self_attn.{q,k,v,o}_proj.weight     (+ {q,k,v}_proj.bias with attention_bias)
//   model.layers.{i}.self_attn.{q,k}_norm.weight          (qwen3)
//   model.layers.{i}.mlp.{gate,up,down}_proj.weight
//   model.layers.{i}.{input,post_attention}_layernorm.weight
//   model.norm.weight
//   lm_head.weight                                        (absent when tie_word_embeddings)
// With tied embeddings the LM head reads model.embed_tokens.weight itself (one storage, one gradient).
// Works in any floating dtype on any device; .to(dtype / device) moves it like any module.
// Not thread-safe for concurrent forward and .to(); concurrent forwards are fine.
// Legend: B = batch, T = tokens, D = hidden_size, V = vocab_size.
#pragma once

#include "model/llama_config.h"
#include "model/llama_layers.h"

#include <torch/nn/modules/container/modulelist.h>

#include <vector>

namespace llamarl {

// Inputs of a full-sequence forward. Only input_ids is required.
struct LlamaInputs {
  at::Tensor input_ids;       // [B, T] integer token ids in [0, vocab_size)
  at::Tensor position_ids;    // [B, T]; default 0..T-1, or restarting per segment when segment_ids is set
  at::Tensor attention_mask;  // [B, T] 1 = token, 0 = padding; combined with the causal mask
  at::Tensor segment_ids;     // [B, T] packed batch: attention stays inside each run of equal ids
};

// HF's LlamaModel: embeddings, decoder layers, final norm (registered as "model").
class LlamaBackboneImpl : public torch::nn::Module {
 public:
  LlamaBackboneImpl(const LlamaConfig& config, const at::TensorOptions& options);
  LlamaEmbedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  LlamaRMSNorm norm{nullptr};
  std::vector<LlamaDecoderLayer> typed_layers;  // the same modules as `layers`, typed
};
TORCH_MODULE(LlamaBackbone);

class LlamaForCausalLMImpl : public torch::nn::Module {
 public:
  // Parameters are allocated uninitialised with `options` (dtype, device); on at::kMeta nothing is
  // allocated. Fill them with LoadLlama or InitLlamaWeights. Validates `config`.
  explicit LlamaForCausalLMImpl(const LlamaConfig& config, const at::TensorOptions& options = {});

  const LlamaConfig& config() const { return config_; }

  // Final-norm hidden states [B, T, D]: what the LM head reads. The trainer computes token
  // log-probs from these in chunks without materialising [B, T, V] logits.
  at::Tensor Hidden(const LlamaInputs& inputs);
  // Logits [B, T, V] in the model's dtype.
  at::Tensor Logits(const LlamaInputs& inputs);
  at::Tensor forward(const at::Tensor& input_ids);

  // The pieces, for engines that run the layers themselves (KV cache, tensor parallelism).
  at::Tensor Embed(const at::Tensor& input_ids);          // [B, T] -> [B, T, D]; checks the id range
  // position_ids [B, T] integer -> RoPE at those positions, on position_ids' device.
  RopePositions Rope(const at::Tensor& position_ids) const;
  int64_t NumLayers() const { return int64_t(model->typed_layers.size()); }
  LlamaDecoderLayerImpl& Layer(int64_t index);
  at::Tensor FinalNorm(const at::Tensor& hidden_BTD);
  at::Tensor LmHead(const at::Tensor& hidden_BTD);        // -> [B, T, V]
  // [V, D]: lm_head.weight, or model.embed_tokens.weight when tied.
  const at::Tensor& LmHeadWeight() const;

  LlamaBackbone model{nullptr};
  LlamaLinear lm_head{nullptr};  // null when tie_word_embeddings

 private:
  LlamaConfig config_;
  at::Tensor inv_freq_;  // [head_dim / 2] f32 CPU (kernels::RopeInvFreq); not a parameter, moved per call
};
TORCH_MODULE(LlamaForCausalLM);

}  // namespace llamarl
