// The pieces of one Llama decoder layer as LibTorch modules whose parameter names are Hugging Face's
// (q_proj.weight, input_layernorm.weight, ...), kept separate so that the KV-cache generator and the
// tensor-parallel layers reuse them: attention projects q/k/v (RoPE applied) apart from attending.
//
// Parameters are created with at::empty(shape, options) and never initialised here: on the meta
// device construction allocates nothing (`llamarl plan` counts 405B parameters that way), and
// weights come from a checkpoint (LoadLlama) or from InitLlamaWeights.
// RMSNorm and RoPE are kernels/'s fused ops (forward and backward), the one implementation of each.
// Legend: B = batch, T = tokens, D = hidden_size, H = heads, K = kv heads, E = head_dim.
#pragma once

#include "kernels/rope.h"
#include "model/attention.h"

#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace llamarl {

struct LlamaConfig;

// RoPE for one forward: the tokens' positions and the model's frequency table (LlamaForCausalLM::Rope).
// cos/sin are computed inside the kernel at each position, in f32 and rounded as HF rounds them.
struct RopePositions {
  at::Tensor positions;        // [B, T] int64, on the activations' device
  kernels::RopeTables tables;  // inv_freq [E/2] f32, on that device
};

// y = x W^T (+ b); weight [out, in], bias [out] or undefined.
class LlamaLinearImpl : public torch::nn::Module {
 public:
  LlamaLinearImpl(int64_t in_features, int64_t out_features, bool bias, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;
  at::Tensor bias;
};
TORCH_MODULE(LlamaLinear);

// Makes the given linear layers' weights row blocks of one new buffer of `options`, so that
// kernels::FusedLinear reads them as one matrix without a copy. The parameters stay separate (HF
// names, own gradients). The layers call it for q/k/v and gate/up.
void PlaceBackToBack(const std::vector<LlamaLinear>& layers, const at::TensorOptions& options);

// weight [V, D]; forward maps token ids [B, T] to [B, T, D].
class LlamaEmbeddingImpl : public torch::nn::Module {
 public:
  LlamaEmbeddingImpl(int64_t num_embeddings, int64_t dim, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& ids);
  at::Tensor weight;
};
TORCH_MODULE(LlamaEmbedding);

// HF's LlamaRMSNorm (normalise in f32, round to the input dtype, scale by weight) by kernels::RmsNorm.
class LlamaRMSNormImpl : public torch::nn::Module {
 public:
  LlamaRMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(LlamaRMSNorm);

// Queries and keys after RoPE (and qwen3's q/k norm), values as projected.
struct QkvStates {
  at::Tensor q;  // [B, H, T, E]
  at::Tensor k;  // [B, K, T, E]
  at::Tensor v;  // [B, K, T, E]
};

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  LlamaAttentionImpl(const LlamaConfig& config, const at::TensorOptions& options);
  // x [B, T, D]; rope holds the tokens' positions.
  QkvStates ProjectQkv(const at::Tensor& x_BTD, const RopePositions& rope);
  // attended [B, T, H * E] -> [B, T, D]
  at::Tensor ProjectOutput(const at::Tensor& attended);
  // Full-sequence attention over `layout` (packed segments or a mask; model/attention.h).
  at::Tensor forward(const at::Tensor& x_BTD, const RopePositions& rope, const AttentionLayout& layout);

  LlamaLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  LlamaRMSNorm q_norm{nullptr}, k_norm{nullptr};  // qwen3 only

 private:
  int64_t num_heads_, num_kv_heads_, head_dim_;
};
TORCH_MODULE(LlamaAttention);

// SwiGLU: down(silu(gate(x)) * up(x)).
class LlamaMlpImpl : public torch::nn::Module {
 public:
  LlamaMlpImpl(const LlamaConfig& config, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x_BTD);
  LlamaLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

// Pre-norm residual block: x + attn(norm(x)), then + mlp(norm(.)).
class LlamaDecoderLayerImpl : public torch::nn::Module {
 public:
  LlamaDecoderLayerImpl(const LlamaConfig& config, const at::TensorOptions& options);
  at::Tensor forward(const at::Tensor& x_BTD, const RopePositions& rope, const AttentionLayout& layout);

  LlamaAttention self_attn{nullptr};
  LlamaMlp mlp{nullptr};
  LlamaRMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(LlamaDecoderLayer);

}  // namespace llamarl
