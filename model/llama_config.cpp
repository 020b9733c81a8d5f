#include "model/llama_config.h"

#include "core/check.h"

#include <filesystem>

namespace llamarl {
namespace {

const std::vector<std::string>& ModelTypes() {
  static const std::vector<std::string> types = {"llama", "mistral", "qwen2", "qwen3"};
  return types;
}

const char* Architecture(const std::string& model_type) {
  if (model_type == "mistral") return "MistralForCausalLM";
  if (model_type == "qwen2") return "Qwen2ForCausalLM";
  if (model_type == "qwen3") return "Qwen3ForCausalLM";
  return "LlamaForCausalLM";
}

// rope_scaling: null, {"rope_type"|"type": "default"} or the llama3 object. HF has renamed the type
// key over time, so both spellings are read.
std::optional<kernels::Llama3RopeScalingOptions> ParseRopeScaling(ConfigReader& parent) {
  const Json& raw = parent.Raw("rope_scaling");
  if (raw.is_null()) return std::nullopt;
  ConfigReader r(raw, "rope_scaling");
  std::string type;
  r.Read("type", &type);
  r.Read("rope_type", &type);
  LLAMARL_CHECK(!type.empty(), "rope_scaling: missing rope_type (or type); supported: 'default', 'llama3', ",
                "or rope_scaling null; got ", DescribeJson(raw));
  if (type == "default") return std::nullopt;
  LLAMARL_CHECK(type == "llama3", "rope_scaling.rope_type: '", type,
                "' is not supported; supported: 'default', 'llama3' (or rope_scaling null)");
  kernels::Llama3RopeScalingOptions s;
  r.Require("factor", &s.factor, Range::AtLeast(1.0));
  r.Require("low_freq_factor", &s.low_freq_factor, Range::Positive());
  r.Require("high_freq_factor", &s.high_freq_factor, Range::Positive());
  r.Require("original_max_position_embeddings", &s.original_max_position_embeddings, Range::AtLeast(1));
  return s;
}

void ParseOptionalFields(ConfigReader& r, LlamaConfig& c) {
  r.Read("head_dim", &c.head_dim, Range::AtLeast(1), "size of one attention head");
  r.Read("rope_theta", &c.rope_theta, Range::Positive(), "RoPE base");
  c.rope_scaling = ParseRopeScaling(r);
  r.Read("rms_norm_eps", &c.rms_norm_eps, Range::Positive(), "RMSNorm epsilon");
  r.Read("tie_word_embeddings", &c.tie_word_embeddings, "lm_head shares the embedding");
  c.attention_bias = c.model_type == "qwen2";
  r.Read("attention_bias", &c.attention_bias, "q/k/v projections have a bias");
  c.qk_norm = c.model_type == "qwen3";
  bool mlp_bias = false;
  r.Read("mlp_bias", &mlp_bias);
  LLAMARL_CHECK(!mlp_bias, "mlp_bias: true is not supported (no Llama-family checkpoint uses it); set it to false");
  std::string hidden_act = "silu";
  r.Read("hidden_act", &hidden_act);
  LLAMARL_CHECK(hidden_act == "silu", "hidden_act: '", hidden_act, "' is not supported; expected 'silu' (SwiGLU)");
  if (c.model_type == "mistral") {
    r.Read("sliding_window", &c.sliding_window, Range::AtLeast(1));
  } else {
    bool use_sliding_window = false;
    r.Read("use_sliding_window", &use_sliding_window);
    LLAMARL_CHECK(!use_sliding_window, "use_sliding_window: true is not supported; set it to false");
  }
  r.Read("max_position_embeddings", &c.max_position_embeddings, Range::AtLeast(1));
  if (r.Has("bos_token_id")) {
    int64_t bos = 0;
    r.Read("bos_token_id", &bos, Range::AtLeast(0));
    c.bos_token_id = bos;
  }
  r.Read("eos_token_id", &c.eos_token_ids, "end-of-sequence id or ids");
  // transformers >= 4.56 writes "dtype"; older versions "torch_dtype".
  const std::vector<std::string> dtypes = {"float32", "bfloat16", "float16"};
  r.Read("torch_dtype", &c.torch_dtype, dtypes);
  r.Read("dtype", &c.torch_dtype, dtypes);
  r.Read("initializer_range", &c.initializer_range, Range::Positive());
}

}  // namespace

LlamaConfig LlamaConfig::FromJson(const Json& json, const std::string& path) {
  try {
    ConfigReader r(json, "");
    LlamaConfig c;
    r.Require("model_type", &c.model_type, ModelTypes());
    r.Require("vocab_size", &c.vocab_size, Range::AtLeast(1));
    r.Require("hidden_size", &c.hidden_size, Range::AtLeast(1));
    r.Require("intermediate_size", &c.intermediate_size, Range::AtLeast(1));
    r.Require("num_hidden_layers", &c.num_hidden_layers, Range::AtLeast(1));
    r.Require("num_attention_heads", &c.num_attention_heads, Range::AtLeast(1));
    c.num_key_value_heads = c.num_attention_heads;
    r.Read("num_key_value_heads", &c.num_key_value_heads, Range::AtLeast(1));
    ParseOptionalFields(r, c);
    if (c.head_dim == 0) {
      LLAMARL_CHECK(c.hidden_size % c.num_attention_heads == 0, "hidden_size (", c.hidden_size,
                    ") is not divisible by num_attention_heads (", c.num_attention_heads,
                    ") and head_dim is not given; add head_dim or fix the sizes");
      c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    // No Finish(): HF configs carry many keys that do not affect the math (see the header).
    c.Validate();
    return c;
  } catch (const Error& e) {
    throw Error(path.empty() ? std::string(e.what()) : path + ": " + e.what());
  }
}

LlamaConfig LlamaConfig::FromFile(const std::string& path) {
  std::filesystem::path p(path);
  if (std::filesystem::is_directory(p)) p /= "config.json";
  LLAMARL_CHECK(std::filesystem::exists(p), "model config ", p.string(),
                " does not exist; expected a Hugging Face model directory holding config.json");
  return FromJson(ReadJsonFile(p.string()), p.string());
}

void LlamaConfig::Validate() const {
  auto positive = [](const char* name, int64_t v) {
    LLAMARL_CHECK(v > 0, name, " must be positive, got ", v);
  };
  positive("vocab_size", vocab_size);
  positive("hidden_size", hidden_size);
  positive("intermediate_size", intermediate_size);
  positive("num_hidden_layers", num_hidden_layers);
  positive("num_attention_heads", num_attention_heads);
  positive("num_key_value_heads", num_key_value_heads);
  positive("head_dim", head_dim);
  positive("max_position_embeddings", max_position_embeddings);
  LLAMARL_CHECK(num_attention_heads % num_key_value_heads == 0, "num_attention_heads (", num_attention_heads,
                ") must be a multiple of num_key_value_heads (", num_key_value_heads,
                "); set num_key_value_heads to a divisor of it");
  LLAMARL_CHECK(head_dim % 2 == 0, "head_dim (", head_dim, ") must be even: RoPE rotates pairs of dimensions");
  LLAMARL_CHECK(rope_theta > 0, "rope_theta must be positive, got ", rope_theta);
  LLAMARL_CHECK(rms_norm_eps > 0, "rms_norm_eps must be positive, got ", rms_norm_eps);
  LLAMARL_CHECK(initializer_range > 0, "initializer_range must be positive, got ", initializer_range);
  LLAMARL_CHECK(sliding_window >= 0, "sliding_window must be null or positive, got ", sliding_window);
  if (rope_scaling) {
    LLAMARL_CHECK(rope_scaling->high_freq_factor > rope_scaling->low_freq_factor,
                  "rope_scaling.high_freq_factor (", rope_scaling->high_freq_factor,
                  ") must be greater than rope_scaling.low_freq_factor (", rope_scaling->low_freq_factor, ")");
    LLAMARL_CHECK(rope_scaling->factor >= 1, "rope_scaling.factor must be at least 1, got ", rope_scaling->factor);
  }
  LLAMARL_CHECK(model_type != "qwen2" || attention_bias, "attention_bias: false contradicts model_type qwen2, ",
                "whose q/k/v projections always have a bias; remove attention_bias");
  LLAMARL_CHECK(model_type != "mistral" || !attention_bias, "attention_bias: true contradicts model_type ",
                "mistral, whose projections have no bias; remove attention_bias");
  LLAMARL_CHECK(qk_norm == (model_type == "qwen3"), "qk_norm (", qk_norm, ") contradicts model_type ", model_type,
                ": only qwen3 normalises q and k per head");
  auto check_token = [&](const char* name, int64_t id) {
    LLAMARL_CHECK(id >= 0 && id < vocab_size, name, " (", id, ") must be a token id in [0, vocab_size ",
                  vocab_size, ")");
  };
  if (bos_token_id) check_token("bos_token_id", *bos_token_id);
  for (int64_t id : eos_token_ids) check_token("eos_token_id", id);
}

Json LlamaConfig::ToJson() const {
  Json j;
  j["architectures"] = Json::array({Architecture(model_type)});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["intermediate_size"] = intermediate_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["num_key_value_heads"] = num_key_value_heads;
  j["head_dim"] = head_dim;
  j["hidden_act"] = "silu";
  j["rope_theta"] = rope_theta;
  if (rope_scaling) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling->factor},
                         {"low_freq_factor", rope_scaling->low_freq_factor},
                         {"high_freq_factor", rope_scaling->high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling->original_max_position_embeddings}};
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rms_norm_eps"] = rms_norm_eps;
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["attention_bias"] = attention_bias;
  if (model_type == "llama") j["mlp_bias"] = false;
  if (model_type == "mistral") {
    j["sliding_window"] = sliding_window > 0 ? Json(sliding_window) : Json(nullptr);
  } else if (model_type != "llama") {
    j["use_sliding_window"] = false;
  }
  j["max_position_embeddings"] = max_position_embeddings;
  j["bos_token_id"] = bos_token_id ? Json(*bos_token_id) : Json(nullptr);
  if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else {
    j["eos_token_id"] = eos_token_ids.empty() ? Json(nullptr) : Json(eos_token_ids);
  }
  j["torch_dtype"] = torch_dtype;
  j["initializer_range"] = initializer_range;
  j["use_cache"] = true;
  return j;
}

