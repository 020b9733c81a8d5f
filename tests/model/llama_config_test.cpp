#include "model/llama_config.h"

#include "core/check.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

#include <fstream>

namespace llamarl {
namespace {

// Abridged from meta-llama/Llama-3.1-8B's config.json (keys we ignore left in on purpose).
Json Llama31Json() {
  return Json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": [128001, 128008, 128009], "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 14336,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "transformers_version": "4.43.0.dev0", "use_cache": true, "vocab_size": 128256})");
}

// Abridged from Qwen/Qwen2.5-0.5B's config.json.
Json Qwen25Json() {
  return Json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
}

std::string ErrorOf(const Json& j) {
  try {
    LlamaConfig::FromJson(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(LlamaConfigTest, ParsesLlama31) {
  LlamaConfig c = LlamaConfig::FromJson(Llama31Json());
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_EQ(c.vocab_size, 128256);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.NumKvGroups(), 4);
  ASSERT_TRUE(c.rope_scaling.has_value());
  EXPECT_EQ(c.rope_scaling->original_max_position_embeddings, 8192);
  EXPECT_DOUBLE_EQ(c.rope_scaling->high_freq_factor, 4.0);
  EXPECT_DOUBLE_EQ(c.rms_norm_eps, 1e-5);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.bos_token_id.value(), 128000);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_EQ(c.torch_dtype, "bfloat16");
  // The published parameter count of Llama 3.1 8B: 8,030,261,248.
  EXPECT_EQ(c.NumParameters(), 8030261248LL);
}

TEST(LlamaConfigTest, ParsesQwen25WithImplicitBiasAndTiedEmbeddings) {
  LlamaConfig c = LlamaConfig::FromJson(Qwen25Json());
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(c.head_dim, 64);
  EXPECT_FALSE(c.rope_scaling.has_value());
  EXPECT_EQ(c.eos_token_ids, (std::vector<int64_t>{151643}));
  // Qwen2.5-0.5B: 494,032,768 parameters.
  EXPECT_EQ(c.NumParameters(), 494032768LL);
}

TEST(LlamaConfigTest, DefaultsFollowHuggingFace) {
  Json j = {{"model_type", "mistral"}, {"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 96},
            {"num_hidden_layers", 2}, {"num_attention_heads", 4}};
  LlamaConfig c = LlamaConfig::FromJson(j);
  EXPECT_EQ(c.num_key_value_heads, 4);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_DOUBLE_EQ(c.rope_theta, 10000.0);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_TRUE(c.eos_token_ids.empty());
  j["model_type"] = "qwen3";
  j["head_dim"] = 32;  // Qwen3 decouples head_dim from hidden_size / heads
  c = LlamaConfig::FromJson(j);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_EQ(c.head_dim, 32);
}

TEST(LlamaConfigTest, JsonRoundTrip) {
  for (const Json& j : {Llama31Json(), Qwen25Json()}) {
    LlamaConfig a = LlamaConfig::FromJson(j);
    LlamaConfig b = LlamaConfig::FromJson(a.ToJson());
    EXPECT_EQ(a.ToJson(), b.ToJson());
    EXPECT_EQ(b.NumParameters(), a.NumParameters());
    EXPECT_EQ(b.eos_token_ids, a.eos_token_ids);
    EXPECT_EQ(a.GenerationConfigJson()["eos_token_id"], j["eos_token_id"]);
  }
}

TEST(LlamaConfigTest, ReadsFileAndNamesItInErrors) {
  std::string dir = testing::MakeTempDir("llama-config");
  Json j = Llama31Json();
  j.erase("hidden_size");
  std::ofstream(dir + "/config.json") << j.dump();
  try {
    LlamaConfig::FromFile(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/config.json: hidden_size: missing"), std::string::npos) << e.what();
  }
  EXPECT_THROW(LlamaConfig::FromFile(dir + "/nowhere"), Error);
  std::ofstream(dir + "/config.json") << Llama31Json().dump();
  EXPECT_EQ(LlamaConfig::FromFile(dir).hidden_size, 4096);
}

TEST(LlamaConfigTest, RejectsMissingAndContradictoryFields) {
  Json j = Llama31Json();
  j.erase("num_hidden_layers");
  EXPECT_NE(ErrorOf(j).find("num_hidden_layers: missing"), std::string::npos) << ErrorOf(j);

  j = Llama31Json();
  j["num_key_value_heads"] = 5;
  EXPECT_NE(ErrorOf(j).find("num_attention_heads (32) must be a multiple of num_key_value_heads (5)"),
            std::string::npos) << ErrorOf(j);

  j = Llama31Json();
  j["hidden_size"] = 4000;
  j["num_attention_heads"] = 48;
  j["num_key_value_heads"] = 8;
  EXPECT_NE(ErrorOf(j).find("hidden_size (4000) is not divisible by num_attention_heads (48)"), std::string::npos)
      << ErrorOf(j);
  j["head_dim"] = 64;  // explicit head_dim makes it valid
  EXPECT_EQ(ErrorOf(j), "(no error)");

  j = Llama31Json();
  j["intermediate_size"] = 0;
  EXPECT_NE(ErrorOf(j).find("intermediate_size: expected an integer in [1, inf), got 0"), std::string::npos)
      << ErrorOf(j);

  j = Qwen25Json();
  j["attention_bias"] = false;
  EXPECT_NE(ErrorOf(j).find("contradicts model_type qwen2"), std::string::npos) << ErrorOf(j);

  j = Llama31Json();
  j["eos_token_id"] = 200000;
  EXPECT_NE(ErrorOf(j).find("eos_token_id (200000) must be a token id in [0, vocab_size 128256)"),
            std::string::npos) << ErrorOf(j);

  j = Llama31Json();
  j["model_type"] = "gpt2";
  EXPECT_NE(ErrorOf(j).find("model_type: expected one of 'llama', 'mistral', 'qwen2', 'qwen3', got \"gpt2\""),
            std::string::npos) << ErrorOf(j);
}

TEST(LlamaConfigTest, RejectsUnsupportedMath) {
  Json j = Llama31Json();
  j["rope_scaling"] = {{"type", "yarn"}, {"factor", 4.0}};
  EXPECT_NE(ErrorOf(j).find("rope_scaling.rope_type: 'yarn' is not supported; supported: 'default', 'llama3'"),
            std::string::npos) << ErrorOf(j);
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}};
  EXPECT_NE(ErrorOf(j).find("rope_scaling.low_freq_factor: missing"), std::string::npos) << ErrorOf(j);
  j["rope_scaling"] = {{"rope_type", "default"}};
  EXPECT_FALSE(LlamaConfig::FromJson(j).rope_scaling.has_value());

  j = Llama31Json();
  j["hidden_act"] = "gelu";
  EXPECT_NE(ErrorOf(j).find("hidden_act: 'gelu' is not supported"), std::string::npos) << ErrorOf(j);
  j = Llama31Json();
  j["mlp_bias"] = true;
  EXPECT_NE(ErrorOf(j).find("mlp_bias"), std::string::npos) << ErrorOf(j);
  j = Qwen25Json();
  j["use_sliding_window"] = true;
  EXPECT_NE(ErrorOf(j).find("use_sliding_window"), std::string::npos) << ErrorOf(j);
}

TEST(LlamaConfigTest, PresetsAndTiny) {
  EXPECT_EQ(LlamaPresetConfig("8b").NumParameters(), 8030261248LL);
  EXPECT_EQ(LlamaPresetConfig("70b").NumParameters(), 70553706496LL);
  EXPECT_EQ(LlamaPresetConfig("405b").NumParameters(), 405853388800LL);
  try {
    LlamaPresetConfig("7b");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown model preset '7b'; known: tiny, qwen2.5-0.5b, qwen2.5-1.5b, llama3.2-1b, 8b, 70b, 405b"), std::string::npos);
  }
  TinyLlamaOptions o;
  o.hidden_size = 96;
  o.num_heads = 6;
  o.num_kv_heads = 3;
  o.eos_token_ids = {2};
  LlamaConfig c = TinyLlamaConfig(o);
  EXPECT_EQ(c.head_dim, 16);
  EXPECT_EQ(c.intermediate_size, 256);
  EXPECT_TRUE(c.tie_word_embeddings);
  EXPECT_EQ(LlamaConfig::FromJson(c.ToJson()).ToJson(), c.ToJson());
  o.num_kv_heads = 4;
  EXPECT_THROW(TinyLlamaConfig(o), Error);
}

}  // namespace
}  // namespace llamarl
