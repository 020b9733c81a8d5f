#include "model/llama_presets.h"

#include "core/check.h"

namespace llamarl {
namespace {

struct Shape {
  int64_t hidden, intermediate, layers, heads;
};

// The fields every preset sets from its published shape.
LlamaConfig Shaped(const char* model_type, int64_t vocab_size, const Shape& s, int64_t kv_heads, int64_t head_dim) {
  LlamaConfig c;
  c.model_type = model_type;
  c.vocab_size = vocab_size;
  c.hidden_size = s.hidden;
  c.intermediate_size = s.intermediate;
  c.num_hidden_layers = s.layers;
  c.num_attention_heads = s.heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = head_dim;
  c.torch_dtype = "bfloat16";
  return c;
}

// Llama 3.1's published shapes (the HF config.json of meta-llama/Llama-3.1-{8B,70B,405B}).
LlamaConfig Llama31Config(const Shape& shape) {
  LlamaConfig c = Shaped("llama", 128256, shape, 8, 128);
  c.rope_theta = 500000.0;
  c.rope_scaling = kernels::Llama3RopeScalingOptions{8.0, 1.0, 4.0, 8192};
  c.rms_norm_eps = 1e-5;
  c.max_position_embeddings = 131072;
  c.bos_token_id = 128000;
  c.eos_token_ids = {128001, 128008, 128009};
  return c;
}

// Qwen/Qwen2.5-{0.5B,1.5B}-Instruct's config.json: q/k/v bias, tied embeddings, a vocabulary padded
// to 151,936 rows (the tokenizer has 151,665 ids), EOS <|im_end|> (151645) and <|endoftext|> (151643).
LlamaConfig Qwen25Config(const Shape& shape) {
  LlamaConfig c = Shaped("qwen2", 151936, shape, 2, shape.hidden / shape.heads);
  c.rope_theta = 1000000.0;
  c.rms_norm_eps = 1e-6;
  c.tie_word_embeddings = true;
  c.attention_bias = true;
  c.max_position_embeddings = 32768;
  c.bos_token_id = 151643;
  c.eos_token_ids = {151645, 151643};
  return c;
}

LlamaPreset Preset(const std::string& name, const std::string& repo, const LlamaConfig& config) {
  LlamaPreset p;
  p.name = name;
  p.hf_repo = repo;
  p.config = config;
  return p;
}

LlamaPreset Qwen25Preset(const std::string& name, const std::string& repo, const LlamaConfig& config,
                         int64_t max_window_layers) {
  LlamaPreset p = Preset(name, repo, config);
  p.extra_config_fields = {{"sliding_window", 32768}, {"max_window_layers", max_window_layers}};
  p.tokenizer = "qwen3";
  p.tokenizer_note =
      "Qwen3's tokenizer.json: the same 151,643 byte-level BPE tokens and merges and the same 22 special "
      "tokens (ids 151643-151664, <|endoftext|>, <|im_start|>, <|im_end|>, ...) as Qwen2.5's, plus 4 that "
      "Qwen2.5 lacks (151665-151668: <tool_response>, </tool_response>, <think>, </think>); all fit in the "
      "model's 151,936 embedding rows. Its chat template is Qwen3's, which renders the same ChatML as "
      "Qwen2.5's for system/user/assistant turns without tools (Qwen2.5 adds a default system prompt when "
      "none is given)";
  return p;
}

std::vector<LlamaPreset> MakePresets() {
  std::vector<LlamaPreset> presets;
  LlamaPreset tiny = Preset("tiny", "", TinyLlamaConfig());
  tiny.tokenizer_note = "use `llamarl init --model tiny`, which writes the tiny byte-level tokenizer";
  presets.push_back(tiny);
  presets.push_back(Qwen25Preset("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct", Qwen25Config({896, 4864, 24, 14}), 21));
  presets.push_back(Qwen25Preset("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct", Qwen25Config({1536, 8960, 28, 12}), 21));
  // meta-llama/Llama-3.2-1B-Instruct: Llama 3's 128,256-token vocabulary, tied embeddings, RoPE scaled x32.
  LlamaConfig llama32 = Llama31Config({2048, 8192, 16, 32});
  llama32.head_dim = 64;
  llama32.tie_word_embeddings = true;
  llama32.rope_scaling = kernels::Llama3RopeScalingOptions{32.0, 1.0, 4.0, 8192};
  const std::string no_llama3_tokenizer =
      "no Llama 3 tokenizer (tiktoken-derived, 128,256 ids) is under the shared tokenizers directory; copy "
      "tokenizer.json and tokenizer_config.json from the HF repository into this directory before using it "
      "with `llamarl generate`, `tokenize` or a recipe";
  LlamaPreset l1 = Preset("llama3.2-1b", "meta-llama/Llama-3.2-1B-Instruct", llama32);
  l1.extra_config_fields = {{"pretraining_tp", 1}};
  l1.tokenizer_note = no_llama3_tokenizer;
  presets.push_back(l1);
  struct Big {
    const char* name;
    const char* repo;
    LlamaConfig config;
  };
  const Big big[] = {{"8b", "meta-llama/Llama-3.1-8B", Llama31Config({4096, 14336, 32, 32})},
                     {"70b", "meta-llama/Llama-3.1-70B", Llama31Config({8192, 28672, 80, 64})},
                     {"405b", "meta-llama/Llama-3.1-405B", Llama31Config({16384, 53248, 126, 128})}};
  for (const Big& b : big) {
    LlamaPreset p = Preset(b.name, b.repo, b.config);
    p.extra_config_fields = {{"pretraining_tp", 1}};
    p.tokenizer_note = no_llama3_tokenizer;
    p.writes_weights = false;
    presets.push_back(p);
  }
  for (auto& p : presets) p.config.Validate();
  return presets;
}

}  // namespace

const std::vector<LlamaPreset>& LlamaPresets() {
  static const std::vector<LlamaPreset> presets = MakePresets();
  return presets;
}

const LlamaPreset& FindLlamaPreset(const std::string& name) {
  for (const auto& p : LlamaPresets()) {
    if (p.name == name) return p;
  }
  std::string known;
  for (const auto& n : LlamaPresetNames()) known += (known.empty() ? "" : ", ") + n;
  LLAMARL_FAIL("unknown model preset '", name, "'; known: ", known, " (or a path to a config.json)");
}

std::vector<std::string> LlamaPresetNames() {
  std::vector<std::string> names;
  for (const auto& p : LlamaPresets()) names.push_back(p.name);
  return names;
}

LlamaConfig LlamaPresetConfig(const std::string& name) { return FindLlamaPreset(name).config; }

}  // namespace llamarl
