#include "controller/trainer_side.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>

#include "controller/metrics.h"
#include "controller/trace.h"
#include "core/logging.h"
#include "weight_sync/shard_layout.h"

namespace llamarl::controller {
namespace fs = std::filesystem;
namespace {

// This rank's slice of a global batch of items (near-equal, in order).
std::vector<DatasetItem> LocalSlice(const std::vector<DatasetItem>& items, const Communicator& dp) {
  auto bounds = EvenSplit(int64_t(items.size()), dp.Size());
  return std::vector<DatasetItem>(items.begin() + bounds[size_t(dp.Rank())],
                                  items.begin() + bounds[size_t(dp.Rank()) + 1]);
}

// SFT warm start on the reference responses; returns the number of steps taken.
void WarmStart(JobContext& job, Communicator& dp, LlamaForCausalLMImpl& model) {
  const SftRecipe& sft = job.recipe.sft;
  Trainer trainer(dp, job.config, model, SftTrainerConfig(job.recipe));
  EpochSampler sampler(job.data.train, SamplerOptions{job.recipe.data.seed + 1, true, 0});
  for (int64_t i = 0; i < sft.steps; ++i) {
    std::vector<DatasetItem> items = sampler.Next(size_t(sft.batch_size));
    auto start = std::chrono::steady_clock::now();
    TrainStepMetrics m;
    {
      ScopedPhase phase(job, "sft");
      m = trainer.SftStep(SftBatch(LocalSlice(items, dp), job.tokenizer, job.eos_ids()));
    }
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (job.metrics) {
      Json row = m.ToJson();
      row.update({{"step", i}, {"phase", "sft"}, {"policy_version", trainer.PolicyVersion()},
                  {"time_s", job.ElapsedS()}, {"train_s", train_s}});
      job.metrics->Write(row);
    }
    if (dp.Rank() == 0 && (i + 1) % 10 == 0) LogInfo("sft step ", i + 1, "/", sft.steps, " loss ", m.loss);
  }
  trainer.GatherInto(model);
}

}  // namespace

namespace {
thread_local const char* current_phase = "startup";
thread_local const char* failed_phase = nullptr;  // the innermost phase an exception left
}  // namespace

ScopedPhase::ScopedPhase(JobContext& job, const char* phase)
    : previous_(current_phase), uncaught_(std::uncaught_exceptions()) {
  current_phase = phase;
  if (job.tracer) span_ = std::make_unique<Tracer::Span>(job.tracer->Scope(phase));
}

ScopedPhase::~ScopedPhase() {
  if (std::uncaught_exceptions() > uncaught_ && !failed_phase) failed_phase = current_phase;
  current_phase = previous_;
}

const char* CurrentPhase() { return failed_phase ? failed_phase : current_phase; }

void ResetPhase() {
  current_phase = "startup";
  failed_phase = nullptr;
}

TrainingStart StartTraining(JobContext& job, Communicator& dp, LlamaForCausalLMImpl& model) {
  TrainingStart start;
  const std::string latest = job.resume_dir.empty() ? "" : LatestCheckpoint(job.resume_dir);
  TORCH_CHECK(job.resume_dir.empty() || !latest.empty(), "--resume ", job.resume_dir,
              ": no checkpoint under ", job.resume_dir, "/checkpoints; the run saved none (set checkpoint.every)");
  if (latest.empty() && job.recipe.sft.steps > 0) WarmStart(job, dp, model);
  const int64_t sft_version = latest.empty() ? job.recipe.sft.steps : 0;
  start.trainer = std::make_unique<Trainer>(dp, job.config, model, RlTrainerConfig(job.recipe), sft_version);
  if (!latest.empty()) {
    Json extra = start.trainer->LoadCheckpoint(latest);
    start.rl_step = extra.at("rl_step").get<int64_t>();
    start.cursor = Cursor::FromJson(extra.at("cursor"), latest + " extra.cursor");
    start.resumed = true;
    if (dp.Rank() == 0) LogInfo("resumed from ", latest, " at RL step ", start.rl_step);
  }
  return start;
}

void SaveRunCheckpoint(JobContext& job, Trainer& trainer, int64_t next_rl_step, const Cursor& cursor) {
  const std::string dir = job.recipe.run_dir + "/checkpoints/step_" + std::to_string(next_rl_step);
  trainer.SaveCheckpoint(dir, Json{{"rl_step", next_rl_step}, {"cursor", cursor.ToJson()}});
  if (!job.IsController()) return;
  std::vector<std::pair<int64_t, fs::path>> all;
  for (const auto& e : fs::directory_iterator(job.recipe.run_dir + "/checkpoints")) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("step_", 0) == 0 && name.find('.') == std::string::npos)
      all.emplace_back(std::stoll(name.substr(5)), e.path());
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + size_t(job.recipe.checkpoint.keep) < all.size(); ++i) fs::remove_all(all[i].second);
}

