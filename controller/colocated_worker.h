// A rank of the colocated placement: every rank generates its share of the step's groups, then all
// ranks train on them together, then the new weights go to every replica, in phases:
//   generate (each replica its groups, to completion) -> wait (for the slowest rank) -> train
//   (collective over the world) -> sync -> metrics / eval / checkpoint.
// mode "async" syncs with DDMA (in-process copies where a trainer shard and a generator shard share a
// rank); mode "sync" is the synchronous baseline that LlamaRL compares against: the same phases with
// gather-and-broadcast weight sync. Rollouts are always on-policy here (staleness 0): a rank never
// generates while it trains.
//
// With placement.offload (the default) each rank swaps between the phases, timed as "offload":
//   generate -> offload (KV cache freed, trainer state back from host) -> wait -> train -> sync ->
//   checkpoint -> offload (trainer state to host, KV cache allocated) -> eval -> next generate.
// The swap before training precedes the wait, so a rank that finished generating early swaps while
// the others still generate. The weight push and checkpoints read the trainer state, so they run
// while it is resident; evaluation and generation only need the engine. Once the engine and the
// trainer hold their copies, the worker also frees the parameters of the `model` it was given.
// With an environment (recipe.env) the generate and eval phases drive multi-turn episodes through an
// EpisodeRunner (controller/episodes.h) on the rank's engine, each phase until its episodes end.
#pragma once

#include "model/llama_weights.h"

#include <map>
#include <memory>

#include "controller/episodes.h"
#include "controller/generator_side.h"
#include "controller/length_histogram.h"
#include "controller/trainer_side.h"
#include "controller/weight_push.h"
#include "generator/engine.h"
#include "reward/reward.h"

namespace llamarl::controller {

class ColocatedWorker {
 public:
  ColocatedWorker(JobContext& job, LlamaWeightSource& weights, ReplicaWeightSync& sync,
                  std::unique_ptr<Communicator> tp_group);
  ~ColocatedWorker();
  Json Run();  // the run summary (on the controller)

 private:
  // Dynamic sampling's counts for one step (the same on every rank): groups generated over the
  // world, of them filtered for having no signal, and generation rounds.
  struct SamplingTally {
    int64_t generated = 0, filtered = 0, rounds = 0;
  };
  struct GroupRequest {
    uint64_t id;
    DatasetItem item;
  };
  // This rank's groups of `step` (its replica's share of the batch, split among the replica's TP
  // ranks); with algorithm.dapo.dynamic_sampling, collective over the world (FillWithSignal).
  std::vector<RolloutGroup> Generate(int64_t step, StepTimings* timings, SamplingTally* tally);
  // Generates and scores (shaped rewards included) one group per request, in request order; adds to
  // timings' gen_s and score_s. Collective over the replica's TP ranks.
  std::vector<RolloutGroup> GenerateGroups(int64_t step, const std::vector<GroupRequest>& requests,
                                           StepTimings* timings);
  // DAPO's dynamic sampling: keeps `groups` (this replica's share of the step) that have signal and
  // generates replacements in rounds until every replica holds its share. Each round is collective
  // over the world: the ranks sum every replica's missing count, draw that many prompts from the
  // stream (StepPrompts::Extra), and replica r generates the slice after those of replicas < r, so
  // every rank agrees on the prompts and on the error once more than max_gen_batches x
  // prompts_per_step groups would be generated.
  // With an environment: one group of `requests[i]`'s finished episodes each, in request order.
  std::vector<RolloutGroup> EpisodeGroups(int64_t step, const std::vector<GroupRequest>& requests,
                                          std::map<uint64_t, std::vector<FinishedEpisode>> episodes, double gen_s);
  std::vector<RolloutGroup> FillWithSignal(int64_t step, std::vector<RolloutGroup> groups, StepTimings* timings,
                                           SamplingTally* tally);
  // Collective: greedy mean reward over the held-out prompts, each replica evaluating its slice.
  EvalTally Evaluate();  // collective: every replica's share of the eval prompts
  EvalTally EvaluateEpisodes(const EvalShare& share);  // Evaluate with an environment; collective
  // Device bytes of this rank, and what the swaps of one step cost (see OffloadMetrics).
  struct OffloadTally {
    double offload_s = 0;
    int64_t host_bytes = 0;  // copied to host by this step's OffloadState
    int64_t gen_trainer_state_bytes = 0, gen_kv_cache_bytes = 0;      // resident while generating
    int64_t train_trainer_state_bytes = 0, train_kv_cache_bytes = 0;  // resident while training
  };

  void SyncWeights();
  void RunStep(int64_t step, int64_t end_step);
  // The swaps around the phases (no-ops without placement.offload). EnterGeneration: trainer state to
  // host, KV cache allocated; EnterTraining: KV cache freed, trainer state back. Not collective.
  void EnterGeneration(OffloadTally* tally);
  void EnterTraining(OffloadTally* tally);
  // Collective: the tally's figures, each the largest over the ranks, as metrics keys.
  Json OffloadMetrics(const OffloadTally& tally);

  JobContext& job_;
  ReplicaWeightSync& sync_;
  LlamaWeightSource& weights_;
  double load_s_ = 0;  // seconds from the job's start until the trainer and the engine held their weights  // released once the trainer and engine hold their slices
  std::unique_ptr<Communicator> tp_;
  int replica_ = 0;
  TrainingStart start_;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<EpisodeRunner> runner_;  // with an environment: drives multi-turn episodes on engine_
  std::unique_ptr<reward::Reward> reward_;
  StepPrompts prompts_;
  RolloutBuffer buffer_;
  Json first_eval_, last_eval_;
  Json first_eval_row_;  // the start-of-RL eval's metrics keys
  int64_t first_eval_version_ = 0;  // policy version the start-of-RL eval ran at
  LengthHistogram lengths_;  // this rank's trained samples by response length
  double gen_total_s_ = 0, idle_total_s_ = 0, offload_total_s_ = 0;  // this rank's
  int64_t filtered_total_ = 0;  // dynamic sampling: groups discarded over the run (world)
};

}  // namespace llamarl::controller
