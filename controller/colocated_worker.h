// A rank of the colocated placement: every rank generates its share of the step's groups, then all
// ranks train on them together, then the new weights go to every replica, in phases:
//   generate (each replica its groups, to completion) -> wait (for the slowest rank) -> train
//   (collective over the world) -> sync -> metrics / eval / checkpoint.
// mode "async" syncs with DDMA (in-process copies where a trainer shard and a generator shard share a
// rank); mode "sync" is the synchronous baseline that LlamaRL compares against: the same phases with
// gather-and-broadcast weight sync. Rollouts are always on-policy here (staleness 0): a rank never
// generates while it trains.
#pragma once

#include <memory>

#include "controller/trainer_side.h"
#include "controller/weight_push.h"
#include "generator/engine.h"
#include "reward/reward.h"

namespace llamarl::controller {

class ColocatedWorker {
 public:
  ColocatedWorker(JobContext& job, LlamaForCausalLMImpl& model, ReplicaWeightSync& sync,
                  std::unique_ptr<Communicator> tp_group);
  ~ColocatedWorker();
  Json Run();  // the run summary (on the controller)

 private:
  std::vector<RolloutGroup> Generate(int64_t step, StepTimings* timings);
  // Collective: greedy mean reward over the held-out prompts, each replica evaluating its slice.
  double Evaluate();
  void SyncWeights();
  void RunStep(int64_t step, int64_t end_step);

  JobContext& job_;
  ReplicaWeightSync& sync_;
  LlamaForCausalLMImpl& model_;
  std::unique_ptr<Communicator> tp_;
  int replica_ = 0;
  TrainingStart start_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<reward::Reward> reward_;
  StepPrompts prompts_;
  RolloutBuffer buffer_;
  Json first_eval_, last_eval_;
  double gen_total_s_ = 0, idle_total_s_ = 0;
};

}  // namespace llamarl::controller
