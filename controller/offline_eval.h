// `llamarl eval`: a policy's score on a JSONL dataset under a reward, outside training.
//
// Greedy pass@1 always; with k samples per prompt (temperature `temperature`, seeds fixed per
// prompt) also mean@k (the mean reward of all samples) and the unbiased pass@j estimator of Chen et
// al. 2021 (HumanEval; PassAtK in controller/job.h) for j = 1, 2, 4, ..., k: per prompt with n = k
// samples of which c pass, pass@j = 1 - C(n - c, j) / C(n, j), averaged over prompts. A sample passes when its reward is at
// least `pass_threshold` (1 for the 0/1 rewards).
//
// Model: an HF directory (config.json, safetensors, tokenizer files; prompts formatted by
// `prompt`) or a run directory / checkpoint (controller/hf_export.h's LoadRunPolicy; prompts
// formatted, the reward defaulted and the engine set up (generator.max_slots, the KV cache) as the
// run's recipe does). Generation runs on the batched engine in this process (one rank, CPU or the
// model's device).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "controller/dataset_prompt.h"
#include "core/config.h"

namespace llamarl::controller {

struct OfflineEvalOptions {
  std::string model;              // HF directory, RUN_DIR or RUN_DIR/checkpoints/step_N
  std::string data;               // JSONL file
  std::string prompt_field = "question";
  std::string answer_field = "answer";
  PromptConfig prompt;            // HF directories only (a run uses its recipe's data.prompt)
  std::string reward;             // reward name; "" = the run's reward (required for an HF directory)
  int64_t samples = 0;            // k samples per prompt; 0 = greedy only
  double temperature = 1.0;       // of the k samples
  int64_t max_new_tokens = 0;     // 0 = the run's rollout.max_new_tokens, else 256
  double pass_threshold = 1.0;
  int64_t limit = 0;              // the first N prompts (0 = all)
  uint64_t seed = 0;
  std::function<void(int64_t done, int64_t total)> progress;  // prompts finished (greedy + sampled passes)
};

// {"model", "checkpoint" and "rl_step" (runs), "data", "reward", "prompts", "greedy_pass@1",
//  "greedy_reward_mean", and with samples: "samples", "temperature", "mean@k", "pass@j" for each j}.
Json RunOfflineEval(const OfflineEvalOptions& options);

}  // namespace llamarl::controller
