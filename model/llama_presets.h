// The published model shapes that `llamarl init --preset` writes and `llamarl plan` sizes: each one's
// config.json as its Hugging Face repository has it (the math-relevant fields in LlamaConfig, the rest
// in extra_config_fields), and which tokenizer under ../shared/data/tokenizers fits it, if any.
// LibTorch-free.
#pragma once

#include "core/config.h"
#include "model/llama_config.h"

#include <string>
#include <vector>

namespace llamarl {

struct LlamaPreset {
  std::string name;
  std::string hf_repo;  // where the real weights live (for the README written beside random ones)
  LlamaConfig config;
  // config.json fields the HF repository carries that do not change the math here (Qwen2's
  // sliding_window and max_window_layers, ...); written after LlamaConfig::ToJson()'s fields.
  Json extra_config_fields = Json::object();
  // Subdirectory of the shared tokenizers directory whose tokenizer.json fits (every id the model
  // was trained with decodes the same), "" when none does; `tokenizer_note` says why either way.
  std::string tokenizer;
  std::string tokenizer_note;
  // Small enough for `llamarl init` to write random weights (<= 2B parameters); larger presets are
  // written as config only.
  bool writes_weights = true;
};

// Every preset, "tiny" first; LlamaPresetNames() lists the same names.
const std::vector<LlamaPreset>& LlamaPresets();
// The named preset; an unknown name lists the known ones.
const LlamaPreset& FindLlamaPreset(const std::string& name);

}  // namespace llamarl