Json LlamaConfig::GenerationConfigJson() const {
  Json j = ToJson();
  Json g;
  g["_from_model_config"] = true;
  g["bos_token_id"] = j["bos_token_id"];
  g["eos_token_id"] = j["eos_token_id"];
  return g;
}

int64_t LlamaConfig::NumParameters() const {
  const int64_t d = hidden_size, q = num_attention_heads * head_dim, kv = num_key_value_heads * head_dim;
  int64_t attention = d * q + 2 * d * kv + q * d;
  if (attention_bias) attention += q + 2 * kv;
  if (qk_norm) attention += 2 * head_dim;
  const int64_t mlp = 3 * d * intermediate_size;
  const int64_t layer = attention + mlp + 2 * d;
  const int64_t embeddings = vocab_size * d * (tie_word_embeddings ? 1 : 2);
  return embeddings + num_hidden_layers * layer + d;
}

LlamaConfig TinyLlamaConfig(const TinyLlamaOptions& o) {
  LlamaConfig c;
  c.model_type = "llama";
  c.vocab_size = o.vocab_size;
  c.hidden_size = o.hidden_size;
  c.num_hidden_layers = o.num_layers;
  c.num_attention_heads = o.num_heads;
  c.num_key_value_heads = o.num_kv_heads;
  LLAMARL_CHECK(o.num_heads > 0 && o.hidden_size % o.num_heads == 0, "tiny model: hidden_size (", o.hidden_size,
                ") must be a positive multiple of num_heads (", o.num_heads, ")");
  c.head_dim = o.hidden_size / o.num_heads;
  c.intermediate_size = o.intermediate_size > 0 ? o.intermediate_size : (8 * o.hidden_size / 3 + 31) / 32 * 32;
  c.max_position_embeddings = o.max_position_embeddings;
  c.rope_theta = o.rope_theta;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = o.tie_word_embeddings;
  c.bos_token_id = o.bos_token_id;
  c.eos_token_ids = o.eos_token_ids;
  c.torch_dtype = "float32";
  c.Validate();
  return c;
}

}  // namespace llamarl
