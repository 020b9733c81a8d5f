#include "model/llama_layers.h"

#include "kernels/fused_linear.h"
#include "kernels/rms_norm.h"
#include "model/attention.h"
#include "model/llama_config.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <vector>

namespace llamarl {

void PlaceBackToBack(const std::vector<LlamaLinear>& layers, const at::TensorOptions& options) {
  int64_t rows = 0;
  for (const LlamaLinear& l : layers) rows += l->weight.size(0);
  at::Tensor joint = at::empty({rows, layers.front()->weight.size(1)}, options);
  int64_t row = 0;
  for (const LlamaLinear& l : layers) {
    const int64_t n = l->weight.size(0);
    l->weight.set_data(joint.narrow(0, row, n));
    row += n;
  }
}

LlamaLinearImpl::LlamaLinearImpl(int64_t in_features, int64_t out_features, bool with_bias,
                                 const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({out_features, in_features}, options));
  if (with_bias) bias = register_parameter("bias", at::empty({out_features}, options));
}

at::Tensor LlamaLinearImpl::forward(const at::Tensor& x) { return at::linear(x, weight, bias); }

LlamaEmbeddingImpl::LlamaEmbeddingImpl(int64_t num_embeddings, int64_t dim, const at::TensorOptions& options) {
  weight = register_parameter("weight", at::empty({num_embeddings, dim}, options));
}

at::Tensor LlamaEmbeddingImpl::forward(const at::Tensor& ids) { return at::embedding(weight, ids); }

LlamaRMSNormImpl::LlamaRMSNormImpl(int64_t dim, double eps, const at::TensorOptions& options) : eps_(eps) {
  weight = register_parameter("weight", at::empty({dim}, options));
}

at::Tensor LlamaRMSNormImpl::forward(const at::Tensor& x) { return kernels::RmsNorm(x, weight, eps_); }

LlamaAttentionImpl::LlamaAttentionImpl(const LlamaConfig& config, const at::TensorOptions& options)
    : num_heads_(config.num_attention_heads),
      num_kv_heads_(config.num_key_value_heads),
      head_dim_(config.head_dim) {
  const int64_t d = config.hidden_size, q = num_heads_ * head_dim_, kv = num_kv_heads_ * head_dim_;
  q_proj = register_module("q_proj", LlamaLinear(d, q, config.attention_bias, options));
  k_proj = register_module("k_proj", LlamaLinear(d, kv, config.attention_bias, options));
  v_proj = register_module("v_proj", LlamaLinear(d, kv, config.attention_bias, options));
  o_proj = register_module("o_proj", LlamaLinear(q, d, false, options));
  if (config.qk_norm) {
    q_norm = register_module("q_norm", LlamaRMSNorm(head_dim_, config.rms_norm_eps, options));
    k_norm = register_module("k_norm", LlamaRMSNorm(head_dim_, config.rms_norm_eps, options));
  }
  PlaceBackToBack({q_proj, k_proj, v_proj}, options);
}

QkvStates LlamaAttentionImpl::ProjectQkv(const at::Tensor& x, const RopePositions& rope) {
  const int64_t batch = x.size(0), tokens = x.size(1);
  const int64_t q_width = num_heads_ * head_dim_, kv_width = num_kv_heads_ * head_dim_;
  std::vector<at::Tensor> biases;
  if (q_proj->bias.defined()) biases = {q_proj->bias, k_proj->bias, v_proj->bias};
  // One GEMM for the three projections (kernels/fused_linear.h), then views of its column blocks.
  at::Tensor qkv = kernels::FusedLinear(x, {q_proj->weight, k_proj->weight, v_proj->weight}, biases);
  at::Tensor q = qkv.narrow(-1, 0, q_width).view({batch, tokens, num_heads_, head_dim_});
  at::Tensor k = qkv.narrow(-1, q_width, kv_width).view({batch, tokens, num_kv_heads_, head_dim_});
  at::Tensor v = qkv.narrow(-1, q_width + kv_width, kv_width).view({batch, tokens, num_kv_heads_, head_dim_});
  if (q_norm) {  // qwen3 normalises each head before RoPE
    q = q_norm(q);
    k = k_norm(k);
  }
  // The kernel rotates token-major [B, T, H, E], the projections' own layout: no copy before it.
  return {kernels::ApplyRope(q, rope.positions, rope.tables).transpose(1, 2),
          kernels::ApplyRope(k, rope.positions, rope.tables).transpose(1, 2), v.transpose(1, 2)};
}

at::Tensor LlamaAttentionImpl::ProjectOutput(const at::Tensor& attended) { return o_proj(attended); }

at::Tensor LlamaAttentionImpl::forward(const at::Tensor& x, const RopePositions& rope, const AttentionLayout& layout) {
  QkvStates s = ProjectQkv(x, rope);
  return ProjectOutput(Attend(s.q, s.k, s.v, layout));
}

LlamaMlpImpl::LlamaMlpImpl(const LlamaConfig& config, const at::TensorOptions& options) {
  const int64_t d = config.hidden_size, inter = config.intermediate_size;
  gate_proj = register_module("gate_proj", LlamaLinear(d, inter, false, options));
  up_proj = register_module("up_proj", LlamaLinear(d, inter, false, options));
  down_proj = register_module("down_proj", LlamaLinear(inter, d, false, options));
  PlaceBackToBack({gate_proj, up_proj}, options);
}

at::Tensor LlamaMlpImpl::forward(const at::Tensor& x) {
  const int64_t inter = gate_proj->weight.size(0);
  at::Tensor gate_up = kernels::FusedLinear(x, {gate_proj->weight, up_proj->weight});  // one GEMM
  return down_proj(at::silu(gate_up.narrow(-1, 0, inter)) * gate_up.narrow(-1, inter, inter));
}

LlamaDecoderLayerImpl::LlamaDecoderLayerImpl(const LlamaConfig& config, const at::TensorOptions& options) {
  self_attn = register_module("self_attn", LlamaAttention(config, options));
  mlp = register_module("mlp", LlamaMlp(config, options));
  input_layernorm = register_module("input_layernorm", LlamaRMSNorm(config.hidden_size, config.rms_norm_eps, options));
  post_attention_layernorm =
      register_module("post_attention_layernorm", LlamaRMSNorm(config.hidden_size, config.rms_norm_eps, options));
}

at::Tensor LlamaDecoderLayerImpl::forward(const at::Tensor& x, const RopePositions& rope,
                                          const AttentionLayout& layout) {
  at::Tensor h = x + self_attn(input_layernorm(x), rope, layout);
  return h + mlp(post_attention_layernorm(h));
}

}  // namespace llamarl
