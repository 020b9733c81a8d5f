#include "controller/colocated_worker.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "controller/batch_planner.h"
#include "controller/generator_side.h"
#include "controller/progress.h"
#include "core/check.h"
#include "core/logging.h"
#include "report/metrics.h"
#include "report/trace.h"
#include "reward/registry.h"
#include "trainer/flat_params.h"

namespace llamarl::controller {
namespace {
using Clock = std::chrono::steady_clock;
// Ids of dynamic sampling's replacement groups: this bit | the prompt's stream position
// (StepPrompts::Extra), apart from the step * prompts_per_step + k of a step's own groups.
constexpr uint64_t kReplacementGroupBit = uint64_t(1) << 40;
}  // namespace

ColocatedWorker::ColocatedWorker(JobContext& job, LlamaWeightSource& weights, ReplicaWeightSync& sync,
                                 std::unique_ptr<Communicator> tp_group)
    : job_(job), sync_(sync), weights_(weights), tp_(std::move(tp_group)), prompts_(job.data.train, job.recipe),
      buffer_(job.recipe.max_policy_lag) {
  replica_ = job.placement.ReplicaOf(job.world.Rank());
  reward_ = job.recipe.reward.Make();
}

ColocatedWorker::~ColocatedWorker() = default;

std::vector<RolloutGroup> ColocatedWorker::GenerateGroups(int64_t step, const std::vector<GroupRequest>& requests,
                                                          StepTimings* timings) {
  const auto t = Clock::now();
  std::map<uint64_t, std::vector<Completion>> by_group;
  std::map<uint64_t, std::vector<FinishedEpisode>> episodes;  // with an environment
  {
    ScopedPhase phase(job_, "generate");
    for (const GroupRequest& r : requests) {
      if (runner_) runner_->Submit(*engine_, RolloutRequest(job_, r.id, r.item), {r.item.id, r.item.prompt, r.item.answer});
      else engine_->Submit(RolloutRequest(job_, r.id, r.item));
    }
    if (runner_) {
      LLAMARL_ASSERT(RunEpisodesUntilDone(*engine_, *runner_).empty(), "a rollout request that is no episode");
      for (FinishedEpisode& e : runner_->TakeFinished()) episodes[e.completion.request_id].push_back(std::move(e));
    } else {
      for (Completion& c : engine_->RunUntilDone()) by_group[c.request_id].push_back(std::move(c));
    }
  }
  const double gen_s = SecondsSince(t);
  timings->gen_s += gen_s;
  if (runner_) return EpisodeGroups(step, requests, std::move(episodes), gen_s);
  const auto ts = Clock::now();
  ScopedPhase scoring(job_, "score", /*trace=*/false);
  std::vector<RolloutGroup> groups;
  for (const GroupRequest& r : requests) {
    RolloutGroup g = ScoreRolloutGroup(job_, *reward_, by_group.at(r.id), r.item, int64_t(r.id), gen_s);
    g.step = step;
    groups.push_back(std::move(g));
  }
  timings->score_s += SecondsSince(ts);
  return groups;
}

std::vector<RolloutGroup> ColocatedWorker::EpisodeGroups(int64_t step, const std::vector<GroupRequest>& requests,
                                                         std::map<uint64_t, std::vector<FinishedEpisode>> episodes,
                                                         double gen_s) {
  std::vector<RolloutGroup> groups;
  for (const GroupRequest& r : requests) {
    RolloutGroup g = EpisodeGroup(std::move(episodes.at(r.id)), r.item.id);  // rewarded by the environment
    g.step = step;
    g.group_id = int64_t(r.id);
    g.generator_rank = job_.world.Rank();
    g.gen_s = gen_s;
    groups.push_back(std::move(g));
  }
  return groups;
}

std::vector<RolloutGroup> ColocatedWorker::FillWithSignal(int64_t step, std::vector<RolloutGroup> groups,
                                                          StepTimings* timings, SamplingTally* tally) {
  const int64_t per_step = job_.routing.groups_per_step, share = job_.routing.Share(replica_);
  const int64_t max_generated = job_.recipe.algorithm.dapo.max_gen_batches * per_step;
  const int num_replicas = job_.placement.NumReplicas();
  std::vector<RolloutGroup> kept;
  *tally = SamplingTally{per_step, 0, 0};
  for (;;) {
    ++tally->rounds;
    int64_t filtered = 0;
    for (RolloutGroup& g : groups) {
      std::vector<double> rewards;
      for (const RolloutSample& sample : g.samples) rewards.push_back(sample.reward);
      if (GroupHasSignal(rewards)) kept.push_back(std::move(g));
      else ++filtered;
    }
    // Each replica's missing groups and the groups filtered this round, every replica counted once
    // (by its first TP rank; the others hold the same groups).
    at::Tensor counts = at::zeros({num_replicas + 1}, at::kLong);
    if (tp_->Rank() == 0) {
      counts[replica_] = share - int64_t(kept.size());
      counts[num_replicas] = filtered;
    }
    job_.world.AllReduce(counts)->Wait(job_.timeouts.step);
    const int64_t* c = counts.data_ptr<int64_t>();
    tally->filtered += c[num_replicas];
    int64_t missing = 0, before = 0;
    for (int r = 0; r < num_replicas; ++r) {
      missing += c[r];
      if (r < replica_) before += c[r];
    }
    if (missing == 0) return kept;
    LLAMARL_CHECK(tally->generated + missing <= max_generated, "RL step ", step, ": ", tally->filtered, " of the ",
                  tally->generated, " groups generated in ", tally->rounds, " rounds had rewards all equal (no ",
                  "signal) and ", missing, " more are needed, beyond the ", max_generated, " groups a step may ",
                  "generate (algorithm.dapo.max_gen_batches ", job_.recipe.algorithm.dapo.max_gen_batches,
                  " x rollout.prompts_per_step ", per_step, "); the task is too easy or too hard for the policy: ",
                  "raise algorithm.dapo.max_gen_batches or set algorithm.dapo.dynamic_sampling to false");
    // Every rank draws the same replacements; replica r takes the c[r] after those of replicas < r.
    int64_t first = 0;
    const std::vector<DatasetItem> extra = prompts_.Extra(missing, &first);
    tally->generated += missing;
    std::vector<GroupRequest> requests;
    for (int64_t j = before; j < before + c[replica_]; ++j)
      requests.push_back(GroupRequest{kReplacementGroupBit | uint64_t(first + j), extra[size_t(j)]});
    groups = GenerateGroups(step, requests, timings);
  }
}

std::vector<RolloutGroup> ColocatedWorker::Generate(int64_t step, StepTimings* timings, SamplingTally* tally) {
  const std::vector<DatasetItem>& items = prompts_.ForStep(step);
  const int64_t offset = job_.routing.Offset(replica_), share = job_.routing.Share(replica_);
  std::vector<GroupRequest> requests;
  for (int64_t k = offset; k < offset + share; ++k)
    requests.push_back(GroupRequest{uint64_t(step * job_.routing.groups_per_step + k), items[size_t(k)]});
  std::vector<RolloutGroup> groups = GenerateGroups(step, requests, timings);
  if (job_.recipe.algorithm.dapo.dynamic_sampling) groups = FillWithSignal(step, std::move(groups), timings, tally);
  // TP ranks of a replica hold the same groups; each trains on a disjoint subset of them.
  std::vector<RolloutGroup> mine;
  for (size_t i = 0; i < groups.size(); ++i) {
    if (int64_t(i) % tp_->Size() != tp_->Rank()) continue;
    for (const RolloutSample& s : groups[i].samples) lengths_.Add(int64_t(s.response.size()));
    mine.push_back(std::move(groups[i]));
  }
  return mine;
}

EvalTally ColocatedWorker::Evaluate() {
  ScopedPhase phase(job_, "eval");
  const EvalShare share = EvalShareOf(job_, replica_);
  const uint64_t n_items = share.items.size();  // request ids: i greedy, n_items + i the k samples of item i
  if (runner_) return EvaluateEpisodes(share);
  SubmitEval(*engine_, job_, share, [](size_t i) { return uint64_t(i); }, [n_items](size_t i) { return n_items + i; });
  std::vector<Completion> done, all = engine_->RunUntilDone();
  std::vector<std::vector<Completion>> sampled(share.items.size());
  for (Completion& c : all) {
    if (c.request_id < n_items) done.push_back(std::move(c));
    else sampled[size_t(c.request_id - n_items)].push_back(std::move(c));
  }
  std::sort(done.begin(), done.end(), [](const Completion& a, const Completion& b) { return a.request_id < b.request_id; });
  const bool leader = tp_->Rank() == 0;
  const EvalTally mine = ScoreEvalShare(job_, *reward_, share, done, sampled);
  at::Tensor sums = at::tensor({mine.sum, double(mine.count), mine.pass_at_k_sum, mine.mean_at_k_sum}, at::kDouble);
  if (!leader) sums.zero_();  // TP ranks of a replica evaluated the same items
  job_.world.AllReduce(sums)->Wait(job_.timeouts.step);
  auto v = sums.accessor<double, 1>();
  EvalTally tally;
  tally.sum = v[0], tally.count = int64_t(v[1]), tally.pass_at_k_sum = v[2], tally.mean_at_k_sum = v[3];
  return tally;
}

EvalTally ColocatedWorker::EvaluateEpisodes(const EvalShare& share) {
  // Greedy episodes scored by the environment (recipe validation keeps eval.samples at 0).
  for (size_t i = 0; i < share.items.size(); ++i) {
    const DatasetItem& item = share.items[i];
    runner_->Submit(*engine_, GenerationRequest{i, job_.tokenizer.Encode(item.prompt), EvalSampling(job_.recipe, job_.config), 1},
                    {item.id, item.prompt, item.answer});
  }
  LLAMARL_ASSERT(RunEpisodesUntilDone(*engine_, *runner_).empty(), "an eval request that is no episode");
  EvalTally mine;
  for (const FinishedEpisode& e : runner_->TakeFinished()) mine.sum += e.reward, ++mine.count;
  at::Tensor sums = at::tensor({mine.sum, double(mine.count)}, at::kDouble);
  if (tp_->Rank() != 0) sums.zero_();  // TP ranks of a replica evaluated the same items
  job_.world.AllReduce(sums)->Wait(job_.timeouts.step);
  EvalTally tally;
  tally.sum = sums[0].item<double>();
  tally.count = int64_t(sums[1].item<double>());
  return tally;
}

void ColocatedWorker::SyncWeights() {
  ScopedPhase phase(job_, "sync");
  const int64_t version = start_.trainer->PolicyVersion();
  for (int r = 0; r < job_.placement.NumReplicas(); ++r)
    sync_.PushReplica(r, version, &start_.trainer->FlatShard(), r == replica_ ? engine_.get() : nullptr);
}

void ColocatedWorker::EnterGeneration(OffloadTally* tally) {
  if (!job_.placement.offload) return;
  const auto t = Clock::now();
  {
    ScopedPhase phase(job_, "offload");
    tally->host_bytes += start_.trainer->OffloadState();
    engine_->ReserveCache();
  }
  tally->offload_s += SecondsSince(t);
}

void ColocatedWorker::EnterTraining(OffloadTally* tally) {
  if (!job_.placement.offload) return;
  const auto t = Clock::now();
  {
    ScopedPhase phase(job_, "offload");
    engine_->ReleaseCache();
    start_.trainer->RestoreState();
  }
  tally->offload_s += SecondsSince(t);
}

Json ColocatedWorker::OffloadMetrics(const OffloadTally& tally) {
  at::Tensor m = at::tensor({tally.offload_s, double(tally.host_bytes), double(tally.gen_trainer_state_bytes),
                             double(tally.gen_kv_cache_bytes), double(tally.train_trainer_state_bytes),
                             double(tally.train_kv_cache_bytes)},
                            at::kDouble);
  job_.world.AllReduce(m, {ReduceOp::kMax})->Wait(job_.timeouts.step);
  auto v = m.accessor<double, 1>();
  Json row{{"gen_trainer_state_bytes", int64_t(v[2])}, {"gen_kv_cache_bytes", int64_t(v[3])},
           {"train_trainer_state_bytes", int64_t(v[4])}, {"train_kv_cache_bytes", int64_t(v[5])}};
  if (job_.placement.offload) row.update({{"offload_s", v[0]}, {"offload_bytes", int64_t(v[1])}});
  return row;
}

void ColocatedWorker::RunStep(int64_t step, int64_t end_step) {
  ScopedStep in_step("RL", step);
  MaybeKillForTest(job_.recipe.debug, job_.world.Rank(), step);
  const auto step_start = Clock::now();
  StepTimings timings;
  OffloadTally tally;
  SamplingTally sampling;
  std::vector<RolloutGroup> generated = Generate(step, &timings, &sampling);
  tally.gen_trainer_state_bytes = start_.trainer->ResidentStateBytes();
  tally.gen_kv_cache_bytes = engine_->CacheBytes();
  EnterTraining(&tally);
  auto t = Clock::now();
  {
    ScopedPhase phase(job_, "wait");
    job_.world.Barrier()->Wait(job_.timeouts.step);  // idle time of the ranks whose groups were short
  }
  timings.wait_s = SecondsSince(t);
  for (auto& g : generated) buffer_.Add(std::move(g), start_.trainer->PolicyVersion());
  StalenessStats staleness;
  std::vector<RolloutGroup> groups = buffer_.Take(&staleness);
  const TrainStepMetrics metrics = TrainOnGroups(job_, *start_.trainer, groups, step, &timings);
  tally.train_trainer_state_bytes = start_.trainer->ResidentStateBytes();
  tally.train_kv_cache_bytes = engine_->CacheBytes();
  t = Clock::now();
  SyncWeights();  // reads the trainer state: before it goes back to host
  timings.sync_s = SecondsSince(t);
  gen_total_s_ += timings.gen_s;
  idle_total_s_ += timings.wait_s;
  Json row = StepMetricsRow(job_.world, groups, staleness, metrics, timings);
  if (job_.recipe.algorithm.dapo.dynamic_sampling) {
    row.update({{"filtered_groups", sampling.filtered}, {"generated_groups", sampling.generated},
                {"generation_rounds", sampling.rounds}});
    filtered_total_ += sampling.filtered;
  }
  row.update(PeakRssRow(job_.world, job_.world.Rank()));
  const bool last = step + 1 == end_step;
  const CheckpointRecipe& c = job_.recipe.checkpoint;
  if (last || (c.every > 0 && (step + 1) % c.every == 0)) {
    ScopedPhase phase(job_, "checkpoint");
    SaveRunCheckpoint(job_, *start_.trainer, step + 1, prompts_.CursorAt(step + 1));
  }
  EnterGeneration(&tally);
  const EvalRecipe& e = job_.recipe.eval;
  if (last || (e.every > 0 && (step + 1 - start_.rl_step) % e.every == 0)) {
    row.update(Evaluate().ToJson(job_.recipe.eval.samples));
    row["eval_policy_version"] = start_.trainer->PolicyVersion();
    last_eval_ = row["eval_reward_mean"];
  }
  offload_total_s_ += tally.offload_s;
  row.update(OffloadMetrics(tally));
  if (!job_.IsController()) return;
  row.update({{"step", job_.recipe.sft.steps + step}, {"rl_step", step}, {"phase", "rl"},
              {"policy_version", start_.trainer->PolicyVersion()}, {"time_s", job_.ElapsedS()},
              {"step_s", SecondsSince(step_start)}, {"idle_s_generator", timings.wait_s}});
  row["tokens_per_s"] = double(row.value("tokens", int64_t(0))) / std::max(1e-9, SecondsSince(step_start));
  if (step == start_.rl_step) {
    row["eval_start_reward_mean"] = first_eval_;
    // The start of RL on the reward curve (as split placement shows it), unless this step evaluated.
    if (!row.contains("eval_reward_mean")) {
      row.update(first_eval_row_);
      row["eval_policy_version"] = first_eval_version_;
    }
  }
  if (job_.metrics) {
    ScopedPhase writing(job_, "metrics", /*trace=*/false);
    job_.metrics->Write(row);
  }
  ReportProgress(row, step + 1, end_step);
}

Json ColocatedWorker::Run() {
  start_ = StartTraining(job_, job_.world, weights_);
  const int64_t end_step = job_.recipe.steps;
  LLAMARL_CHECK(start_.rl_step < end_step, "the run in ", job_.resume_dir, " already finished its ", end_step,
                " steps; raise steps (--set steps=N) to continue it");
  prompts_.Restore(start_.resumed ? start_.cursor : prompts_.CursorAt(0), start_.rl_step);
  EngineOptions options = GeneratorEngineOptions(job_.recipe, job_.config, job_.tokenizer, job_.data);
  options.tp_group = tp_.get();
  engine_ = std::make_unique<Engine>(job_.config, weights_, GeneratorWeightOptions(job_.recipe, job_.device), options, 0);
  if (job_.recipe.env.enabled()) {
    runner_ = std::make_unique<EpisodeRunner>(
        job_.recipe.env, env::MakeEnvironmentFactory(job_.recipe.env.name, job_.recipe.env.config, "env.config"),
        job_.tokenizer, job_.eos_ids(), job_.tracer);
  }
  load_s_ = job_.ElapsedS();
  weights_.Release();  // the engine sliced its weights and the trainer read its master: nothing reads them again
  SyncWeights();
  if (job_.placement.offload) {
    OffloadTally unused;
    EnterGeneration(&unused);
  }
  first_eval_row_ = Evaluate().ToJson(job_.recipe.eval.samples);
  first_eval_ = first_eval_row_["eval_reward_mean"];
  first_eval_version_ = start_.trainer->PolicyVersion();
  for (int64_t step = start_.rl_step; step < end_step; ++step) RunStep(step, end_step);
  const LengthHistogram lengths = SumOverRanks(job_.world, lengths_, job_.timeouts.step);
  const LengthHistogram staleness = SumOverRanks(job_.world, buffer_.StalenessHistogram(), job_.timeouts.step);
  const KvCacheStats kv = engine_->KvStats();  // this rank's (every rank's engine is sized alike)
  Json summary{{"eval_start", {{"eval_reward_mean", first_eval_}}}, {"eval_end", {{"eval_reward_mean", last_eval_}}},
               {"response_lengths", lengths.ToJson()}, {"staleness_tokens", staleness.ToJson()},
               {"kv_cache_budget_bytes", kv.budget_bytes}, {"kv_block_size", kv.block_size}, {"kv_blocks", kv.num_blocks},
               {"kv_peak_blocks_in_use", kv.peak_blocks_in_use},
               {"generate_s_total", gen_total_s_}, {"idle_s_total", idle_total_s_},
               {"offload_s_total", offload_total_s_}, {"dropped_stale_total", 0}, {"load_s", load_s_}};
  if (job_.recipe.algorithm.dapo.dynamic_sampling) summary["filtered_groups_total"] = filtered_total_;
  if (runner_) summary["episodes"] = runner_->TakeStats().ToJson();  // this rank's
  return summary;
}

}  // namespace llamarl::controller
