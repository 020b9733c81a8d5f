// Rollouts as they travel from generator ranks to trainer ranks, and the staleness bound the trainer
// applies to them.
//
// A RolloutGroup is one prompt's GRPO group: the prompt tokens and every sample's response tokens,
// the generator's log-prob of each token (mu), the policy version that sampled each token (a sample
// may straddle an in-flight weight update, so versions are per token) and the sample's reward.
//
// Wire format (EncodeRolloutGroup): little-endian, fixed-width, versioned by a magic number, so a
// torn or foreign message is an error naming what is wrong rather than garbage in a training batch:
//   u32 magic 'LRG1' | i64 step, group_id, prompt_id, generator_rank | f64 gen_s | vec<i64> prompt |
//   i64 num_samples | per sample: vec<i64> response, vec<f32> logprobs, vec<i64> versions, f64 reward,
//   str finish_reason
// and, under the magic 'LRG2' (episodes: a group with any loss mask), vec<u8> loss_mask, i64 turns,
// f64 tool_s, f64 tool_step_max_s after finish_reason; where vec<T> = i64 count + count elements and
// str = i64 length + bytes.
//
// Staleness (DESIGN.md): a token sampled at version u and trained on by the trainer at version v is
// v - u versions stale. The bound is applied when a group is admitted (controller/batch_planner.h);
// a group whose oldest token is still older than v - max_policy_lag when trained on is "stale" and
// counted. max_policy_lag = 0 is on-policy.
//
// LibTorch-free; not thread-safe (one RolloutBuffer per trainer rank, used by its loop only).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/length_histogram.h"

namespace llamarl::controller {

struct RolloutSample {
  std::vector<int64_t> response;
  std::vector<float> logprobs;   // one per response token
  std::vector<int64_t> versions;  // one per response token
  double reward = 0.0;
  std::string finish_reason;  // "eos", "stop", "length"; multi-turn: the episode's end (env/episode.h)
  // Multi-turn episodes: 1 per token the model sampled (trained), 0 per observation or template token
  // (input only; its logprob is 0). Empty = every token was sampled.
  std::vector<uint8_t> loss_mask;
  // Multi-turn episodes (0 otherwise): model turns, seconds in the environment over all of them, and
  // the slowest single environment step.
  int64_t turns = 0;
  double tool_s = 0, tool_step_max_s = 0;
};

struct RolloutGroup {
  int64_t step = 0;            // the RL step this group was generated for
  int64_t group_id = 0;        // unique over the run
  int64_t prompt_id = 0;       // the dataset item
  int64_t generator_rank = 0;  // world rank that produced it
  double gen_s = 0;            // wall time from submission to completion on the generator
  std::vector<int64_t> prompt;
  std::vector<RolloutSample> samples;

  // Oldest and newest token version over every sample (0 tokens: INT64_MAX / -1).
  int64_t MinVersion() const;
  int64_t MaxVersion() const;
  int64_t NumResponseTokens() const;
};

std::vector<uint8_t> EncodeRolloutGroup(const RolloutGroup& group);
// Throws llamarl::Error naming the offset and what was expected on a malformed message.
RolloutGroup DecodeRolloutGroup(const uint8_t* data, size_t size);

struct StalenessStats {
  int64_t groups = 0;
  int64_t stale_groups = 0;       // groups with a token older than the bound
  int64_t tokens = 0;             // response tokens
  double staleness_mean = 0;      // mean over tokens of (trainer version - token version)
  int64_t staleness_max = 0;
};

// The groups one trainer rank trains on in a step, with their per-token staleness.
class RolloutBuffer {
 public:
  explicit RolloutBuffer(int64_t max_policy_lag);

  // Keeps `group` for this step; returns whether all its tokens were sampled at versions
  // >= trainer_version - max_policy_lag (otherwise it counts as stale).
  bool Add(RolloutGroup group, int64_t trainer_version);
  // The groups and the statistics since the last Take, then starts over.
  std::vector<RolloutGroup> Take(StalenessStats* stats);
  size_t NumKept() const { return kept_.size(); }
  // Tokens by staleness (index = trainer version - token version) over every Add of the run.
  const LengthHistogram& StalenessHistogram() const { return histogram_; }
  int64_t max_policy_lag() const { return max_policy_lag_; }

 private:
  int64_t max_policy_lag_;
  std::vector<RolloutGroup> kept_;
  StalenessStats stats_;
  double staleness_sum_ = 0;
  LengthHistogram histogram_;
};

}  // namespace llamarl::controller
