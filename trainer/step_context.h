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

// What a step knows about each local sample before the micro-batch loop.
struct StepContext {
  std::string algorithm;
  double temperature = 1.0;  // logits are divided by it before scoring (1 for sft)
  std::vector<PackedMicroBatch> micro;
  std::vector<double> token_weight;                     // aggregation weight of each token of a sample
  std::vector<double> advantage;                        // per sample (all algorithms but ppo and sft)
  std::vector<std::vector<float>> token_advantage;      // ppo: per token
  std::vector<std::vector<float>> returns, old_values;  // ppo: per token
  std::vector<std::vector<float>> mu, prox;             // per token; prox may be empty per sample
  int64_t global_tokens = 0, global_samples = 0;
};

struct MicroBatchOutput {
  at::Tensor logp, entropy;  // [N] float32, differentiable
  at::Tensor values;         // [N] float32 (ppo), differentiable in the value head
};

// Local partial sums of the step's metrics (summed over ranks at the end of the step).
struct StepAccumulators {
  double loss = 0, kl = 0, entropy = 0, value_loss = 0;
  ImportanceStats iw;
};

// Runs `fn` where `active`; if it throws on any rank, every rank throws (the failing rank its own
// error, the others one naming `what`), so that no rank is left waiting in a later collective.
void CollectiveTry(Communicator& comm, bool active, const std::function<void()>& fn, const std::string& what);

}  // namespace llamarl::trainer_detail
