// LoadLlama / SaveLlama / InitLlamaWeights: HF checkpoints in, out and round trip, and the errors
// a user sees for a checkpoint that does not match its config.json.
#include "core/check.h"
#include "model/llama_checkpoint.h"

#include "model/llama_presets.h"
#include "model/safetensors.h"
#include "tests/test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace llamarl {
namespace {

namespace fs = std::filesystem;

// A writable copy of a fixture checkpoint, with the given tensors replaced (undefined = removed).
std::string EditedCopy(const std::string& fixture, const std::map<std::string, at::Tensor>& edits,
                       const Json& config_edits = Json::object()) {
  std::string src = testing::FixturePath("llama/" + fixture);
  std::string dir = testing::MakeTempDir("llama-ckpt");
  Json config = ReadJsonFile(src + "/config.json");
  config.update(config_edits);
  std::ofstream(dir + "/config.json") << config.dump();
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(src);
  NamedTensors tensors;
  for (const auto& name : ckpt.Names()) {
    auto it = edits.find(name);
    if (it == edits.end()) tensors.emplace_back(name, ckpt.Get(name));
  }
  for (const auto& [name, t] : edits) {
    if (t.defined()) tensors.emplace_back(name, t);
  }
  SaveSafetensors(dir + "/model.safetensors", tensors);
  return dir;
}

std::string LoadError(const std::string& dir) {
  try {
    LoadLlama(dir);
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LlamaCheckpointTest, LoadsShardedBf16AsF32) {
  std::string dir = testing::FixturePath("llama/llama3");
  LlamaForCausalLM model = LoadLlama(dir);
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_EQ(ckpt.Dtype("model.layers.1.mlp.up_proj.weight"), "BF16");
  for (const auto& p : model->named_parameters()) {
    EXPECT_EQ(p.value().scalar_type(), at::kFloat);
    EXPECT_TRUE(at::equal(p.value(), ckpt.Get(p.key()).to(at::kFloat))) << p.key();
  }
  LoadLlamaOptions bf16;
  bf16.dtype = at::kBFloat16;
  EXPECT_EQ(LoadLlama(dir, bf16)->LmHeadWeight().scalar_type(), at::kBFloat16);
}

TEST(LlamaCheckpointTest, NamesMissingAndUnexpectedTensors) {
  std::string dir = EditedCopy("qwen2", {{"model.layers.1.mlp.up_proj.weight", at::Tensor()},
                                         {"model.layers.2.mlp.up_proj.weight", at::zeros({80, 48})}});
  std::string error = LoadError(dir);
  EXPECT_NE(error.find("missing 1 tensors: model.layers.1.mlp.up_proj.weight"), std::string::npos) << error;
  EXPECT_NE(error.find("unexpected 1 tensors: model.layers.2.mlp.up_proj.weight"), std::string::npos) << error;
}

TEST(LlamaCheckpointTest, NamesWrongShapeAndTheConfigFieldsBehindIt) {
  std::string dir = EditedCopy("qwen2", {}, {{"intermediate_size", 96}});
  std::string error = LoadError(dir);
  EXPECT_NE(error.find("model.layers.0.mlp.gate_proj.weight: shape [80, 48] in checkpoint, expected [96, 48] "
                       "from config.json (intermediate_size 96, hidden_size 48)"),
            std::string::npos) << error;
  dir = EditedCopy("qwen2", {{"model.norm.weight", at::zeros({48}, at::kLong)}});
  error = LoadError(dir);
  EXPECT_NE(error.find("model.norm.weight: dtype I64 in checkpoint cannot hold weights"), std::string::npos) << error;
}

TEST(LlamaCheckpointTest, TiedCheckpointMayCarryLmHead) {
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(testing::FixturePath("llama/qwen2"));
  std::string dir = EditedCopy("qwen2", {{"lm_head.weight", ckpt.Get("model.embed_tokens.weight").clone()}});
  LlamaForCausalLM model = LoadLlama(dir);
  EXPECT_EQ(model->LmHeadWeight().data_ptr(), model->model->embed_tokens->weight.data_ptr());
}

TEST(LlamaCheckpointTest, SaveThenLoadIsBitExact) {
  LlamaConfig config = LlamaConfig::FromFile(testing::FixturePath("llama/llama3"));
  LlamaForCausalLM model(config);
  InitLlamaWeights(*model, 7);
  std::string dir = testing::MakeTempDir("llama-save");
  SaveLlamaOptions options;
  options.max_shard_bytes = 64 << 10;  // forces several shards
  std::vector<std::string> files = SaveLlama(dir, *model, config, options);
  EXPECT_GT(files.size(), 1u);
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
  EXPECT_TRUE(fs::exists(dir + "/generation_config.json"));
  EXPECT_EQ(ReadJsonFile(dir + "/generation_config.json")["eos_token_id"], Json({2, 3}));
  EXPECT_EQ(LlamaConfig::FromFile(dir).torch_dtype, "float32");
  LlamaForCausalLM loaded = LoadLlama(dir);
  auto a = model->named_parameters(), b = loaded->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(at::equal(a[i].value(), b[i].value())) << a[i].key();

  // bf16 storage: the config says so, and loading gives exactly the rounded weights.
  std::string bf16_dir = testing::MakeTempDir("llama-save-bf16");
  options.dtype = at::kBFloat16;
  SaveLlama(bf16_dir, *model, config, options);
  EXPECT_EQ(LlamaConfig::FromFile(bf16_dir).torch_dtype, "bfloat16");
  LoadLlamaOptions load_bf16;
  load_bf16.dtype = at::kBFloat16;
  LlamaForCausalLM rounded = LoadLlama(bf16_dir, load_bf16);
  EXPECT_TRUE(at::equal(rounded->model->norm->weight, model->model->norm->weight.to(at::kBFloat16)));
  EXPECT_TRUE(at::equal(rounded->LmHeadWeight(), model->LmHeadWeight().to(at::kBFloat16)));
}

TEST(LlamaCheckpointTest, TiedModelSavesNoLmHead) {
  LlamaForCausalLM model = LoadLlama(testing::FixturePath("llama/qwen2"));
  std::string dir = testing::MakeTempDir("llama-save-tied");
  SaveLlama(dir, *model, model->config());
  SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
  EXPECT_FALSE(ckpt.Has("lm_head.weight"));
  EXPECT_TRUE(ckpt.Has("model.layers.0.self_attn.q_proj.bias"));
  // A config that does not describe the model is refused.
  LlamaConfig other = model->config();
  other.intermediate_size = 96;
  EXPECT_THROW(SaveLlama(dir, *model, other), llamarl::Error);
}

TEST(LlamaCheckpointTest, InitIsSeededAndFollowsHf) {
  LlamaConfig config = LlamaPresetConfig("tiny");
  LlamaForCausalLM a(config), b(config), c(config);
  InitLlamaWeights(*a, 1);
  InitLlamaWeights(*b, 1);
  InitLlamaWeights(*c, 2);
  for (size_t i = 0; i < a->named_parameters().size(); ++i) {
    EXPECT_TRUE(at::equal(a->named_parameters()[i].value(), b->named_parameters()[i].value()));
  }
  const at::Tensor& w = a->Layer(1).mlp->up_proj->weight;
  EXPECT_FALSE(at::equal(w, c->Layer(1).mlp->up_proj->weight));
  EXPECT_NEAR(w.std().item<double>(), 0.02, 0.002);  // 64 x 192 draws
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.002);
  EXPECT_TRUE(at::equal(a->model->norm->weight, at::ones({config.hidden_size})));
  LlamaForCausalLM meta(config, at::TensorOptions().device(at::kMeta));
  EXPECT_THROW(InitLlamaWeights(*meta, 1), llamarl::Error);
}

// A published preset scaled down (its model type, bias, tying, token ids and extra HF fields kept),
// written by WriteRandomLlama in bf16 shards with an index, reads back as InitLlamaWeights' values
// rounded to bf16, with its config.json.
TEST(LlamaCheckpointTest, RandomPresetWritingRoundTripsThroughTheReader) {
  for (const char* name : {"qwen2.5-0.5b", "llama3.2-1b"}) {
    SCOPED_TRACE(name);
    const LlamaPreset& preset = FindLlamaPreset(name);
    LlamaConfig config = preset.config;
    config.hidden_size = 32;  // the vocabulary (and so the special token ids) stays the real one
    config.num_attention_heads = 4;
    config.num_key_value_heads = 2;
    config.head_dim = 8;
    config.intermediate_size = 64;
    config.num_hidden_layers = 2;
    const std::string dir = testing::MakeTempDir("random-preset") + "/" + name;
    RandomLlamaOptions options;
    options.seed = 7;
    options.max_shard_bytes = 16 << 10;
    options.extra_config_fields = preset.extra_config_fields;
    const std::vector<std::string> files = WriteRandomLlama(dir, config, options);
    EXPECT_GT(files.size(), 2u) << "expected several shards and an index";
    EXPECT_TRUE(fs::exists(dir + "/model.safetensors.index.json"));
    const Json written = ReadJsonFile(dir + "/config.json");
    for (const auto& [key, value] : preset.extra_config_fields.items()) EXPECT_EQ(written.at(key), value) << key;
    EXPECT_EQ(written.at("torch_dtype"), "bfloat16");
    const LlamaConfig read = LlamaConfig::FromFile(dir);
    EXPECT_EQ(read.ToJson().dump(), [&] {
      LlamaConfig c = config;
      c.torch_dtype = "bfloat16";
      return c.ToJson().dump();
    }());
    SafetensorsCheckpoint ckpt = SafetensorsCheckpoint::Open(dir);
    LlamaForCausalLM expected(config);
    InitLlamaWeights(*expected, 7);
    LlamaForCausalLM loaded = LoadLlama(dir);
    for (const auto& p : expected->named_parameters()) {
      EXPECT_EQ(ckpt.Dtype(p.key()), "BF16") << p.key();
      EXPECT_TRUE(at::equal(loaded->named_parameters()[p.key()], p.value().to(at::kBFloat16).to(at::kFloat)))
          << p.key();
    }
  }
}

TEST(LlamaCheckpointTest, PresetsCarryTheirPublishedShapes) {
  // Parameter counts of the HF models (tied embeddings counted once).
  EXPECT_EQ(LlamaPresetConfig("qwen2.5-0.5b").NumParameters(), 494032768);
  EXPECT_EQ(LlamaPresetConfig("qwen2.5-1.5b").NumParameters(), 1543714304);
  EXPECT_EQ(LlamaPresetConfig("llama3.2-1b").NumParameters(), 1235814400);
  EXPECT_EQ(FindLlamaPreset("qwen2.5-0.5b").tokenizer, "qwen3");
  EXPECT_TRUE(FindLlamaPreset("llama3.2-1b").tokenizer.empty());
  EXPECT_FALSE(FindLlamaPreset("70b").writes_weights);
}

}  // namespace
}  // namespace llamarl
