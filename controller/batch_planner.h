// The controller's side of asynchronous (split) training: which groups the generators may start, and
// which finished groups make up each training step and go to which trainer rank. The one place that
// decides what a step trains on (a filter such as DAPO's dynamic sampling belongs in Decide).
//
// Admission (AReaL's bound): a group is "live" from its admission until it is trained on or
// discarded. A new group is admitted only while fewer than (max_policy_lag + 1) * groups_per_step
// groups are live. The controller grants admissions right after it announced a weight push, so a
// group starts at the trainer's current version and, taken in admission order, would be trained at
// most max_policy_lag versions later. With max_policy_lag 0 every step trains exactly the groups
// started at its own version (on-policy). The same cap keeps the queue of finished groups short.
// Each admission goes to the replica with the fewest groups still generating (load).
//
// Batches: step s takes the first groups_per_step finished groups in completion order (a short group
// is not held back by a long one started earlier), so a group that generated for long may be older
// than the bound when its step comes: its oldest token was sampled at a version below
// trainer_version - max_policy_lag. async.on_stale decides: "train" (the default; trained on with
// its per-token importance correction), "drop" (discarded; the admission it held is given back so
// the batch stays full), "recompute" (trained on after its log-probs are rescored under the
// trainer's current policy). Each choice is counted. A step never trains fewer than
// groups_per_step groups: TryPlan waits for more rather than plan a short batch.
//
// Dynamic sampling (DAPO, algorithm.dapo.dynamic_sampling): a finished group whose rewards are all
// equal (GroupHasSignal false: every advantage is zero) is discarded when a step is planned and its
// admission given back, like a dropped stale group, so Admit grants a replacement at once: the
// controller calls Admit while it waits for a batch, not only after weight pushes (the trainer's
// version has not moved since the last push, so the replacement still starts at it). Planning one
// step may discard at most (max_gen_batches - 1) * groups_per_step groups; one more is an error
// naming algorithm.dapo.max_gen_batches. Discarded groups are in the plan (`filtered`), so the
// replicas holding them free them, and counted.
//
// Routing: the batch's groups go to the trainer ranks by load, longest first to the rank with the
// fewest response tokens so far (LPT), so the ranks' micro-batches come out even.
//
// In order (async.deterministic): step s takes the first groups_per_step usable groups in admission
// order, waiting for a slow one rather than taking a later one, admissions go to the replicas in turn
// (index % replicas) rather than by load, and a stale group is decided when the scan reaches it. With
// the generators applying each push between rounds of generation (controller/generator_worker.h), a
// run's batches then no longer depend on timing.
//
// Admission indices are the run's, not the invocation's: the first is options.first_index
// (rl_step * groups_per_step of the first step), and a group's id is its admission index. At a
// checkpoint, the finished live groups (FinishedBefore) let a resumed run restore the groups that
// were waiting (Restore) and admit the same groups after them.
//
// LibTorch-free and deterministic (ties go to the lowest index); not thread-safe (the controller's
// loop owns it).
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"

namespace llamarl::controller {

struct BatchPlannerOptions {
  int64_t groups_per_step = 1;
  int64_t max_policy_lag = 0;
  std::string on_stale = "train";  // AsyncRecipe::on_stale
  int num_replicas = 1;
  int num_trainers = 1;
  int64_t total_groups = INT64_MAX;  // the run's steps * groups_per_step: nothing is admitted past it
  bool dynamic_sampling = false;     // AlgorithmRecipe::dapo
  int64_t max_gen_batches = 1;
  bool in_order = false;             // batches in admission order (async.deterministic)
  int64_t first_index = 0;           // the first admission index (= group id) of this invocation
};

// Whether a group's rewards differ (DAPO's filter: std > 0). Equal rewards give every sample a zero
// group-relative advantage.
bool GroupHasSignal(const std::vector<double>& rewards);

// A generator's notice that a group finished (scored, held by the replica until routed).
struct ReadyGroup {
  int64_t group_id = 0;
  int replica = 0;
  int64_t tokens = 0;       // response tokens over the group's samples
  int64_t min_version = 0;  // the oldest token's version
  std::vector<double> rewards;

