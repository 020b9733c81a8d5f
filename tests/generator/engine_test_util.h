// Helpers shared by the engine suites: a small random model with peaked logits, deterministic
// prompts, greedy requests and the full-recompute oracle.
#pragma once

#include "generator/engine.h"
#include "kernels/fp8.h"
#include "model/llama_checkpoint.h"
#include "model/reference_generate.h"

#include <string>
#include <vector>

namespace llamarl::testing {

// Larger init than HF's 0.02 so that logits are peaked: greedy then has no near-ties that float
// summation order could flip between the engine and the oracle.
inline LlamaConfig EngineTestConfig(int64_t vocab_size) {
  TinyLlamaOptions o;
  o.vocab_size = vocab_size;
  o.hidden_size = 32;
  o.num_layers = 2;
  o.num_heads = 4;
  o.num_kv_heads = 2;
  o.max_position_embeddings = 64;
  LlamaConfig c = TinyLlamaConfig(o);
  c.initializer_range = 0.3;
  return c;
}

inline LlamaForCausalLM MakeModel(const LlamaConfig& config, uint64_t seed) {
  LlamaForCausalLM model(config);
  InitLlamaWeights(*model, seed);
  return model;
}

// `length` token ids of [0, vocab), different for each salt.
inline std::vector<int64_t> Prompt(int64_t length, int64_t salt, int64_t vocab) {
  std::vector<int64_t> p;
  for (int64_t i = 0; i < length; ++i) p.push_back((salt * 31 + i * 7 + 3) % vocab);
  return p;
}

inline GenerationRequest Greedy(uint64_t id, std::vector<int64_t> prompt, int64_t max_new_tokens) {
  GenerationRequest r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.sampling.temperature = 0;
  r.sampling.max_new_tokens = max_new_tokens;
  return r;
}

// Greedy full recompute without EOS stops.
inline GenerationResult Reference(LlamaForCausalLMImpl& model, const std::vector<int64_t>& prompt, int64_t max_new) {
  ReferenceGenerateOptions o;
  o.max_new_tokens = max_new;
  o.eos_ids = std::vector<int64_t>{};
  return ReferenceGenerate(model, prompt, o);
}

// fp8 generator weights' reference: `w` through kernels::CastToFp8E4m3 (per row; per tensor for 1-D)
// and back, in w's dtype.
inline at::Tensor Fp8RoundTrip(const at::Tensor& w) {
  const kernels::Fp8Scaling scaling = w.dim() >= 2 ? kernels::Fp8Scaling::kPerRow : kernels::Fp8Scaling::kPerTensor;
  const kernels::Fp8Tensor q = kernels::CastToFp8E4m3(w, scaling);
  return kernels::CastFromFp8E4m3(q.data, q.scales, w.scalar_type());
}

// The weights an fp8 engine quantises: the 2-D projections inside the decoder layers.
inline bool IsLayerProjection(const std::string& name) {
  const std::string suffix = "_proj.weight";
  return name.rfind("model.layers.", 0) == 0 && name.size() > suffix.size() &&
         name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A copy of `model` whose projections (with `everything`: all parameters, what an fp8 push carries)
// hold their fp8-decoded values: what an fp8 engine must compute with.
inline LlamaForCausalLM Fp8Decoded(const LlamaConfig& config, LlamaForCausalLMImpl& model, bool everything = false) {
  LlamaForCausalLM out(config);
  torch::NoGradGuard no_grad;
  auto src = model.named_parameters();
  for (auto& item : out->named_parameters()) {
    const at::Tensor w = src[item.key()];
    item.value().copy_(everything || IsLayerProjection(item.key()) ? Fp8RoundTrip(w) : w);
  }
  return out;
}

}  // namespace llamarl::testing
