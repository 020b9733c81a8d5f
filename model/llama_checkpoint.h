// Hugging Face checkpoints of the Llama family: a directory with config.json and safetensors
// weights (model.safetensors, or shards with model.safetensors.index.json), read and written with
// HF's tensor names, and the random initialisation behind `llamarl init`.
#pragma once

#include "model/llama.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llamarl {

struct LoadLlamaOptions {
  at::ScalarType dtype = at::kFloat;  // the parameters' dtype; stored tensors are converted
  at::Device device = at::kCPU;
};

// Reads `dir`/config.json and the weights. Every parameter the config implies must be present with
// its exact shape and a floating dtype; missing and unexpected tensors are listed by name, and a
// wrong shape names the config.json fields that set it. Tolerated extras: lm_head.weight in a tied
// checkpoint, and the rotary_emb.inv_freq buffers that old HF checkpoints carry.
LlamaForCausalLM LoadLlama(const std::string& dir, const LoadLlamaOptions& options = {});

struct SaveLlamaOptions {
  std::optional<at::ScalarType> dtype;          // stored dtype; default: the parameters' dtype
  int64_t max_shard_bytes = int64_t(5) << 30;   // HF's default "5GB"; larger models are sharded
};

// Writes `dir`/config.json (torch_dtype set to the stored dtype), generation_config.json and the
// safetensors weights; returns the safetensors files written. `config` must describe `model`'s
// shapes (it may differ in token ids and other metadata). Tied models store no lm_head.weight.
std::vector<std::string> SaveLlama(const std::string& dir, LlamaForCausalLMImpl& model, const LlamaConfig& config,
                                   const SaveLlamaOptions& options = {});

// HF's _init_weights: every projection and embedding ~ N(0, initializer_range), biases 0, norm
// weights 1. Drawn in f32 from one CPU generator in named_parameters() order, so a seed gives the same
// weights on every device and dtype (up to the dtype's rounding).
void InitLlamaWeights(LlamaForCausalLMImpl& model, uint64_t seed);

struct RandomLlamaOptions {
  uint64_t seed = 0;
  at::ScalarType dtype = at::kBFloat16;         // stored dtype
  int64_t max_shard_bytes = int64_t(5) << 30;   // HF's default "5GB"
  Json extra_config_fields = Json::object();    // merged into config.json (HF-only fields)
};
// Writes what InitLlamaWeights + SaveLlama would write for `config` (the same values for a seed,
// rounded to `dtype`), one tensor at a time: each parameter is drawn in f32, converted and written
// before the next is drawn, so memory holds one parameter, never the model. Returns the files written.
std::vector<std::string> WriteRandomLlama(const std::string& dir, const LlamaConfig& config,
                                          const RandomLlamaOptions& options = {});

// "float32" <-> at::kFloat, "bfloat16", "float16" (config.json's torch_dtype).
at::ScalarType TorchDtypeFromName(const std::string& name);
std::string TorchDtypeName(at::ScalarType dtype);

}  // namespace llamarl
