// A generator rank of the split placement: runs the Engine continuously, scores finished groups and
// sends them straight to their trainer ranks, and obeys the controller's commands between decode
// steps (weights: join the push and apply it; eval: queue greedy held-out prompts; stop).
//
// The controller decides what to generate and where results go (controller/batch_planner.h): an
// "admit" command names the groups this replica may start (admission indices: index j is prompt
// j % prompts_per_step of step first_step + j / prompts_per_step), so the staleness bound is applied
// before a group starts; a finished group is scored, kept, and announced to the controller with a
// "ready" report (tokens, oldest version, rewards); a "route" command then sends kept groups straight
// to the trainer ranks it names, in its order, or forgets the dropped ones. Weight pushes apply
// between two decode steps; running sequences continue on the new weights with the KV caches they
// have (no refresh prefill; the constructor says why), and every token records the version that
// sampled it.
//
// Tensor parallelism: the replica's first rank (the leader) polls commands and sends rollouts; each
// loop turn it broadcasts the command it got (if any) over the replica's TP group, so every rank
// submits, steps and updates in lockstep.
#pragma once

#include "model/llama_weights.h"

#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "controller/channel.h"
#include "controller/episodes.h"
#include "controller/length_histogram.h"
#include "controller/trainer_side.h"
#include "controller/weight_push.h"
#include "generator/engine.h"
#include "reward/reward.h"

namespace llamarl::controller {

// What a generator rank reports at the end (sent to the controller by each replica leader). Times
// count from the first weight push (the start of RL), so the trainers' warm start is not idle time.
struct GeneratorSummary {
  double load_s = 0;  // seconds from the job's start until the engine held its weights
  double gen_s = 0, score_s = 0, sync_s = 0, idle_s = 0, total_s = 0;
  int64_t groups_sent = 0;
  int64_t groups_unrouted = 0;  // finished but never routed when the run stopped
  LengthHistogram response_lengths;  // every rollout sample generated (evaluations excluded)
  KvCacheStats kv;                    // the engine's KV cache at the end (peak blocks over the run)
  Json episodes;                      // with an environment: EpisodeStats::ToJson over the run
  Json ToJson() const;
};

class GeneratorWorker {
 public:
  // Collective over the world (builds the weight sync and the TP group).
  GeneratorWorker(JobContext& job, LlamaWeightSource& weights, ReplicaWeightSync& sync,
                  std::unique_ptr<Communicator> tp_group);
  ~GeneratorWorker();
  // Until the stop command; returns this rank's summary.
  GeneratorSummary Run();

 private:
  struct InFlight;
  struct EvalJob;

  std::optional<Command> NextCommand(bool block);  // leader polls; broadcast over TP
  bool Handle(const Command& command);             // false on stop
  bool RunInOrderTurn();                           // async.deterministic; false on stop
  void Announce(RolloutGroup group);               // leader: hold a finished group, tell the controller
  void Restore(int64_t count);                     // leader: groups given back from a checkpoint
  void Save(const Command& save);                  // leader: copies of finished groups to the controller
  bool CanSubmit() const { return !admitted_.empty(); }
  void SubmitAdmitted();
  void SubmitEvalEpisodes(EvalJob& job, uint64_t base);  // with an environment
  void Route(const Command& route);
  void StepEngine();
  void OnCompletion(Completion completion);
  void OnEpisode(FinishedEpisode episode);
  // Something to decode, or episodes at their tools.
  bool Busy() const { return engine_->HasWork() || (runner_ && runner_->Busy()); }
  void SendReport(const Json& report);  // leader: to the controller
  void FinishEval(EvalJob& job);
  bool IsLeader() const { return tp_rank_ == 0; }

  JobContext& job_;
  ReplicaWeightSync& sync_;
  std::unique_ptr<Communicator> tp_;
  int replica_ = 0, tp_rank_ = 0;
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<reward::Reward> reward_;
  std::unique_ptr<EpisodeRunner> runner_;  // with an environment (recipe.env)
  std::unique_ptr<MessagePoller> commands_;  // leader only
  StepPrompts prompts_;
  int64_t first_step_ = 0, known_step_ = -1;
  std::deque<int64_t> admitted_;  // admission indices not yet submitted
  std::deque<Command> waiting_;   // async.deterministic: commands held until the engine is idle
  std::map<uint64_t, InFlight> in_flight_;
  std::map<int64_t, RolloutGroup> finished_;  // leader: scored, announced, not yet routed
  std::deque<EvalJob> evals_;
  std::deque<PendingSend> sends_;
  std::optional<std::chrono::steady_clock::time_point> rl_start_;  // the first weight push
  GeneratorSummary summary_;
};

}  // namespace llamarl::controller
