// A generator rank of the split placement: runs the Engine continuously, scores finished groups and
// sends them straight to their trainer ranks, and obeys the controller's commands between decode
// steps (weights: join the push and apply it; eval: queue greedy held-out prompts; stop).
//
// The staleness bound decides how far ahead a replica may generate: its j-th group (counted from the
// run's first RL step, `share` groups per step) belongs to step first_step + j / share and is only
// started once the trainer has announced step >= that step - max_policy_lag. With lag L the replica
// therefore runs up to L steps ahead of the trainer and waits only when it is that far ahead (or when
// the run's last step is fully generated). Weight pushes apply between two decode steps; running
// sequences continue on the new weights with the KV caches they have (no refresh prefill; the
// constructor says why). Sent groups fill the trainers' slots in sending order, so
// a long group started early may land in a later step; the trainer's RolloutBuffer drops it when its
// tokens are then too old.
//
// Tensor parallelism: the replica's first rank (the leader) polls commands and sends rollouts; each
// loop turn it broadcasts the command it got (if any) over the replica's TP group, so every rank
// submits, steps and updates in lockstep.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "controller/channel.h"
#include "controller/length_histogram.h"
#include "controller/trainer_side.h"
#include "controller/weight_push.h"
#include "generator/engine.h"
#include "reward/reward.h"

namespace llamarl::controller {

// What a generator rank reports at the end (sent to the controller by each replica leader). Times
// count from the first weight push (the start of RL), so the trainers' warm start is not idle time.
struct GeneratorSummary {
  double gen_s = 0, score_s = 0, sync_s = 0, idle_s = 0, total_s = 0;
  int64_t groups_sent = 0;
  LengthHistogram response_lengths;  // every rollout sample generated (evaluations excluded)
  Json ToJson() const;
};

class GeneratorWorker {
 public:
  // Collective over the world (builds the weight sync and the TP group).
  GeneratorWorker(JobContext& job, LlamaForCausalLMImpl& model, ReplicaWeightSync& sync,
                  std::unique_ptr<Communicator> tp_group);
  ~GeneratorWorker();
  // Until the stop command; returns this rank's summary.
  GeneratorSummary Run();

 private:
  struct InFlight;
  struct EvalJob;

  std::optional<Command> NextCommand(bool block);  // leader polls; broadcast over TP
  bool Handle(const Command& command);             // false on stop
  bool CanSubmit() const;  // the bound lets the next group start
  void SubmitAllowed();
  void StepEngine();
  void OnCompletion(Completion completion);
  void SendGroup(RolloutGroup group);
  void FinishEval(EvalJob& job);
  bool IsLeader() const { return tp_rank_ == 0; }

  JobContext& job_;
  ReplicaWeightSync& sync_;
  std::unique_ptr<Communicator> tp_;
  int replica_ = 0, tp_rank_ = 0;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<reward::Reward> reward_;
  std::unique_ptr<MessagePoller> commands_;  // leader only
  StepPrompts prompts_;
  int64_t first_step_ = 0, end_step_ = 0, known_step_ = -1;
  int64_t next_group_ = 0, sent_ = 0;
  std::map<uint64_t, InFlight> in_flight_;
  std::deque<EvalJob> evals_;
  std::deque<PendingSend> sends_;
  std::optional<std::chrono::steady_clock::time_point> rl_start_;  // the first weight push
  GeneratorSummary summary_;
};

}  // namespace llamarl::controller
