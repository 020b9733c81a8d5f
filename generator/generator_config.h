// The generator's recipe options, read here next to the engine that uses them (the recipe holds the
// structs, filled by these readers; unknown keys are rejected and errors name the path).
//
// The recipe's "generator" section: how each generator rank's engine is set up.
//   {"max_slots": 64, "kv_cache_bytes": 0, "kv_cache_fraction": 0, "kv_block_size": 16,
//    "weight_dtype": "bfloat16"}
// max_slots: concurrent sequences per replica (a group's samples are admitted together, so at least
//   rollout.group_size). These keys are read straight into the engine's own EngineOptions, which the
//   job completes with what a recipe cannot know (sequence length, vocabulary, decoder, TP group).
// kv_cache_bytes: the paged KV cache per rank in bytes, in the engine's compute dtype; 0 = use
//   kv_cache_fraction, else room for max_slots sequences of the longest prompt + response.
// kv_cache_fraction: (0, 1], the share of the memory left once the weights are loaded (MemAvailable
//   on the CPU, free device memory on a GPU); 0 = off. kv_block_size: tokens per KV block.
// weight_dtype: bfloat16 | float32 | float8_e4m3, the dtype each generator rank loads its weights in
//   (straight from the checkpoint's mapped bytes), computes in and keeps its KV cache in; pushed
//   weights are converted to it. float8_e4m3: the decoder layers' projections are held as e4m3fn with
//   a float32 scale per row and decoded one layer at a time (EngineOptions::fp8_weights); everything
//   else, the computation and the KV cache are bfloat16, and DDMA pushes send e4m3fn with per-row
//   scales (half the bytes of bf16).
#pragma once

#include "core/config.h"
#include "generator/engine.h"

#include <c10/core/ScalarType.h>

#include <string>

namespace llamarl {

struct GeneratorConfig {
  EngineOptions engine;  // max_slots and kv_cache from the recipe; the rest is the job's
  std::string weight_dtype = "bfloat16";
  at::ScalarType WeightDtype() const;  // the compute dtype: bfloat16 for float8_e4m3
  bool Fp8Weights() const;             // weight_dtype is float8_e4m3

  static GeneratorConfig FromJson(const Json& j, const std::string& path);
};

// The sampling keys of the section `r` reads (the recipe's "rollout"): temperature, top_k, top_p,
// max_new_tokens, stop_strings. Fields absent from it keep p's values; seed and eos_ids are set per
// request by whoever submits it.
void ReadSamplingParams(ConfigReader& r, SamplingParams* p);

}  // namespace llamarl
