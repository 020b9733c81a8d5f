// The decoder's shape and hyper-parameters, read from and written to Hugging Face's config.json for
// the Llama family: model_type llama (Llama 2/3), mistral, qwen2 (q/k/v bias) and qwen3 (q/k RMSNorm).
// LibTorch-free so that the config parser can be fuzzed with clang alone.
//
// HF configs carry many keys that do not change the math (architectures, use_cache, pad_token_id,
// transformers_version, ...): unknown keys are ignored here, unlike recipe configs. Keys that do
// change the math and that we do not implement (mlp_bias true, a rope_scaling type other than
// llama3, hidden_act other than silu, Qwen2's use_sliding_window) are errors, never silently dropped.
#pragma once

#include "core/config.h"
#include "kernels/rope_options.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llamarl {

struct LlamaConfig {
  std::string model_type = "llama";  // llama | mistral | qwen2 | qwen3
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // GQA groups; config.json's default is num_attention_heads
  int64_t head_dim = 0;             // config.json's default is hidden_size / num_attention_heads
  double rope_theta = 10000.0;
  // HF rope_type "llama3" (Llama 3.1's frequency-dependent scaling); nullopt: plain RoPE.
  std::optional<kernels::Llama3RopeScalingOptions> rope_scaling;
  double rms_norm_eps = 1e-6;
  bool tie_word_embeddings = false;  // lm_head reuses model.embed_tokens.weight
  bool attention_bias = false;       // q/k/v projections carry a bias (always for qwen2)
  bool qk_norm = false;              // per-head RMSNorm of q and k before RoPE (qwen3)
  int64_t sliding_window = 0;        // mistral: 0 = none; longer sequences are refused, not windowed
  int64_t max_position_embeddings = 2048;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";  // float32 | bfloat16 | float16: the checkpoint's dtype
  double initializer_range = 0.02;      // std of the normal init of weights (InitLlamaWeights)

  // Parses an HF config.json object; `path` names it in errors (usually the file). Applies HF's
  // defaults for optional fields, then Validate().
  static LlamaConfig FromJson(const Json& json, const std::string& path = "config.json");
  // Reads `dir`/config.json (or the file itself when `path` names a .json file).
  static LlamaConfig FromFile(const std::string& path);

  // An HF-compatible config.json object (transformers loads it with AutoConfig).
  Json ToJson() const;
  // An HF generation_config.json object (bos/eos ids).
  Json GenerationConfigJson() const;
  // Throws llamarl::Error naming the field when sizes are non-positive or contradict each other.
  void Validate() const;

  // theta, head_dim and the llama3 scaling, as kernels::RopeInvFreq takes them.
  kernels::RopeFrequencyOptions RopeOptions() const { return {rope_theta, head_dim, rope_scaling}; }
  int64_t NumKvGroups() const { return num_attention_heads / num_key_value_heads; }
  // Exact count of the module's parameters (lm_head counted only when untied).
  int64_t NumParameters() const;
};

// Options of the small random model that `llamarl init --model tiny` writes for tests and the demo.
struct TinyLlamaOptions {
  int64_t vocab_size = 512;
  int64_t hidden_size = 64;
  int64_t num_layers = 2;
  int64_t num_heads = 4;
  int64_t num_kv_heads = 2;
  int64_t intermediate_size = 0;  // 0: 8/3 * hidden_size rounded up to a multiple of 32 (Llama's ratio)
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  bool tie_word_embeddings = true;
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
};
LlamaConfig TinyLlamaConfig(const TinyLlamaOptions& options = {});

// Published shapes by name, for `llamarl plan` and `llamarl init`: "tiny" (TinyLlamaOptions' defaults),
// "qwen2.5-0.5b", "qwen2.5-1.5b", "llama3.2-1b", "8b", "70b", "405b" (Llama 3.1). An unknown name lists
// the known ones. model/llama_presets.h says more about each (tokenizer, HF-only config fields).
LlamaConfig LlamaPresetConfig(const std::string& name);
std::vector<std::string> LlamaPresetNames();

}  // namespace llamarl
