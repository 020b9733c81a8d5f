// What the generating side of every placement shares, as trainer_side.h does for training: the
// engine request of a rollout group, a replica's share of the held-out prompts with their requests
// and their scores, and a finished group scored into a RolloutGroup. The split placement's
// GeneratorWorker and the colocated placement's ColocatedWorker both call these, so that a group or
// an evaluation is generated and scored the same way under either placement.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "controller/dataset.h"
#include "controller/rollout.h"
#include "controller/trainer_side.h"
#include "generator/engine.h"
#include "reward/reward.h"

namespace llamarl::controller {

// The request of one rollout group: the item's prompt tokens, rollout.group_size samples under the
// rollout sampling, seeded by GroupSeed(recipe.seed, request_id) (the id is the group's, unique over
// the run), so the same group samples the same tokens under either placement.
GenerationRequest RolloutRequest(const JobContext& job, uint64_t request_id, const DatasetItem& item);

// `completions` (rollout.group_size samples of `item`) scored by `reward` (algorithm.dapo overlong
// shaping included) and stamped with the group id, this rank and the generation seconds; `step` is
// set by the caller (the split placement learns it only when the group is routed).
RolloutGroup ScoreRolloutGroup(const JobContext& job, reward::Reward& reward, const std::vector<Completion>& completions,
                               const DatasetItem& item, int64_t group_id, double gen_s);

// One replica's slice of the held-out prompts: the first eval.num_prompts (at most the eval split)
// split evenly over the replicas (EvenSplit), and the index of its first item in the eval split
// (which seeds the eval.samples requests, so a prompt samples alike whatever the replica count).
struct EvalShare {
  int64_t first = 0;
  std::vector<DatasetItem> items;
};
EvalShare EvalShareOf(const JobContext& job, int replica);

// Submits the share's requests: item i greedily as request greedy_id(i) and, with eval.samples k > 0,
// its k sampled completions as one request sampled_id(i).
void SubmitEval(Engine& engine, const JobContext& job, const EvalShare& share,
                const std::function<uint64_t(size_t)>& greedy_id, const std::function<uint64_t(size_t)>& sampled_id);

// The share's scores: `greedy` holds one completion per item in item order, `sampled[i]` the k of
// item i. Returns this share's sum and count of greedy rewards with its pass@k and mean@k sums
// (replicas left 0: the caller sums the shares).
EvalTally ScoreEvalShare(const JobContext& job, reward::Reward& reward, const EvalShare& share,
                         const std::vector<Completion>& greedy, const std::vector<std::vector<Completion>>& sampled);

}  // namespace llamarl::controller
