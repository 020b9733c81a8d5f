// The decoder layer's fused projections (q/k/v in one GEMM, gate/up in one GEMM; kernels/fused_linear.h)
// against the separate HF linears they replace: values and every parameter's gradient, with the
// weights in the layer's own back-to-back buffer and after they were moved apart. The parameters
// keep their HF names (tests/model/llama_test.cpp checks the names).
#include "model/llama_layers.h"

#include "kernels/fused_linear.h"
#include "model/llama_config.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <vector>

namespace llamarl {
namespace {

LlamaConfig SmallConfig(bool bias) {
  TinyLlamaOptions options;
  options.vocab_size = 32;
  options.hidden_size = 32;
  LlamaConfig config = TinyLlamaConfig(options);
  config.attention_bias = bias;
  return config;
}

void Randomize(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters()) p.normal_(0, 0.2);
}

std::vector<at::Tensor> GradsOf(torch::nn::Module& module) {
  std::vector<at::Tensor> grads;
  for (auto& p : module.parameters()) grads.push_back(p.grad().defined() ? p.grad().clone() : at::Tensor());
  module.zero_grad();
  return grads;
}

void ExpectAllClose(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(a[i].defined(), b[i].defined()) << i;
    if (!a[i].defined()) continue;  // a parameter the computation does not read (o_proj)
    EXPECT_TRUE(at::allclose(a[i], b[i], 1e-5, 1e-5)) << i << ": " << (a[i] - b[i]).abs().max();
  }
}

// The unfused attention projections: three linears, then RoPE, in HF's order.
at::Tensor SeparateQkv(LlamaAttentionImpl& attn, const LlamaConfig& c, const at::Tensor& x, const RopePositions& rope) {
  const int64_t b = x.size(0), t = x.size(1), e = c.head_dim;
  at::Tensor q = attn.q_proj(x).view({b, t, c.num_attention_heads, e});
  at::Tensor k = attn.k_proj(x).view({b, t, c.num_key_value_heads, e});
  at::Tensor v = attn.v_proj(x).view({b, t, c.num_key_value_heads, e});
  return at::cat({kernels::ApplyRope(q, rope.positions, rope.tables).flatten(2),
                  kernels::ApplyRope(k, rope.positions, rope.tables).flatten(2), v.flatten(2)}, -1);
}

at::Tensor FusedQkv(LlamaAttentionImpl& attn, const at::Tensor& x, const RopePositions& rope) {
  QkvStates s = attn.ProjectQkv(x, rope);
  return at::cat({s.q.transpose(1, 2).flatten(2), s.k.transpose(1, 2).flatten(2), s.v.transpose(1, 2).flatten(2)}, -1);
}

TEST(LlamaLayersTest, FusedProjectionsMatchSeparateLinears) {
  at::manual_seed(4);
  for (bool bias : {false, true}) {
    for (bool apart : {false, true}) {
      const LlamaConfig config = SmallConfig(bias);
      LlamaDecoderLayer layer(config, at::TensorOptions());
      Randomize(*layer);
      LlamaAttentionImpl& attn = *layer->self_attn;
      LlamaMlpImpl& mlp = *layer->mlp;
      EXPECT_TRUE(kernels::AreAdjacentRows({attn.q_proj->weight, attn.k_proj->weight, attn.v_proj->weight}));
      EXPECT_TRUE(kernels::AreAdjacentRows({mlp.gate_proj->weight, mlp.up_proj->weight}));
      if (apart) {  // as after .to(dtype) or a rebinding: the fused path concatenates instead
        for (at::Tensor w : {attn.k_proj->weight, mlp.up_proj->weight}) w.set_data(w.detach().clone());
        EXPECT_FALSE(kernels::AreAdjacentRows({attn.q_proj->weight, attn.k_proj->weight, attn.v_proj->weight}));
      }
      const at::Tensor x = at::randn({2, 5, config.hidden_size});
      const RopePositions rope{at::arange(5, at::kLong).repeat({2, 1}),
                               {kernels::RopeInvFreq(config.RopeOptions()), 1.0}};
      const at::Tensor grad_qkv = at::randn({2, 5, (config.num_attention_heads + 2 * config.num_key_value_heads) *
                                                       config.head_dim});
      const at::Tensor fused = FusedQkv(attn, x, rope);
      fused.backward(grad_qkv);
      const std::vector<at::Tensor> fused_grads = GradsOf(attn);
      const at::Tensor separate = SeparateQkv(attn, config, x, rope);
      separate.backward(grad_qkv);
      EXPECT_TRUE(at::allclose(fused, separate, 1e-5, 1e-6)) << (fused - separate).abs().max();
      ExpectAllClose(fused_grads, GradsOf(attn));

      const at::Tensor y = mlp.forward(x);
      y.sum().backward();
      const std::vector<at::Tensor> mlp_grads = GradsOf(mlp);
      const at::Tensor y_ref = mlp.down_proj(at::silu(mlp.gate_proj(x)) * mlp.up_proj(x));
      y_ref.sum().backward();
      EXPECT_TRUE(at::allclose(y, y_ref, 1e-5, 1e-6)) << (y - y_ref).abs().max();
      ExpectAllClose(mlp_grads, GradsOf(mlp));
    }
  }
}

}  // namespace
}  // namespace llamarl
