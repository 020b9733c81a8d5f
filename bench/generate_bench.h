// `llamarl bench generate`: tokens/s of the KV-cache engine (generator/engine.h) against, in the same
// run, (a) full recompute — every new token re-runs the whole forward over prompt + tokens so far,
// batched like the engine — and (b) the roofline: the matrix products of one decode step (every
// projection and the LM head on [batch, hidden] inputs) timed alone. The goals: >= 10x full
// recompute at 256 new tokens, >= 50% of the roofline at batch 32 on the default ~20M-parameter model.
#pragma once

#include <nlohmann/json.hpp>

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace llamarl::bench {

struct GenerateBenchOptions {
  std::string model_dir;                     // empty: DefaultGenerateBenchConfig() with random weights
  std::vector<int64_t> batches = {1, 8, 32, 64};
  int64_t prompt_len = 32;                   // tokens per prompt (random ids)
  int64_t new_tokens = 256;                  // generated per sequence (no early stop)
  // Full recompute of all new_tokens steps would take minutes at batch 64, so this many steps are
  // timed at their true lengths (the midpoints of equal bins of [0, new_tokens)) and their mean step
  // time stands for every step; a step's cost is affine in its length, which midpoints integrate
  // exactly.
  int64_t recompute_steps = 4;
  int64_t roofline_repeats = 20;             // decode-step matmul passes; the fastest is reported
  uint64_t seed = 0;
  c10::Device device = c10::Device(c10::kCPU);  // where the model, the KV cache and sampling run
  // Also run the engine with fp8 weights (EngineOptions::fp8_weights, computing in the model's dtype)
  // and report it beside the plain engine: "fp8_engine_tokens_per_s", "fp8_vs_engine".
  bool fp8 = false;
  std::function<void(const std::string&)> progress;  // optional: one line per finished measurement
};

// {"model_params", "model", "prompt_len", "new_tokens", "threads", "results": [{"batch",
// "engine_tokens_per_s", "recompute_tokens_per_s", "roofline_tokens_per_s", "speedup_vs_recompute",
// "fraction_of_roofline", "engine_seconds", "recompute_step_seconds", "roofline_step_seconds",
// "kv_cache_bytes" (the engine's paged KV cache, sized for batch x (prompt_len + new_tokens)),
// "kv_peak_bytes" (the blocks its sequences held at the peak)}, ...]}.
// Throws naming the option when an option is out of range.
nlohmann::json RunGenerateBench(const GenerateBenchOptions& options = {});

}  // namespace llamarl::bench