std::string LatestCheckpoint(const std::string& run_dir) {
  const fs::path root = fs::path(run_dir) / "checkpoints";
  if (!fs::is_directory(root)) return "";
  int64_t best = -1;
  std::string best_dir;
  for (const auto& e : fs::directory_iterator(root)) {
    const std::string name = e.path().filename().string();
    // Atomic saves write a temporary sibling first; only a plain step_<n> directory is complete.
    if (!e.is_directory() || name.rfind("step_", 0) != 0) continue;
    const std::string digits = name.substr(5);
    if (digits.empty() || !std::all_of(digits.begin(), digits.end(), ::isdigit)) continue;
    if (std::stoll(digits) > best) best = std::stoll(digits), best_dir = e.path().string();
  }
  return best_dir;
}

Json StepMetricsRow(Communicator& dp, const std::vector<RolloutGroup>& groups, const StalenessStats& staleness,
                    const TrainStepMetrics& train, const StepTimings& timings) {
  double reward_sum = 0, reward_sq = 0, samples = 0, len_sum = 0, gen_sum = 0;
  for (const auto& g : groups) {
    gen_sum += g.gen_s;
    for (const auto& s : g.samples) {
      reward_sum += s.reward;
      reward_sq += s.reward * s.reward;
      len_sum += double(s.response.size());
      samples += 1;
    }
  }
  at::Tensor sums = at::tensor({reward_sum, reward_sq, samples, len_sum, staleness.staleness_mean * double(staleness.tokens),
                                double(staleness.tokens), double(staleness.stale_groups), double(groups.size()), gen_sum,
                                timings.wait_s, timings.score_s},
                               at::kDouble);
  at::Tensor maxes = at::tensor({double(staleness.staleness_max), timings.train_s, timings.sync_s, timings.gen_s},
                                at::kDouble);
  dp.AllReduce(sums)->Wait();
  dp.AllReduce(maxes, {ReduceOp::kMax})->Wait();
  auto s = sums.accessor<double, 1>();
  auto m = maxes.accessor<double, 1>();
  const double n = std::max(1.0, s[2]);
  const double mean = s[0] / n;
  Json row = train.ToJson();
  row.update({{"reward_mean", mean}, {"reward_std", std::sqrt(std::max(0.0, s[1] / n - mean * mean))},
              {"samples", int64_t(s[2])}, {"response_len_mean", s[3] / n},
              {"staleness_mean", s[5] > 0 ? s[4] / s[5] : 0.0}, {"staleness_max", int64_t(m[0])},
              {"stale_groups", int64_t(s[6])}, {"train_s", m[1]}, {"sync_s", m[2]},
              {"score_s", s[10] / dp.Size()}, {"idle_s_trainer", s[9] / dp.Size()}});
  // Split placement: the groups' mean latency; colocated: the generate phase's wall time.
  row["gen_s"] = m[3] > 0 ? m[3] : (s[7] > 0 ? s[8] / s[7] : 0.0);
  return row;
}

LengthHistogram SumOverRanks(Communicator& comm, const LengthHistogram& local, std::chrono::milliseconds timeout) {
  std::vector<int64_t> counts = local.ToJson().get<std::vector<int64_t>>();
  at::Tensor size = at::full({1}, int64_t(counts.size()), at::kLong);
  comm.AllReduce(size, {ReduceOp::kMax})->Wait(timeout);
  counts.resize(size_t(size.item<int64_t>()), 0);
  if (counts.empty()) return LengthHistogram();
  at::Tensor sum = at::tensor(counts, at::kLong);
  comm.AllReduce(sum)->Wait(timeout);
  const int64_t* c = sum.data_ptr<int64_t>();
  return LengthHistogram::FromJson(Json(std::vector<int64_t>(c, c + sum.numel())), "histogram summed over ranks");
}

void RescoreLogprobs(JobContext& job, Trainer& trainer, const std::vector<RolloutGroup*>& groups) {
  ScopedPhase phase(job, "recompute");
  std::vector<RolloutGroup> copies;
  for (const RolloutGroup* g : groups) copies.push_back(*g);
  const std::vector<std::vector<float>> logprobs = trainer.ScoreLogprobs(ToTrainBatch(copies));
  size_t i = 0;
  for (RolloutGroup* g : groups) {
    for (RolloutSample& s : g->samples) s.logprobs = logprobs[i++];
  }
}

TrainStepMetrics TrainOnGroups(JobContext& job, Trainer& trainer, const std::vector<RolloutGroup>& groups,
                               StepTimings* timings) {
  const auto start = std::chrono::steady_clock::now();
  TrainStepMetrics metrics;
  {
    ScopedPhase phase(job, "train");
    metrics = trainer.Step(ToTrainBatch(groups));
  }
  timings->train_s += SecondsSince(start);
  return metrics;
}

}  // namespace llamarl::controller
