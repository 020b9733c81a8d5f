// What the trainer consumes: scored rollouts, one TrainSample per sampled response. The controller
// builds them from generator Completions and rewards and splits a global batch across the trainer
// ranks; each rank passes its part to Trainer::Step. Groups (the samples of one prompt) may straddle
// ranks: group statistics are computed over the global batch (Trainer::Step all-gathers rewards).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace llamarl {

struct TrainSample {
  std::vector<int64_t> prompt, response;   // prompt must be non-empty; an empty response trains nothing
  std::vector<float> behaviour_logprobs;   // generator's log-prob of each response token (mu), same length as response
  std::vector<int64_t> versions;           // policy version per response token (empty = unknown)
  double reward = 0.0;
  int64_t group_id = 0;                    // samples of one prompt share it (GRPO/RLOO groups)
  // Optional: log-probs of a proximal policy (AReaL's decoupled PPO, TIS), one per response token.
  // Empty = the trainer's current policy at the start of the step (detached).
  std::vector<float> proximal_logprobs;
  // DAPO's overlong filtering: the sample's reward still enters its group's advantage statistics, but
  // its tokens carry no loss and do not count in the aggregation's token or sample totals.
  bool loss_masked = false;
  // Multi-turn episodes: per response token, 1 = trained (the model sampled it), 0 = not trained (an
  // observation or template token the model was given): no loss term, so no gradient, and not counted
  // in the aggregation's token totals. It still sits in the input, so later tokens attend to it.
  // behaviour_logprobs, versions and proximal_logprobs keep one entry per response token (any value
  // where the mask is 0). Empty = every token is trained.
  std::vector<uint8_t> loss_mask;

  bool Trains(size_t token) const { return loss_mask.empty() || loss_mask[token] != 0; }
  // Response tokens that carry a loss.
  int64_t NumTrainedTokens() const {
    int64_t n = 0;
    for (size_t j = 0; j < response.size(); ++j) n += Trains(j);
    return n;
  }
};

// The samples THIS rank trains on.
struct TrainBatch {
  std::vector<TrainSample> samples;
};

}  // namespace llamarl
