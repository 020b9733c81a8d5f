// The model that `llamarl plan` sizes: its config and parameter counts taken from the real
// LlamaForCausalLM module built on LibTorch's meta device (shapes only, no memory), so that the plan
// counts exactly what the trainer and generator would allocate. LibTorch-free header.
#pragma once

#include "model/llama_config.h"

#include <cstdint>
#include <string>

namespace llamarl {

struct PlanModel {
  std::string name;  // preset name or config path, for reports
  LlamaConfig config;
  int64_t num_params = 0;           // every parameter of the module (lm_head only when untied)
  int64_t layer_linear_params = 0;  // 2-D weights inside decoder layers: what fp8 generators quantize
  int64_t largest_unit_params = 0;  // biggest ZeRO-3 gather unit: one decoder layer, the embedding or lm_head

  // Bytes of K and V for one token over all layers: 2 * layers * kv_heads * head_dim * bytes.
  int64_t KvBytesPerToken(int64_t bytes_per_value) const;
};

// Builds `config`'s module on the meta device and counts its named_parameters().
PlanModel BuildPlanModel(const std::string& name, const LlamaConfig& config);
// A preset name (tiny, qwen2.5-0.5b, qwen2.5-1.5b, llama3.2-1b, 8b, 70b, 405b) or a path to an HF config.json (or its directory).
PlanModel LoadPlanModel(const std::string& name_or_path);

}  // namespace llamarl
