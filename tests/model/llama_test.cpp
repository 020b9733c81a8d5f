// The decoder against tests/fixtures/llama (outputs of HF's modeling code transcribed in
// scripts/fixtures/make_llama_fixture.py), plus its structure: HF parameter names, tied storage,
// meta-device construction, packing and input checks.
#include "core/check.h"
#include "model/llama.h"

#include "model/llama_checkpoint.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <set>

namespace llamarl {
namespace {

struct Fixture {
  LlamaForCausalLM model{nullptr};
  std::shared_ptr<SafetensorsFile> expected;
};

Fixture LoadFixture(const std::string& name, at::ScalarType dtype = at::kFloat) {
  std::string dir = testing::FixturePath("llama/" + name);
  LoadLlamaOptions options;
  options.dtype = dtype;
  return {LoadLlama(dir, options), SafetensorsFile::Open(dir + "/expected.safetensors")};
}

// Max |a - b| over the positions where mask [B, T] is 1 (a, b: [B, T, V]).
double MaxDiffAt(const at::Tensor& a, const at::Tensor& b, const at::Tensor& mask) {
  at::Tensor keep = mask.ne(0).unsqueeze(-1).expand_as(a);
  return (a.to(at::kFloat) - b.to(at::kFloat)).abs().masked_select(keep).max().item<double>();
}

class LlamaFixtureTest : public ::testing::TestWithParam<std::string> {};

TEST_P(LlamaFixtureTest, PaddedBatchLogitsMatchHf) {
  torch::NoGradGuard no_grad;
  Fixture f = LoadFixture(GetParam());
  LlamaInputs in;
  in.input_ids = f.expected->Get("pad_input_ids");
  in.attention_mask = f.expected->Get("pad_attention_mask");
  at::Tensor logits = f.model->Logits(in);
  at::Tensor want = f.expected->Get("pad_logits");
  ASSERT_EQ(logits.sizes(), want.sizes());
  // Padding queries attend to nothing; their outputs are meaningless and not compared.
  EXPECT_LT(MaxDiffAt(logits, want, in.attention_mask), 1e-4);
  EXPECT_GT(want.abs().max().item<double>(), 1.0);  // the fixture is not trivially near zero
}

TEST_P(LlamaFixtureTest, ExplicitPositionLogitsMatchHf) {
  torch::NoGradGuard no_grad;
  Fixture f = LoadFixture(GetParam());
  LlamaInputs in;
  in.input_ids = f.expected->Get("pos_input_ids");
  in.position_ids = f.expected->Get("pos_position_ids");
  at::Tensor want = f.expected->Get("pos_logits");
  at::Tensor all = at::ones_like(in.input_ids);
  EXPECT_LT(MaxDiffAt(f.model->Logits(in), want, all), 1e-4);
  // Positions matter: the default 0..T-1 gives different logits.
  LlamaInputs default_positions;
  default_positions.input_ids = in.input_ids;
  EXPECT_GT(MaxDiffAt(f.model->Logits(default_positions), want, all), 1e-2);
}

TEST_P(LlamaFixtureTest, PackedSequenceLogitsMatchSeparateSequences) {
  torch::NoGradGuard no_grad;
  Fixture f = LoadFixture(GetParam());
  LlamaInputs in;
  in.input_ids = f.expected->Get("packed_input_ids");
  in.segment_ids = f.expected->Get("packed_segment_ids");
  at::Tensor want = f.expected->Get("packed_logits");
  at::Tensor all = at::ones_like(in.input_ids);
  EXPECT_LT(MaxDiffAt(f.model->Logits(in), want, all), 1e-4);
  // Hidden + LmHead is the same computation as Logits.
  EXPECT_TRUE(at::allclose(f.model->LmHead(f.model->Hidden(in)), f.model->Logits(in)));
}

TEST_P(LlamaFixtureTest, Bf16ForwardIsCloseToF32) {
  torch::NoGradGuard no_grad;
  Fixture f = LoadFixture(GetParam());
  LlamaInputs in;
  in.input_ids = f.expected->Get("pad_input_ids");
  in.attention_mask = f.expected->Get("pad_attention_mask");
  at::Tensor f32 = f.model->Logits(in);
  f.model->to(at::kBFloat16);
  at::Tensor bf16 = f.model->Logits(in);
  ASSERT_EQ(bf16.scalar_type(), at::kBFloat16);
  // bf16 keeps 8 significant bits, so each op is off by up to 0.4%; through 2 layers the logits
  // move by about 1% of their range. 5% of the largest logit allows for that and still catches a
  // wrong op (which moves logits by their own magnitude).
  const double scale = f32.abs().max().item<double>();
  EXPECT_LT(MaxDiffAt(bf16, f32, in.attention_mask), 0.05 * scale);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, LlamaFixtureTest, ::testing::Values("llama3", "qwen2", "qwen3"));

std::vector<std::string> Names(LlamaForCausalLMImpl& model) {
  std::vector<std::string> names;
  for (const auto& p : model.named_parameters()) names.push_back(p.key());
  return names;
}

TEST(LlamaModelTest, ParameterNamesAreHuggingFaces) {
  LlamaConfig c = LlamaPresetConfig("tiny");
  c.num_hidden_layers = 1;
  c.tie_word_embeddings = false;
  LlamaForCausalLM model(c, at::TensorOptions().device(at::kMeta));
  EXPECT_EQ(Names(*model), (std::vector<std::string>{
                               "model.embed_tokens.weight",
                               "model.layers.0.self_attn.q_proj.weight",
                               "model.layers.0.self_attn.k_proj.weight",
                               "model.layers.0.self_attn.v_proj.weight",
                               "model.layers.0.self_attn.o_proj.weight",
                               "model.layers.0.mlp.gate_proj.weight",
                               "model.layers.0.mlp.up_proj.weight",
                               "model.layers.0.mlp.down_proj.weight",
                               "model.layers.0.input_layernorm.weight",
                               "model.layers.0.post_attention_layernorm.weight",
                               "model.norm.weight",
                               "lm_head.weight",
                           }));
  c.model_type = "qwen3";
  c.qk_norm = true;
  c.attention_bias = true;
  c.tie_word_embeddings = true;
  LlamaForCausalLM qwen3(c, at::TensorOptions().device(at::kMeta));
  std::vector<std::string> names = Names(*qwen3);
  std::set<std::string> set(names.begin(), names.end());
  for (const char* n : {"model.layers.0.self_attn.q_proj.bias", "model.layers.0.self_attn.k_proj.bias",
                        "model.layers.0.self_attn.v_proj.bias", "model.layers.0.self_attn.q_norm.weight",
                        "model.layers.0.self_attn.k_norm.weight"}) {
    EXPECT_TRUE(set.count(n)) << n;
  }
  EXPECT_FALSE(set.count("lm_head.weight"));
  EXPECT_FALSE(set.count("model.layers.0.self_attn.o_proj.bias"));
}

TEST(LlamaModelTest, MetaDeviceBuildsLargeModelsWithoutMemory) {
  for (const char* preset : {"8b", "70b", "405b"}) {
    LlamaConfig c = LlamaPresetConfig(preset);
    LlamaForCausalLM model(c, at::TensorOptions().dtype(at::kBFloat16).device(at::kMeta));
    int64_t total = 0;
    for (const auto& p : model->named_parameters()) {
      EXPECT_TRUE(p.value().is_meta()) << p.key();
      total += p.value().numel();
    }
    EXPECT_EQ(total, c.NumParameters()) << preset;
  }
  for (const char* name : {"qwen2", "qwen3"}) {
    LlamaConfig c = LlamaConfig::FromFile(testing::FixturePath(std::string("llama/") + name));
    LlamaForCausalLM model(c, at::TensorOptions().device(at::kMeta));
    int64_t total = 0;
    for (const auto& p : model->named_parameters()) total += p.value().numel();
    EXPECT_EQ(total, c.NumParameters()) << name;
  }
}

TEST(LlamaModelTest, TiedEmbeddingsShareStorage) {
  Fixture f = LoadFixture("qwen2");
  const at::Tensor& embed = f.model->model->embed_tokens->weight;
  EXPECT_EQ(f.model->LmHeadWeight().data_ptr(), embed.data_ptr());
  f.model->to(at::kBFloat16);
  EXPECT_EQ(f.model->LmHeadWeight().data_ptr(), f.model->model->embed_tokens->weight.data_ptr());
  // One parameter, so the LM head's gradient lands on the embedding.
  f.model->zero_grad();
  f.model->LmHead(at::ones({1, f.model->config().hidden_size}, at::kBFloat16)).sum().backward();
  ASSERT_TRUE(f.model->model->embed_tokens->weight.grad().defined());
  EXPECT_EQ(f.model->model->embed_tokens->weight.grad().abs().sum().item<double>(),
            double(f.model->config().vocab_size * f.model->config().hidden_size));
}

TEST(LlamaModelTest, RejectsBadInputs) {
  Fixture f = LoadFixture("qwen2");
  torch::NoGradGuard no_grad;
  LlamaInputs in;
  in.input_ids = at::tensor(std::vector<int64_t>{1, 2, 256}, at::kLong).unsqueeze(0);
  try {
    f.model->Logits(in);
    FAIL() << "expected an error";
  } catch (const llamarl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("input_ids must lie in [0, vocab_size 256), got values in [1, 256]"),
              std::string::npos) << e.what();
  }
  in.input_ids = at::tensor(std::vector<int64_t>{1, 2, 3}, at::kLong).unsqueeze(0);
  in.attention_mask = at::ones({1, 4}, at::kLong);
  EXPECT_THROW(f.model->Logits(in), llamarl::Error);
  in.attention_mask = at::Tensor();
  in.position_ids = at::zeros({2, 3}, at::kLong);
  EXPECT_THROW(f.model->Logits(in), llamarl::Error);
  EXPECT_THROW(f.model->forward(at::zeros({3}, at::kLong)), llamarl::Error);
}

}  // namespace
}  // namespace llamarl
