#include "plan/plan_model.h"

#include "core/check.h"
#include "model/llama.h"

#include <algorithm>
#include <filesystem>
#include <map>

namespace llamarl {

int64_t PlanModel::KvBytesPerToken(int64_t bytes_per_value) const {
  return 2 * config.num_hidden_layers * config.num_key_value_heads * config.head_dim * bytes_per_value;
}

PlanModel BuildPlanModel(const std::string& name, const LlamaConfig& config) {
  PlanModel plan;
  plan.name = name;
  plan.config = config;
  // On at::kMeta the module allocates no storage: a 405B model costs only its bookkeeping.
  LlamaForCausalLM module(config, at::TensorOptions().device(at::kMeta).dtype(at::kBFloat16));
  std::map<std::string, int64_t> unit_params;  // "model.layers.3", "model.embed_tokens", "lm_head", ...
  for (const auto& item : module->named_parameters(/*recurse=*/true)) {
    const std::string& key = item.key();
    int64_t numel = item.value().numel();
    plan.num_params += numel;
    bool in_layer = key.rfind("model.layers.", 0) == 0;
    if (in_layer && item.value().dim() == 2) plan.layer_linear_params += numel;
    std::string unit = key.substr(0, key.rfind('.'));  // drop ".weight" / ".bias"
    if (in_layer) unit = key.substr(0, key.find('.', std::string("model.layers.").size()));
    unit_params[unit] += numel;
  }
  for (const auto& [unit, count] : unit_params) plan.largest_unit_params = std::max(plan.largest_unit_params, count);
  LLAMARL_ASSERT(plan.num_params == config.NumParameters(), "meta-device count ", plan.num_params,
                 " disagrees with LlamaConfig::NumParameters() ", config.NumParameters());
  return plan;
}

PlanModel LoadPlanModel(const std::string& name_or_path) {
  std::vector<std::string> presets = LlamaPresetNames();
  if (std::find(presets.begin(), presets.end(), name_or_path) != presets.end())
    return BuildPlanModel(name_or_path, LlamaPresetConfig(name_or_path));
  if (!std::filesystem::exists(name_or_path)) {
    LlamaPresetConfig(name_or_path);  // throws, listing the presets
  }
  return BuildPlanModel(name_or_path, LlamaConfig::FromFile(name_or_path));
}

}  // namespace llamarl
