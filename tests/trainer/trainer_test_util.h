// Shared by the trainer suites: a tiny Llama and a seeded batch of rollouts with groups, behaviour
// log-probs and rewards, identical on every rank that builds it.
#pragma once

#include "core/error_text.h"
#include "model/llama_checkpoint.h"
#include "model/llama_config.h"
#include "trainer/train_batch.h"
#include "trainer/trainer_config.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>

namespace llamarl::testing {

inline LlamaConfig TrainerTestConfig() {
  TinyLlamaOptions o;
  o.vocab_size = 61, o.hidden_size = 32, o.num_layers = 2, o.num_heads = 4, o.num_kv_heads = 2;
  return TinyLlamaConfig(o);
}

inline LlamaForCausalLM TrainerTestModel(const LlamaConfig& config, uint64_t seed = 11) {
  LlamaForCausalLM model(config, at::TensorOptions().dtype(at::kFloat));
  InitLlamaWeights(*model, seed);
  return model;
}

// `groups` prompts with `group_size` samples each; lengths vary (packing), behaviour log-probs in
// [-4, -0.5], rewards in {0, 0.5, 1} so that group statistics are non-trivial.
inline TrainBatch TrainerTestBatch(const LlamaConfig& config, int groups, int group_size, uint32_t seed) {
  std::mt19937 rng(seed);
  auto uniform = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  TrainBatch batch;
  for (int g = 0; g < groups; ++g) {
    std::vector<int64_t> prompt(size_t(uniform(1, 6)));
    for (auto& t : prompt) t = uniform(0, int(config.vocab_size) - 1);
    for (int k = 0; k < group_size; ++k) {
      TrainSample s;
      s.prompt = prompt;
      s.response.resize(size_t(uniform(1, 9)));
      for (auto& t : s.response) t = uniform(0, int(config.vocab_size) - 1);
      for (size_t j = 0; j < s.response.size(); ++j)
        s.behaviour_logprobs.push_back(-0.5f - 3.5f * float(uniform(0, 1000)) / 1000.0f);
      s.versions.assign(s.response.size(), 0);
      s.reward = 0.5 * uniform(0, 2);
      s.group_id = 100 + g;
      batch.samples.push_back(std::move(s));
    }
  }
  return batch;
}

inline TrainerConfig TrainerTestTrainerConfig(const std::string& algorithm) {
  TrainerConfig c;
  c.algorithm = algorithm;
  c.optimizer.lr = 1e-3;
  c.optimizer.weight_decay = 0.01;
  c.micro_batch_tokens = 24;  // several packed micro-batches per step
  c.max_grad_norm = 1.0;
  c.logprob_token_chunk = 16, c.logprob_vocab_chunk = 16;
  return c;
}

// Per-sample log-probs of the response tokens through the full [T, V] logits (the path the trainer
// avoids), under softmax(logits / temperature).
inline at::Tensor ReferenceLogprobs(LlamaForCausalLMImpl& model, const TrainSample& s, double temperature) {
  std::vector<int64_t> ids = s.prompt;
  ids.insert(ids.end(), s.response.begin(), s.response.end() - 1);
  at::Tensor logits = model.forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0);
  logits = logits.narrow(0, int64_t(s.prompt.size()) - 1, int64_t(s.response.size())) / temperature;
  at::Tensor logsm = at::log_softmax(logits, -1);
  return logsm.gather(1, at::tensor(s.response, at::kLong).unsqueeze(1)).squeeze(1);
}

// GRPO advantages written out with at::mean / at::std (unbiased) per group, std_eps 1e-6.
inline std::vector<double> ReferenceGroupAdvantages(const TrainBatch& b) {
  std::map<int64_t, std::vector<double>> by_group;
  for (const auto& s : b.samples) by_group[s.group_id].push_back(s.reward);
  std::vector<double> out;
  for (const auto& s : b.samples) {
    at::Tensor r = at::tensor(by_group[s.group_id], at::kDouble);
    const double std = r.numel() > 1 ? at::std(r).item<double>() : 0.0;
    out.push_back((s.reward - r.mean().item<double>()) / (std + 1e-6));
  }
  return out;
}

// torch::optim::AdamW's options for the trainer's AdamW config (the reference optimizer of the tests).
inline torch::optim::AdamWOptions TorchAdamWOptions(const AdamWConfig& c) {
  return torch::optim::AdamWOptions(c.lr).betas({c.beta1, c.beta2}).eps(c.eps).weight_decay(c.weight_decay);
}

// Largest relative Frobenius error ||a - b|| / ||b|| over the parameter tensors. Elementwise
// relative errors are not used: Adam divides by sqrt(v), so an element whose gradient is close to
// rounding noise moves by a visibly different fraction of lr under any change of summation order.
inline double MaxRelDiff(LlamaForCausalLMImpl& a, LlamaForCausalLMImpl& b) {
  double worst = 0;
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    worst = std::max(worst, (pa[i] - pb[i]).norm().item<double>() / (pb[i].norm().item<double>() + 1e-12));
  return worst;
}

// Largest elementwise difference, to compare with one learning-rate step.
inline double MaxAbsDiff(LlamaForCausalLMImpl& a, LlamaForCausalLMImpl& b) {
  double worst = 0;
  auto pa = a.parameters(), pb = b.parameters();
  for (size_t i = 0; i < pa.size(); ++i) worst = std::max(worst, (pa[i] - pb[i]).abs().max().item<double>());
  return worst;
}

// The message of the error that `f` throws (without a backtrace), or "(no error)".
inline std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return ::llamarl::ErrorText(e);
  }
  return "(no error)";
}

}  // namespace llamarl::testing
