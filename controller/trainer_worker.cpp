#include "controller/trainer_worker.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <thread>

#include "controller/progress.h"
#include "core/check.h"
#include "core/logging.h"
#include "report/metrics.h"
#include "report/trace.h"

namespace llamarl::controller {
namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

TrainerWorker::TrainerWorker(JobContext& job, LlamaWeightSource& weights, ReplicaWeightSync& sync,
                             std::unique_ptr<Communicator> dp)
    : job_(job), sync_(sync), dp_(std::move(dp)), weights_(weights), prompts_(job.data.train, job.recipe),
      buffer_(job.recipe.max_policy_lag) {
  if (job.IsController()) {
    for (int r = 0; r < job.placement.NumReplicas(); ++r)
      from_leaders_.push_back(std::make_unique<MessagePoller>(job.world, job.placement.ReplicaRanks(r)[0], kReportTag));
    finished_.assign(from_leaders_.size(), false);
  }
}

TrainerWorker::~TrainerWorker() = default;

void TrainerWorker::SendCommand(const Command& command) {
  SendEach(std::vector<std::optional<Command>>(size_t(job_.placement.NumReplicas()), command));
}

void TrainerWorker::SendEach(const std::vector<std::optional<Command>>& commands) {
  std::vector<PendingSend> sends;
  std::vector<std::string> what;
  for (int r = 0; r < job_.placement.NumReplicas(); ++r) {
    if (!commands[size_t(r)]) continue;
    sends.push_back(SendBytes(job_.world, commands[size_t(r)]->Encode(), job_.placement.ReplicaRanks(r)[0], kCommandTag));
    what.push_back(std::string("the ") + CommandKindName(commands[size_t(r)]->kind) + " command to replica " +
                   std::to_string(r));
  }
  for (size_t i = 0; i < sends.size(); ++i) sends[i].Wait(job_.timeouts.step, what[i]);
}

// Controller: a `kind` command carrying payloads[r] to each replica r whose payload is not null.
void TrainerWorker::SendPayloads(Command::Kind kind, int64_t step, const std::vector<Json>& payloads) {
  std::vector<std::optional<Command>> commands(payloads.size());
  for (size_t r = 0; r < payloads.size(); ++r)
    if (!payloads[r].is_null()) commands[r] = Command{kind, step, start_.trainer->PolicyVersion(), payloads[r]};
  SendEach(commands);
}

void TrainerWorker::Push(int64_t step) {
  ScopedPhase phase(job_, "sync");
  const int64_t version = start_.trainer->PolicyVersion();
  if (job_.IsController()) SendCommand(Command{Command::Kind::kWeights, step, version, Json()});
  for (int r = 0; r < job_.placement.NumReplicas(); ++r)
    sync_.PushReplica(r, version, &start_.trainer->FlatShard(), nullptr);
}

int64_t TrainerWorker::Admit(int64_t step) {
  if (!job_.IsController()) return 0;
  std::vector<Json> payloads(size_t(job_.placement.NumReplicas()));
  const std::vector<Admission> admitted = planner_->Admit();
  for (const Admission& a : admitted) payloads[size_t(a.replica)]["groups"].push_back(a.index);
  SendPayloads(Command::Kind::kAdmit, step, payloads);
  return int64_t(admitted.size());
}

BatchPlan TrainerWorker::NextBatch(int64_t step) {
  ScopedPhase phase(job_, "wait");
  Json plan_json;
  if (job_.IsController()) {
    const auto deadline = Clock::now() + job_.timeouts.step;
    std::optional<BatchPlan> plan;
    while (!(plan = planner_->TryPlan(step, start_.trainer->PolicyVersion()))) {
      LLAMARL_CHECK(Clock::now() < deadline, "rank ", job_.world.Rank(), " (controller) timed out after ",
                    job_.recipe.timeouts.step_s, " s waiting for the finished groups of step ", step, " (",
                    planner_->NumReady(), " ready of ", job_.recipe.rollout.prompts_per_step, ", ", planner_->Live(),
                    " live); raise timeouts.step_s if generation is this slow");
      // A group discarded while planning (dynamic sampling, async.on_stale "drop") gave its admission
      // back: its replacement starts now, at the version of the last push, not after the next one.
      // Deterministic runs admit replacements only once nothing is generating: by then the scan has
      // seen every live group, so how many are admitted at once does not depend on timing.
      if (!job_.recipe.async.deterministic || planner_->Live() == planner_->NumReady()) Admit(step);
      CollectMessages();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::vector<Json> routes(size_t(job_.placement.NumReplicas()));
    const std::vector<int> trainers = job_.placement.TrainerRanks();
    for (const RoutedGroup& g : plan->groups)
      routes[size_t(g.replica)]["send"].push_back({g.group_id, trainers[size_t(g.trainer)]});
    for (const auto* discarded : {&plan->dropped, &plan->filtered})
      for (const ReadyGroup& g : *discarded) routes[size_t(g.replica)]["drop"].push_back(g.group_id);
    for (Json& r : routes) {
      if (r.is_null()) continue;
      if (!r.contains("send")) r["send"] = Json::array();
      if (!r.contains("drop")) r["drop"] = Json::array();
    }
    SendPayloads(Command::Kind::kRoute, step, routes);
    plan_json = plan->ToJson();
  }
  return BatchPlan::FromJson(BroadcastJson(*dp_, plan_json, job_.timeouts.step));
}

std::vector<RolloutGroup> TrainerWorker::Receive(const BatchPlan& plan, StalenessStats* stats) {
  ScopedPhase phase(job_, "wait");
  const int me = dp_->Rank();
  for (int r = 0; r < job_.placement.NumReplicas(); ++r) {
    const int leader = job_.placement.ReplicaRanks(r)[0];
    for (int64_t id : plan.GroupsFor(me, r)) {
      std::vector<uint8_t> bytes = RecvBytes(job_.world, leader, kRolloutTag, job_.timeouts.step,
                                             "rollouts of step " + std::to_string(plan.step));
      RolloutGroup g = DecodeRolloutGroup(bytes.data(), bytes.size());
      LLAMARL_ASSERT(g.group_id == id, "replica ", r, " sent group ", g.group_id, " where the plan of step ",
                     plan.step, " routes group ", id);
      for (const RolloutSample& s : g.samples) lengths_.Add(int64_t(s.response.size()));
      buffer_.Add(std::move(g), start_.trainer->PolicyVersion());
    }
  }
  std::vector<RolloutGroup> groups = buffer_.Take(stats);
  std::vector<RolloutGroup*> rescore;
  for (RolloutGroup& g : groups) {
    for (const RoutedGroup& routed : plan.groups)
      if (routed.group_id == g.group_id && routed.recompute) rescore.push_back(&g);
  }
  if (plan.stale_recomputed > 0) RescoreLogprobs(job_, *start_.trainer, rescore);  // collective
  return groups;
}

void TrainerWorker::RequestEval(int64_t step) {
  if (!job_.IsController()) return;
  const int64_t seq = eval_seq_++;
  eval_meta_[seq] = {step, start_.trainer->PolicyVersion()};
  evals_[seq] = EvalTally();
  SendCommand(Command{Command::Kind::kEval, step, start_.trainer->PolicyVersion(), Json{{"seq", seq}}});
}

void TrainerWorker::CollectMessages(int64_t wait_through_step) {
  if (!job_.IsController()) return;
  const auto deadline = Clock::now() + job_.timeouts.step;
  for (;;) {
    for (int r = 0; r < int(from_leaders_.size()); ++r) {
      // A leader's summary is its last message: stop polling it so no receive stays posted.
      while (!finished_[size_t(r)]) {
        auto bytes = from_leaders_[size_t(r)]->Poll();
        if (!bytes) break;
        Json m = Json::parse(bytes->begin(), bytes->end());
        if (m.at("kind") == "summary") {
          summaries_.push_back(m);
          finished_[size_t(r)] = true;
          continue;
        }
        if (m.at("kind") == "ready") {
          if (m.contains("peak_rss_bytes")) {
            int64_t& peak = generator_peak_rss_[m.at("rank").get<int>()];
            peak = std::max(peak, m.at("peak_rss_bytes").get<int64_t>());
          }
          planner_->OnReady(ReadyGroup::FromJson(m, r));
          continue;
        }
        EvalTally& t = evals_[m.at("seq").get<int64_t>()];
        t.sum += m.at("sum").get<double>();
        t.pass_at_k_sum += m.value("pass_at_k_sum", 0.0);
        t.mean_at_k_sum += m.value("mean_at_k_sum", 0.0);
        t.count += m.at("count").get<int64_t>();
        ++t.replicas;
      }
    }
    for (auto it = evals_.begin(); it != evals_.end();) {
      if (it->second.replicas < job_.placement.NumReplicas()) break;  // in order of request
      auto [step, version] = eval_meta_[it->first];
      Json& done = done_evals_[step];
      done = it->second.ToJson(job_.recipe.eval.samples);
      done.update({{"eval_policy_version", version}, {"eval_step", step}});
      if (first_eval_.is_null()) first_eval_ = done;
      last_eval_ = done;
      it = evals_.erase(it);
    }
    // evals_ is in order of request, so of step: the first outstanding one decides.
    if (evals_.empty() || eval_meta_[evals_.begin()->first].first > wait_through_step) return;
    LLAMARL_CHECK(Clock::now() < deadline, "rank ", job_.world.Rank(), " (controller) timed out after ",
                  job_.recipe.timeouts.step_s, " s waiting for evaluation results from the generators");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void TrainerWorker::RunStep(int64_t step) {
  ScopedStep in_step("RL", step);
  MaybeKillForTest(job_.recipe.debug, job_.world.Rank(), step);
  StepTimings timings;
  StalenessStats staleness;
  const auto step_start = Clock::now();
  auto t = step_start;
  const BatchPlan plan = NextBatch(step);
  const int64_t ready_queue = job_.IsController() ? planner_->NumReady() : 0;
  std::vector<RolloutGroup> groups = Receive(plan, &staleness);
  timings.wait_s = SecondsSince(t);
  const TrainStepMetrics metrics = TrainOnGroups(job_, *start_.trainer, groups, step, &timings);
  t = Clock::now();
  Push(step + 1);
  const int64_t just_admitted = Admit(step + 1);
  timings.sync_s = SecondsSince(t);
  Json row = StepMetricsRow(*dp_, groups, staleness, metrics, timings);
  row.update(PeakRssRow(*dp_, job_.world.Rank()));
  row.update({{"dropped_stale", int64_t(plan.dropped.size())}, {"stale_trained", plan.stale_trained},
              {"stale_recomputed", plan.stale_recomputed}, {"trainer_tokens", plan.trainer_tokens},
              {"ready_queue", ready_queue}});
  if (job_.recipe.algorithm.dapo.dynamic_sampling) {
    const int64_t filtered = int64_t(plan.filtered.size());
    row.update({{"filtered_groups", filtered}, {"generated_groups", int64_t(plan.groups.size()) + filtered}});
  }
  const bool last = step + 1 == end_step_;
  const EvalRecipe& e = job_.recipe.eval;
  const bool eval_now = last || (e.every > 0 && (step + 1 - start_.rl_step) % e.every == 0);
  if (eval_now) RequestEval(step + 1);
  // Deterministic runs write an evaluation into the row of the step after its request (it runs on
  // the generators right after that step's round), never where timing happens to put it.
  const bool in_order = job_.recipe.async.deterministic;
  CollectMessages(last ? INT64_MAX : in_order ? step : kNoWait);
  const CheckpointRecipe& c = job_.recipe.checkpoint;
  if (last || (c.every > 0 && (step + 1) % c.every == 0)) Checkpoint(step, just_admitted);
  if (!job_.IsController()) return;
  row.update({{"step", job_.recipe.sft.steps + step}, {"rl_step", step}, {"phase", "rl"},
              {"policy_version", start_.trainer->PolicyVersion()}, {"time_s", job_.ElapsedS()}});
  row["step_s"] = SecondsSince(step_start);
  row["tokens_per_s"] = double(row.value("tokens", int64_t(0))) / std::max(1e-9, SecondsSince(step_start));
  // The newest completed evaluation goes into this row; a deterministic run's only once its step.
  for (auto it = done_evals_.begin(); it != done_evals_.end() && (!in_order || last || it->first <= step);)
    row.update(it->second), it = done_evals_.erase(it);
  // The generator leaders' peaks reported since the previous row (their "ready" reports).
  for (const auto& [rank, bytes] : generator_peak_rss_) {
    row["peak_rss_bytes_rank" + std::to_string(rank)] = bytes;
    row["peak_rss_bytes"] = std::max(row.value("peak_rss_bytes", int64_t(0)), bytes);
  }
  generator_peak_rss_.clear();
  if (job_.metrics) {
    ScopedPhase writing(job_, "metrics", /*trace=*/false);
    job_.metrics->Write(row);
  }
  ReportProgress(row, step + 1, end_step_);
}

Json TrainerWorker::Run() {
  start_ = StartTraining(job_, *dp_, weights_);
  load_s_ = job_.ElapsedS();
  weights_.Release();  // the trainer holds its shard; the mapping (or tiny model) goes
  end_step_ = job_.recipe.steps;
  LLAMARL_CHECK(start_.rl_step < end_step_, "the run in ", job_.resume_dir, " already finished its ", end_step_,
                " steps; raise steps (--set steps=N) to continue it");
  prompts_.Restore(start_.resumed ? start_.cursor : prompts_.CursorAt(0), start_.rl_step);
  StartGenerators(prompts_.CursorAt(start_.rl_step));
  Push(start_.rl_step);
  RequestEval(start_.rl_step);  // before the first admissions, so the engine evaluates first
  Admit(start_.rl_step);
  CollectMessages(/*wait_through_step=*/start_.rl_step);
  for (int64_t step = start_.rl_step; step < end_step_; ++step) RunStep(step);
  Finish();
  return run_;
}

void TrainerWorker::StartGenerators(const Cursor& cursor) {
  if (!job_.IsController()) return;
  const int64_t per_step = job_.recipe.rollout.prompts_per_step;
  const int replicas = job_.placement.NumReplicas();
  const bool in_order = job_.recipe.async.deterministic;
  // A deterministic run's checkpoint holds the finished groups that were waiting for the trainer:
  // each goes back to the replica that admission in turn gives it, admissions continue after them.
  std::vector<RolloutGroup> parked;
  int64_t first_index = start_.rl_step * per_step;
  if (in_order && start_.extra.contains("parked")) {
    parked = ReadParkedGroups(job_.resume_checkpoint);
    first_index = start_.extra.at("parked").at("next_index").get<int64_t>();
  }
  const int64_t to_consume = (end_step_ - start_.rl_step) * per_step;
  const DapoRecipe& dapo = job_.recipe.algorithm.dapo;
  planner_ = std::make_unique<BatchPlanner>(BatchPlannerOptions{
      per_step, job_.recipe.max_policy_lag, job_.recipe.async.on_stale, replicas, job_.placement.num_trainers,
      to_consume, dapo.dynamic_sampling, dapo.max_gen_batches, in_order, first_index});
  std::vector<ReadyGroup> restored;
  std::vector<std::vector<const RolloutGroup*>> to(static_cast<size_t>(replicas));
  for (const RolloutGroup& g : parked) {
    const int r = int(g.group_id % replicas);
    restored.push_back(ReadyGroup{g.group_id, r, g.NumResponseTokens(), g.MinVersion(), {}});
    to[size_t(r)].push_back(&g);
  }
  planner_->Restore(restored);
  std::vector<Json> payloads;
  for (int r = 0; r < replicas; ++r) {
    payloads.push_back(Json{{"first_step", start_.rl_step}, {"end_step", end_step_}, {"cursor", cursor.ToJson()},
                            {"restored", int64_t(to[size_t(r)].size())}});
  }
  SendPayloads(Command::Kind::kStart, start_.rl_step, payloads);
  for (int r = 0; r < replicas; ++r) {
    for (const RolloutGroup* g : to[size_t(r)]) {
      SendBytes(job_.world, EncodeRolloutGroup(*g), job_.placement.ReplicaRanks(r)[0], kCheckpointTag)
          .Wait(job_.timeouts.startup, "a parked group to replica " + std::to_string(r));
    }
  }
  if (!parked.empty()) LogInfo("resumed ", parked.size(), " finished groups waiting in the checkpoint");
}

// A deterministic run with max_policy_lag > 0 has finished groups waiting for the trainer at any step
// boundary; they were sampled with weights older than the checkpoint's, so they go into it (copies
// from the replicas) for a resumed run to train on exactly as the uninterrupted one does. The push
// that just returned waited for each replica's round in progress, so every group admitted before
// this step's admissions has finished (its notice may still be on the way).
void TrainerWorker::Checkpoint(int64_t step, int64_t just_admitted) {
  ScopedPhase phase(job_, "checkpoint");
  const bool park = job_.recipe.async.deterministic;
  std::vector<RolloutGroup> parked;
  int64_t next_index = 0;
  if (park && job_.IsController()) {
    next_index = planner_->NextIndex() - just_admitted;
    const auto deadline = Clock::now() + job_.timeouts.step;
    std::vector<ReadyGroup> ready;
    while (int64_t((ready = planner_->FinishedBefore(next_index)).size()) < planner_->Live() - just_admitted) {
      LLAMARL_CHECK(Clock::now() < deadline, "rank ", job_.world.Rank(), " (controller) timed out after ",
                    job_.recipe.timeouts.step_s, " s waiting for the finished groups a checkpoint keeps");
      CollectMessages();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    std::vector<Json> saves(size_t(job_.placement.NumReplicas()));
    for (const ReadyGroup& g : ready) saves[size_t(g.replica)]["groups"].push_back(g.group_id);
    SendPayloads(Command::Kind::kSave, step + 1, saves);
    for (int r = 0; r < job_.placement.NumReplicas(); ++r) {
      const int leader = job_.placement.ReplicaRanks(r)[0];
      for (const ReadyGroup& g : ready) {
        if (g.replica != r) continue;
        std::vector<uint8_t> bytes = RecvBytes(job_.world, leader, kCheckpointTag, job_.timeouts.step,
                                               "the finished groups a checkpoint keeps");
        parked.push_back(DecodeRolloutGroup(bytes.data(), bytes.size()));
      }
    }
    std::sort(parked.begin(), parked.end(),
              [](const RolloutGroup& a, const RolloutGroup& b) { return a.group_id < b.group_id; });
  }
  SaveRunCheckpoint(job_, *start_.trainer, step + 1, prompts_.CursorAt(step + 1), park ? &parked : nullptr,
                    next_index);
}

void TrainerWorker::Finish() {
  const LengthHistogram lengths = SumOverRanks(*dp_, lengths_, job_.timeouts.step);
  const LengthHistogram staleness = SumOverRanks(*dp_, buffer_.StalenessHistogram(), job_.timeouts.step);
  if (!job_.IsController()) return;
  SendCommand(Command{Command::Kind::kStop, end_step_, start_.trainer->PolicyVersion(), Json()});
  const auto deadline = Clock::now() + job_.timeouts.step;
  while (int(summaries_.size()) < job_.placement.NumReplicas()) {
    LLAMARL_CHECK(Clock::now() < deadline, "rank ", job_.world.Rank(), " timed out waiting for the generators' ",
                  "summaries after the stop command (", summaries_.size(), " of ", job_.placement.NumReplicas(), ")");
    CollectMessages();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  run_ = {{"eval_start", first_eval_}, {"eval_end", last_eval_}, {"generators", summaries_},
          {"response_lengths", lengths.ToJson()}, {"staleness_tokens", staleness.ToJson()},
          {"dropped_stale_total", planner_->TotalDropped()}, {"trainer_load_s", load_s_}};
  if (job_.recipe.algorithm.dapo.dynamic_sampling) run_["filtered_groups_total"] = planner_->TotalFiltered();
}

}  // namespace llamarl::controller
