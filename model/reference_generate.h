// Reference generation: the whole sequence is recomputed by the full forward at every step, with no
// KV cache and no batching. Slow by design; it is the oracle the fast generator is tested against,
// so it favours obviousness over speed.
// Legend: V = vocab_size.
#pragma once

#include "model/llama.h"

#include <ATen/core/Generator.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace llamarl {

struct SamplingOptions {
  double temperature = 0.0;  // 0 = greedy (argmax, first index on ties)
  int64_t top_k = 0;         // keep the k most likely tokens; 0 = all
  double top_p = 1.0;        // keep the smallest most-likely set with mass >= top_p; 1 = all
};

struct ReferenceGenerateOptions {
  int64_t max_new_tokens = 16;
  SamplingOptions sampling;
  uint64_t seed = 0;  // seeds one CPU generator per call
  // Generation stops after emitting one of these (kept in the output). nullopt: the config's
  // eos_token_ids; an empty list never stops early.
  std::optional<std::vector<int64_t>> eos_ids;
};

struct GenerationResult {
  std::vector<int64_t> tokens;  // the new tokens only
  // log-softmax of the f32 logits at temperature 1 for each chosen token: the policy's log-prob,
  // whatever temperature / top-k / top-p sampled it.
  std::vector<float> logprobs;
  std::string finish_reason;  // "stop" (an eos id was emitted) or "length"
};

// Applies temperature, then top-k, then top-p (HF's warper order) to logits [V] and draws one token
// with `generator` (a CPU generator). Greedy ignores the generator.
int64_t SampleToken(const at::Tensor& logits_V, const SamplingOptions& options, at::Generator& generator);

// Runs the model on prompt_ids (on the model's device) for up to max_new_tokens steps.
GenerationResult ReferenceGenerate(LlamaForCausalLMImpl& model, const std::vector<int64_t>& prompt_ids,
                                   const ReferenceGenerateOptions& options = {});

}  // namespace llamarl
