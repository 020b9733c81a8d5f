#include "controller/trainer_worker.h"

#include <ATen/ATen.h>

#include <thread>

#include "controller/metrics.h"
#include "controller/progress.h"
#include "controller/trace.h"
#include "core/logging.h"

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

void TrainerWorker::Admit(int64_t step) {
  if (!job_.IsController()) return;
  std::vector<Json> payloads(size_t(job_.placement.NumReplicas()));
  for (const Admission& a : planner_->Admit()) payloads[size_t(a.replica)]["groups"].push_back(a.index);
  SendPayloads(Command::Kind::kAdmit, step, payloads);
}

BatchPlan TrainerWorker::NextBatch(int64_t step) {
  ScopedPhase phase(job_, "wait");
  Json plan_json;
  if (job_.IsController()) {
    const auto deadline = Clock::now() + job_.timeouts.step;
    std::optional<BatchPlan> plan;
    while (!(plan = planner_->TryPlan(step, start_.trainer->PolicyVersion()))) {
      TORCH_CHECK(Clock::now() < deadline, "rank ", job_.world.Rank(), " (controller) timed out after ",
                  job_.recipe.timeouts.step_s, " s waiting for the finished groups of step ", step, " (",
                  planner_->NumReady(), " ready of ", job_.recipe.rollout.prompts_per_step, ", ", planner_->Live(),
                  " live); raise timeouts.step_s if generation is this slow");
      // A group discarded while planning (dynamic sampling, async.on_stale "drop") gave its admission
      // back: its replacement starts now, at the version of the last push, not after the next one.
      Admit(step);
      CollectMessages(false);
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
      TORCH_INTERNAL_ASSERT(g.group_id == id, "replica ", r, " sent group ", g.group_id, " where the plan of step ",
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

void TrainerWorker::CollectMessages(bool block_for_evals) {
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
      pending_eval_ = it->second.ToJson(job_.recipe.eval.samples);
      pending_eval_.update({{"eval_policy_version", version}, {"eval_step", step}});
      if (first_eval_.is_null()) first_eval_ = pending_eval_;
      last_eval_ = pending_eval_;
      it = evals_.erase(it);
    }
    if (!block_for_evals || evals_.empty()) return;
    TORCH_CHECK(Clock::now() < deadline, "rank ", job_.world.Rank(), " (controller) timed out after ",
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
  Admit(step + 1);
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
  if (last || (e.every > 0 && (step + 1 - start_.rl_step) % e.every == 0)) RequestEval(step + 1);
  CollectMessages(/*block_for_evals=*/last);
  const CheckpointRecipe& c = job_.recipe.checkpoint;
  if (last || (c.every > 0 && (step + 1) % c.every == 0)) {
    ScopedPhase phase(job_, "checkpoint");
    SaveRunCheckpoint(job_, *start_.trainer, step + 1, prompts_.CursorAt(step + 1));
  }
  if (!job_.IsController()) return;
  row.update({{"step", job_.recipe.sft.steps + step}, {"rl_step", step}, {"phase", "rl"},
              {"policy_version", start_.trainer->PolicyVersion()}, {"time_s", job_.ElapsedS()}});
  row["step_s"] = SecondsSince(step_start);
  row["tokens_per_s"] = double(row.value("tokens", int64_t(0))) / std::max(1e-9, SecondsSince(step_start));
  if (!pending_eval_.is_null()) row.update(pending_eval_), pending_eval_ = Json();
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
  TORCH_CHECK(start_.rl_step < end_step_, "the run in ", job_.resume_dir, " already finished its ", end_step_,
              " steps; raise steps (--set steps=N) to continue it");
  prompts_.Restore(start_.resumed ? start_.cursor : prompts_.CursorAt(0), start_.rl_step);
  const Cursor cursor = prompts_.CursorAt(start_.rl_step);
  if (job_.IsController()) {
    const int64_t per_step = job_.recipe.rollout.prompts_per_step;
    const DapoRecipe& dapo = job_.recipe.algorithm.dapo;
    planner_ = std::make_unique<BatchPlanner>(BatchPlannerOptions{
        per_step, job_.recipe.max_policy_lag, job_.recipe.async.on_stale, job_.placement.NumReplicas(),
        job_.placement.num_trainers, (end_step_ - start_.rl_step) * per_step, dapo.dynamic_sampling,
        dapo.max_gen_batches});
    SendCommand(Command{Command::Kind::kStart, start_.rl_step, start_.trainer->PolicyVersion(),
                        Json{{"first_step", start_.rl_step}, {"end_step", end_step_}, {"cursor", cursor.ToJson()}}});
  }
  Push(start_.rl_step);
  RequestEval(start_.rl_step);  // before the first admissions, so the engine evaluates first
  Admit(start_.rl_step);
  CollectMessages(/*block_for_evals=*/true);
  for (int64_t step = start_.rl_step; step < end_step_; ++step) RunStep(step);
  Finish();
  return run_;
}

void TrainerWorker::Finish() {
  const LengthHistogram lengths = SumOverRanks(*dp_, lengths_, job_.timeouts.step);
  const LengthHistogram staleness = SumOverRanks(*dp_, buffer_.StalenessHistogram(), job_.timeouts.step);
  if (!job_.IsController()) return;
  SendCommand(Command{Command::Kind::kStop, end_step_, start_.trainer->PolicyVersion(), Json()});
  const auto deadline = Clock::now() + job_.timeouts.step;
  while (int(summaries_.size()) < job_.placement.NumReplicas()) {
    TORCH_CHECK(Clock::now() < deadline, "rank ", job_.world.Rank(), " timed out waiting for the generators' ",
                "summaries after the stop command (", summaries_.size(), " of ", job_.placement.NumReplicas(), ")");
    CollectMessages(false);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  run_ = {{"eval_start", first_eval_}, {"eval_end", last_eval_}, {"generators", summaries_},
          {"response_lengths", lengths.ToJson()}, {"staleness_tokens", staleness.ToJson()},
          {"dropped_stale_total", planner_->TotalDropped()}, {"trainer_load_s", load_s_}};
  if (job_.recipe.algorithm.dapo.dynamic_sampling) run_["filtered_groups_total"] = planner_->TotalFiltered();
}

}  // namespace llamarl::controller
