// Internal to the trainer: what one Trainer step carries between its phases (trainer_step.cpp,
// trainer_loss.cpp). Not part of the public API.
#pragma once

#include "trainer/losses.h"
#include "trainer/packing.h"

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace llamarl {
class Communicator;
}  // namespace llamarl

namespace llamarl::trainer_detail {

// What a step knows about each local sample before its updates, and the minibatch being trained.
struct StepContext {
  std::string algorithm;     // TrainerConfig's, "sft", or "value" (a separate critic's updates)
  double temperature = 1.0;  // logits are divided by it before scoring (1 for sft)
  // The whole step, per local sample (index into TrainBatch::samples):
  std::vector<double> advantage;                        // all algorithms but ppo and sft
  std::vector<std::vector<float>> token_advantage;      // ppo: per token
  std::vector<std::vector<float>> returns, old_values;  // ppo (and the critic's "value" steps): per token
  double explained_variance = 0;                        // ppo: of old_values against returns, global
  std::vector<std::vector<float>> mu, prox;             // per token; prox may be empty per sample
  int64_t step_tokens = 0, step_samples = 0;  // trained tokens and samples of the whole batch, all ranks
  // The current minibatch (one optimizer update). Loss-masked samples are not packed.
  std::vector<PackedMicroBatch> micro;
  std::vector<double> token_weight;  // aggregation weight of each token of a sample; 0 outside the minibatch
  int64_t global_tokens = 0, global_samples = 0;  // trained tokens and samples of the minibatch, all ranks
};

struct MicroBatchOutput {
  at::Tensor logp, entropy;  // [N] float32, differentiable; undefined in a critic's "value" steps
  at::Tensor values;         // [N] float32 (ppo's shared head, or the critic), differentiable
};

// Local partial sums of the step's metrics over all its updates (summed over ranks at the end).
struct StepAccumulators {
  double loss = 0, kl = 0, entropy = 0, value_loss = 0;
  double value_clipped = 0, value_tokens = 0;  // tokens whose clipped value term binds, of those scored
  double tokens = 0;  // global tokens summed over the updates (the same on every rank: not reduced)
  ImportanceStats iw;
  RatioStats ratio;
};

// What a no-grad scoring pass over the whole batch computes, per local sample and response token.
struct ScoreRequest {
  bool logp = false;    // the current policy's log-probs (the proximal policy of the step)
  bool values = false;  // ppo: the value head's V_t
  bool kl = false;      // the configured KL estimator against the reference (kl.mode "reward")
};
struct NoGradScores {
  std::vector<std::vector<float>> logp, values, kl;  // empty unless requested
};

// What one optimizer update reports (global values).
struct UpdateResult {
  double loss = 0, grad_norm = 0, lr = 0;
  bool skipped = false;
};

// Runs `fn` where `active`; if it throws on any rank, every rank throws (the failing rank its own
// error, the others one naming `what`), so that no rank is left waiting in a later collective.
void CollectiveTry(Communicator& comm, bool active, const std::function<void()>& fn, const std::string& what);

}  // namespace llamarl::trainer_detail