  Json ToJson() const;
  static ReadyGroup FromJson(const Json& j, int replica);
};

struct Admission {
  int replica = 0;
  int64_t index = 0;  // the run's admission counter: the group id; index / groups_per_step picks the prompts
};

struct RoutedGroup {
  int64_t group_id = 0;
  int replica = 0;
  int trainer = 0;  // index among the trainer ranks
  int64_t tokens = 0;
  bool stale = false;      // past the bound when planned
  bool recompute = false;  // rescore its log-probs under the current policy before training
};

struct BatchPlan {
  int64_t step = 0;
  std::vector<RoutedGroup> groups;  // the batch, in completion order
  std::vector<ReadyGroup> dropped;  // stale groups discarded while planning this step
  std::vector<ReadyGroup> filtered;  // groups without signal discarded while planning it (dynamic sampling)
  int64_t stale_trained = 0, stale_recomputed = 0;
  std::vector<int64_t> trainer_tokens;  // response tokens routed to each trainer rank

  // The groups trainer `t` receives from replica `r`, in the order the replica sends them.
  std::vector<int64_t> GroupsFor(int trainer, int replica) const;
  Json ToJson() const;
  static BatchPlan FromJson(const Json& j);
};

class BatchPlanner {
 public:
  explicit BatchPlanner(BatchPlannerOptions options);

  // New admissions the bound allows now (call after each weight push is announced).
  std::vector<Admission> Admit();
  void OnReady(ReadyGroup group);
  // The batch of `step` for a trainer at `trainer_version`, or nullopt while fewer than
  // groups_per_step usable groups have finished (stale groups may be dropped meanwhile: they are in
  // the plan that is eventually returned).
  std::optional<BatchPlan> TryPlan(int64_t step, int64_t trainer_version);

  int64_t Live() const { return restored_ + admitted_ - consumed_ - dropped_ - filtered_; }
  int64_t NumReady() const { return int64_t(ready_.size()); }
  int64_t TotalDropped() const { return dropped_; }
  int64_t TotalFiltered() const { return filtered_; }

  // For a checkpoint: the next admission index, and the finished live groups admitted before
  // `index` (by id). A checkpoint keeps those admitted before its step's admissions; a resumed
  // run admits again from there.
  int64_t NextIndex() const { return options_.first_index + admitted_; }
  std::vector<ReadyGroup> FinishedBefore(int64_t index) const;
  // A resumed run: `groups` (from the checkpoint, each with the replica that will announce it) are
  // live again as if admitted before first_index; their OnReady notices follow.
  void Restore(const std::vector<ReadyGroup>& groups);

 private:
  enum class Decision { kTrain, kRecompute, kDrop, kFilter };
  // The single decision on a finished group at planning time: kFilter for one without signal (with
  // dynamic sampling), else on_stale for a stale one.
  Decision Decide(const ReadyGroup& group, int64_t trainer_version) const;
  bool IsStale(const ReadyGroup& group, int64_t trainer_version) const;
  void Route(BatchPlan* plan) const;
  std::optional<BatchPlan> TryPlanInOrder(int64_t step, int64_t trainer_version);
  void AddToPlan(const ReadyGroup& g, int64_t trainer_version, BatchPlan* plan) const;
  void CheckFilteredBound(int64_t step) const;  // algorithm.dapo.max_gen_batches
  void Discard(Decision d, ReadyGroup group);  // kDrop or kFilter: counted, kept for the next plan
  BatchPlan StartPlan(int64_t step);           // a plan carrying the discards since the last one

  BatchPlannerOptions options_;
  int64_t admitted_ = 0, consumed_ = 0, dropped_ = 0, filtered_ = 0, restored_ = 0;
  std::deque<int64_t> order_;  // in order: live group ids in admission order
  std::vector<int64_t> generating_;  // per replica: admitted, not yet finished
  std::deque<ReadyGroup> ready_;     // finished, in completion order
  std::vector<ReadyGroup> dropped_pending_;  // dropped since the last plan
  std::vector<ReadyGroup> filtered_pending_;  // filtered since the last plan
};

}  // namespace llamarl::controller
