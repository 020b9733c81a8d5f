#include "controller/colocated_worker.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <map>

#include "controller/metrics.h"
#include "controller/progress.h"
#include "controller/trace.h"
#include "core/logging.h"
#include "reward/registry.h"
#include "trainer/flat_params.h"

namespace llamarl::controller {
namespace {
using Clock = std::chrono::steady_clock;
}  // namespace

ColocatedWorker::ColocatedWorker(JobContext& job, LlamaForCausalLMImpl& model, ReplicaWeightSync& sync,
                                 std::unique_ptr<Communicator> tp_group)
    : job_(job), sync_(sync), model_(model), tp_(std::move(tp_group)), prompts_(job.data.train, job.recipe),
      buffer_(job.recipe.max_policy_lag) {
  replica_ = job.placement.ReplicaOf(job.world.Rank());
  reward_ = reward::MakeRewardFromSpec(job.recipe.reward);
}

ColocatedWorker::~ColocatedWorker() = default;

std::vector<RolloutGroup> ColocatedWorker::Generate(int64_t step, StepTimings* timings) {
  const auto t = Clock::now();
  const std::vector<DatasetItem>& items = prompts_.ForStep(step);
  const int64_t offset = job_.routing.Offset(replica_), share = job_.routing.Share(replica_);
  std::map<uint64_t, std::vector<Completion>> by_group;
  {
    ScopedPhase phase(job_, "generate");
    for (int64_t k = offset; k < offset + share; ++k) {
      const uint64_t id = uint64_t(step * job_.routing.groups_per_step + k);
      engine_->Submit(GenerationRequest{id, job_.tokenizer.Encode(items[size_t(k)].prompt),
                                        RolloutSampling(job_.recipe, job_.config, GroupSeed(job_.recipe.seed, int64_t(id))),
                                        job_.recipe.rollout.group_size});
    }
    for (Completion& c : engine_->RunUntilDone()) by_group[c.request_id].push_back(std::move(c));
  }
  timings->gen_s = SecondsSince(t);
  const auto ts = Clock::now();
  ScopedPhase scoring(job_, "score", /*trace=*/false);
  std::vector<RolloutGroup> groups;
  int64_t i = 0;
  for (auto& [id, completions] : by_group) {
    // TP ranks of a replica hold the same groups; each trains on a disjoint subset of them.
    if (i++ % tp_->Size() != tp_->Rank()) continue;
    const int64_t k = int64_t(id) - step * job_.routing.groups_per_step;
    for (const Completion& c : completions) lengths_.Add(int64_t(c.tokens.size()));
    RolloutGroup g = ScoreGroup(completions, items[size_t(k)], *reward_, job_.tokenizer, job_.eos_ids());
    g.group_id = int64_t(id);
    g.step = step;
    g.generator_rank = job_.world.Rank();
    g.gen_s = timings->gen_s;
    groups.push_back(std::move(g));
  }
  timings->score_s = SecondsSince(ts);
  return groups;
}

EvalTally ColocatedWorker::Evaluate() {
  ScopedPhase phase(job_, "eval");
  const int64_t n = std::min<int64_t>(job_.recipe.eval.num_prompts, int64_t(job_.data.eval.size()));
  auto bounds = EvenSplit(n, job_.placement.NumReplicas());
  std::vector<DatasetItem> items(job_.data.eval.begin() + bounds[size_t(replica_)],
                                 job_.data.eval.begin() + bounds[size_t(replica_) + 1]);
  const int64_t k = job_.recipe.eval.samples;
  const uint64_t n_items = items.size();  // request ids: i greedy, n_items + i the k samples of item i
  for (size_t i = 0; i < items.size(); ++i) {
    const std::vector<int64_t> prompt = job_.tokenizer.Encode(items[i].prompt);
    engine_->Submit(GenerationRequest{i, prompt, EvalSampling(job_.recipe, job_.config), 1});
    if (k > 0) {
      engine_->Submit(GenerationRequest{n_items + i, prompt,
                                        EvalSampleSampling(job_.recipe, job_.config, bounds[size_t(replica_)] + int64_t(i)), k});
    }
  }
  std::vector<Completion> done, all = engine_->RunUntilDone();
  std::vector<std::vector<Completion>> sampled(items.size());
  for (Completion& c : all) {
    if (c.request_id < n_items) done.push_back(std::move(c));
    else sampled[size_t(c.request_id - n_items)].push_back(std::move(c));
  }
  std::sort(done.begin(), done.end(), [](const Completion& a, const Completion& b) { return a.request_id < b.request_id; });
  const bool leader = tp_->Rank() == 0;
  const double mean = items.empty() ? 0.0 : ScoreEval(done, items, *reward_, job_.tokenizer, job_.eos_ids());
  const EvalSampleSums s = ScoreEvalSamples(sampled, items, *reward_, job_.tokenizer, job_.eos_ids(),
                                            job_.recipe.eval.pass_threshold);
  at::Tensor sums = at::tensor({mean * double(items.size()), double(items.size()), s.pass_at_k, s.mean_at_k}, at::kDouble);
  if (!leader) sums.zero_();  // TP ranks of a replica evaluated the same items
  job_.world.AllReduce(sums)->Wait(job_.timeouts.step);
  auto v = sums.accessor<double, 1>();
  EvalTally tally;
  tally.sum = v[0], tally.count = int64_t(v[1]), tally.pass_at_k_sum = v[2], tally.mean_at_k_sum = v[3];
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
  std::vector<RolloutGroup> generated = Generate(step, &timings);
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
  start_ = StartTraining(job_, job_.world, model_);
  const int64_t end_step = job_.recipe.steps;
  TORCH_CHECK(start_.rl_step < end_step, "the run in ", job_.resume_dir, " already finished its ", end_step,
              " steps; raise steps (--set steps=N) to continue it");
  prompts_.Restore(start_.resumed ? start_.cursor : prompts_.CursorAt(0), start_.rl_step);
  EngineOptions options = GeneratorEngineOptions(job_.recipe, job_.config, job_.tokenizer, job_.data);
  options.tp_group = tp_.get();
  engine_ = std::make_unique<Engine>(job_.config, model_, options, 0);
  SyncWeights();
  if (job_.placement.offload) {
    // The engine sliced its weights and the trainer flattened its master; nothing reads `model_` again.
    ReleaseParameters(model_);
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
  return Json{{"eval_start", {{"eval_reward_mean", first_eval_}}}, {"eval_end", {{"eval_reward_mean", last_eval_}}},
              {"response_lengths", lengths.ToJson()}, {"staleness_tokens", staleness.ToJson()},
              {"kv_cache_budget_bytes", kv.budget_bytes}, {"kv_block_size", kv.block_size}, {"kv_blocks", kv.num_blocks},
              {"kv_peak_blocks_in_use", kv.peak_blocks_in_use},
              {"generate_s_total", gen_total_s_}, {"idle_s_total", idle_total_s_},
              {"offload_s_total", offload_total_s_}, {"dropped_stale_total", 0}};
}

}  // namespace llamarl::controller
