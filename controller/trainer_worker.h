// A trainer rank of the split placement; the first one is also the controller.
//
// Per RL step s (trainer at policy version v):
//   1. the controller waits for the step's batch (controller/batch_planner.h: the first
//      prompts_per_step finished groups, stale ones handled by async.on_stale), sends each replica
//      leader a "route" command, and broadcasts the plan to the trainer ranks; each trainer rank
//      receives its groups straight from the replicas and rescores those marked for recompute;
//   2. Trainer::Step on them (collective over the trainer ranks) -> version v + 1;
//   3. the controller sends "weights(step s + 1, v + 1)" to every replica leader, then all trainer
//      ranks push the new weights to each replica in turn (DDMA); the generators join between two
//      decode steps; then the controller admits the groups the bound now allows ("admit"), so they
//      start at version v + 1;
//   4. metrics (aggregated over the trainer ranks, written by the controller), evaluation requests,
//      checkpoints.
// Evaluations run on the generators (greedy, held-out prompts) and report to the controller; the
// one before RL and the one after the last step are waited for, the periodic ones are written into
// the row of the step during which their result arrived (with eval_policy_version).
#pragma once

#include "model/llama_weights.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "controller/batch_planner.h"
#include "controller/channel.h"
#include "controller/trainer_side.h"
#include "controller/weight_push.h"

namespace llamarl::controller {

class TrainerWorker {
 public:
  TrainerWorker(JobContext& job, LlamaWeightSource& weights, ReplicaWeightSync& sync,
                std::unique_ptr<Communicator> dp);
  ~TrainerWorker();
  // Runs the RL steps; returns the run summary on the controller (empty elsewhere).
  Json Run();

 private:
  void SendCommand(const Command& command);  // controller: to every replica leader
  void SendEach(const std::vector<std::optional<Command>>& commands);  // commands[r] to replica r's leader
  void SendPayloads(Command::Kind kind, int64_t step, const std::vector<Json>& payloads);
  void Push(int64_t step);
  int64_t Admit(int64_t step);          // controller: what the bound allows now; returns how many
  void StartGenerators(const Cursor& cursor);  // controller: start command, parked groups given back
  void Checkpoint(int64_t step, int64_t just_admitted);
  BatchPlan NextBatch(int64_t step);    // collective over dp: the controller plans, routes, broadcasts
  std::vector<RolloutGroup> Receive(const BatchPlan& plan, StalenessStats* stats);
  void RequestEval(int64_t step);
  // Controller: eval results and summaries; blocks until every evaluation requested for a step <=
  // `wait_through_step` has its result (kNoWait: never blocks).
  static constexpr int64_t kNoWait = INT64_MIN;
  void CollectMessages(int64_t wait_through_step = kNoWait);
  void RunStep(int64_t step);
  void Finish();

  JobContext& job_;
  ReplicaWeightSync& sync_;
  std::unique_ptr<Communicator> dp_;
  LlamaWeightSource& weights_;
  double load_s_ = 0;                        // seconds from the job's start until the trainer held its shard
  std::map<int, int64_t> generator_peak_rss_;  // world rank -> peak since the last metrics row  // released once the trainer and engine hold their slices
  TrainingStart start_;
  StepPrompts prompts_;
  RolloutBuffer buffer_;
  LengthHistogram lengths_;  // this rank's trained samples by response length
  std::unique_ptr<BatchPlanner> planner_;  // controller only
  std::vector<std::unique_ptr<MessagePoller>> from_leaders_;  // controller: kReportTag per replica
  std::vector<bool> finished_;  // the replica's summary (its last message) arrived
  int64_t end_step_ = 0;
  int64_t eval_seq_ = 0;
  std::map<int64_t, EvalTally> evals_;  // by seq, until every replica answered
  std::map<int64_t, std::pair<int64_t, int64_t>> eval_meta_;  // seq -> (step, version)
  std::map<int64_t, Json> done_evals_;  // completed evaluations by step, until a metrics row takes them
  Json first_eval_, last_eval_;
  std::vector<Json> summaries_;
  Json run_;  // totals for the summary
};

}  // namespace llamarl::controller
