#include "controller/trainer_side.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "controller/batch_planner.h"
#include "controller/episodes.h"
#include "core/check.h"
#include "core/logging.h"
#include "core/process_memory.h"
#include "model/shard_layout.h"
#include "report/metrics.h"
#include "report/trace.h"

namespace llamarl::controller {
namespace fs = std::filesystem;
namespace {

// This rank's slice of a global batch of items (near-equal, in order).
std::vector<DatasetItem> LocalSlice(const std::vector<DatasetItem>& items, const Communicator& dp) {
  auto bounds = EvenSplit(int64_t(items.size()), dp.Size());
  return std::vector<DatasetItem>(items.begin() + bounds[size_t(dp.Rank())],
                                  items.begin() + bounds[size_t(dp.Rank()) + 1]);
}

// SFT warm start on the reference responses; returns the warm-started weights (whole, on every rank:
// the warm start is for small models).
LlamaWeightSource WarmStart(JobContext& job, Communicator& dp, const LlamaWeightSource& weights) {
  const SftRecipe& sft = job.recipe.sft;
  TrainerConfig cfg = job.recipe.sft.trainer;
  cfg.sampled_vocab_size = SampledVocabSize(job.config, job.tokenizer);
  cfg.device = job.device;
  Trainer trainer(dp, job.config, weights, cfg);
  EpochSampler sampler(job.data.train, SamplerOptions{job.recipe.data.seed + 1, true, 0});
  std::unique_ptr<ReferenceEpisodes> episodes;  // with an environment: its reference episodes
  if (job.recipe.env.enabled()) episodes = std::make_unique<ReferenceEpisodes>(job.recipe.env, job.tokenizer, job.eos_ids());
  for (int64_t i = 0; i < sft.steps; ++i) {
    ScopedStep in_step("SFT", i);
    std::vector<DatasetItem> items = sampler.Next(size_t(sft.batch_size));
    auto start = std::chrono::steady_clock::now();
    TrainStepMetrics m;
    {
      ScopedPhase phase(job, "sft");
      m = trainer.SftStep(SftBatch(LocalSlice(items, dp), job.tokenizer, job.eos_ids(), episodes.get()));
    }
    const double train_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (job.metrics) {
      ScopedPhase writing(job, "metrics", /*trace=*/false);
      Json row = m.ToJson();
      row.update({{"step", i}, {"phase", "sft"}, {"policy_version", trainer.PolicyVersion()},
                  {"time_s", job.ElapsedS()}, {"train_s", train_s}});
      job.metrics->Write(row);
    }
    if (dp.Rank() == 0 && (i + 1) % 10 == 0) LogInfo("sft step ", i + 1, "/", sft.steps, " loss ", m.loss);
  }
  LlamaForCausalLM tuned(job.config);
  trainer.GatherInto(*tuned);
  return LlamaWeightSource::FromModel(*tuned);
}

}  // namespace

namespace {
thread_local const char* current_phase = "startup";
thread_local const char* failed_phase = nullptr;  // the innermost phase an exception left
thread_local const char* current_step_kind = nullptr;
thread_local int64_t current_step = -1;
thread_local std::string failed_step;  // the step an exception left, as CurrentStepText says it
}  // namespace

ScopedPhase::ScopedPhase(JobContext& job, const char* phase, bool trace)
    : previous_(current_phase), uncaught_(std::uncaught_exceptions()) {
  current_phase = phase;
  if (job.tracer && trace) span_ = std::make_unique<Tracer::Span>(job.tracer->Scope(phase));
}

ScopedPhase::~ScopedPhase() {
  if (std::uncaught_exceptions() > uncaught_ && !failed_phase) failed_phase = current_phase;
  current_phase = previous_;
}

ScopedStep::ScopedStep(const char* kind, int64_t step)
    : previous_kind_(current_step_kind), previous_phase_(current_phase), previous_step_(current_step),
      uncaught_(std::uncaught_exceptions()) {
  current_step_kind = kind;
  current_step = step;
  current_phase = std::string(kind) == "SFT" ? "sft" : "rl";
}

ScopedStep::~ScopedStep() {
  if (std::uncaught_exceptions() > uncaught_) {
    if (!failed_phase) failed_phase = current_phase;
    if (failed_step.empty()) failed_step = CurrentStepText();
  }
  current_step_kind = previous_kind_;
  current_step = previous_step_;
  current_phase = previous_phase_;
}

const char* CurrentPhase() { return failed_phase ? failed_phase : current_phase; }

std::string CurrentStepText() {
  if (!failed_step.empty()) return failed_step;
  if (!current_step_kind) return "";
  return std::string(" at ") + current_step_kind + " step " + std::to_string(current_step);
}

void ResetPhase() {
  current_phase = "startup";
  failed_phase = nullptr;
  current_step_kind = nullptr;
  current_step = -1;
  failed_step.clear();
}

TrainingStart StartTraining(JobContext& job, Communicator& dp, LlamaWeightSource& weights) {
  TrainingStart start;
  const std::string& latest = job.resume_checkpoint;
  if (latest.empty() && job.recipe.sft.steps > 0) weights = WarmStart(job, dp, weights);
  const int64_t sft_version = latest.empty() ? job.recipe.sft.steps : 0;
  TrainerConfig cfg = job.recipe.trainer;
  cfg.sampled_vocab_size = SampledVocabSize(job.config, job.tokenizer);
  cfg.device = job.device;
  start.trainer = std::make_unique<Trainer>(dp, job.config, weights, cfg, sft_version);
  if (!latest.empty()) {
    Json extra = start.trainer->LoadCheckpoint(latest);
    start.rl_step = extra.at("rl_step").get<int64_t>();
    start.cursor = Cursor::FromJson(extra.at("cursor"), latest + " extra.cursor");
    start.resumed = true;
    start.extra = extra;
    if (dp.Rank() == 0) LogInfo("resumed from ", latest, " at RL step ", start.rl_step);
  }
  return start;
}

std::string SaveRunCheckpoint(JobContext& job, Trainer& trainer, int64_t next_rl_step, const Cursor& cursor,
                              const std::vector<RolloutGroup>* parked, int64_t next_index) {
  const std::string dir = job.recipe.run_dir + "/checkpoints/step_" + std::to_string(next_rl_step);
  Json extra{{"rl_step", next_rl_step}, {"cursor", cursor.ToJson()}};
  std::vector<uint8_t> bytes;
  if (parked) {
    auto put = [&](uint64_t v) {
      for (int i = 0; i < 8; ++i) bytes.push_back(uint8_t(v >> (8 * i)));
    };
    put(parked->size());
    for (const RolloutGroup& g : *parked) {
      const std::vector<uint8_t> one = EncodeRolloutGroup(g);
      put(one.size());
      bytes.insert(bytes.end(), one.begin(), one.end());
    }
    extra["parked"] = {{"groups", int64_t(parked->size())}, {"next_index", next_index}};
    // CheckpointProblem holds the checkpoint incomplete until this file is there at this size.
    extra["files"] = {{kParkedGroupsFile, bytes.size()}};
  }
  trainer.SaveCheckpoint(dir, extra);
  if (!job.IsController()) return dir;
  if (parked) {
    const std::string path = dir + "/" + kParkedGroupsFile;
    {
      std::ofstream out(path + ".tmp", std::ios::binary);
      out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
      out.close();
      LLAMARL_CHECK(out, "writing ", path, ".tmp (", bytes.size(), " bytes) failed");
    }
    fs::rename(path + ".tmp", path);
  }
  const auto all = CheckpointsNewestFirst(job.recipe.run_dir);
  for (size_t i = size_t(job.recipe.checkpoint.keep); i < all.size(); ++i) fs::remove_all(all[i].second);
  return dir;
}

std::vector<RolloutGroup> ReadParkedGroups(const std::string& checkpoint_dir) {
  const std::string path = checkpoint_dir + "/" + kParkedGroupsFile;
  std::ifstream in(path, std::ios::binary);
  LLAMARL_CHECK(in, "cannot open ", path, " (the finished groups of a deterministic run's checkpoint)");
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t at = 0;
  auto get = [&]() {
    LLAMARL_CHECK(at + 8 <= bytes.size(), path, ": truncated at byte ", at, " of ", bytes.size());
    uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= uint64_t(bytes[at + size_t(i)]) << (8 * i);
    at += 8;
    return v;
  };
  const uint64_t n = get();
  std::vector<RolloutGroup> groups;
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t size = get();
    LLAMARL_CHECK(size <= bytes.size() - at, path, ": group ", i, " claims ", size, " bytes, ", bytes.size() - at,
                  " left");
    groups.push_back(DecodeRolloutGroup(bytes.data() + at, size_t(size)));
    at += size_t(size);
  }
  LLAMARL_CHECK(at == bytes.size(), path, ": ", bytes.size() - at, " bytes after the last of its ", n, " groups");
  return groups;
}

Json StepMetricsRow(Communicator& dp, const std::vector<RolloutGroup>& groups, const StalenessStats& staleness,
                    const TrainStepMetrics& train, const StepTimings& timings) {
  double reward_sum = 0, reward_sq = 0, samples = 0, len_sum = 0, gen_sum = 0, zero_std = 0;
  double episodes = 0, turns = 0, tool_s = 0, tool_step_max_s = 0;  // multi-turn episodes
  for (const auto& g : groups) {
    gen_sum += g.gen_s;
    std::vector<double> rewards;
    for (const auto& s : g.samples) {
      if (s.turns > 0) {
        episodes += 1, turns += double(s.turns), tool_s += s.tool_s;
        tool_step_max_s = std::max(tool_step_max_s, s.tool_step_max_s);
      }
      reward_sum += s.reward;
      reward_sq += s.reward * s.reward;
      len_sum += double(s.response.size());
      samples += 1;
      rewards.push_back(s.reward);
    }
    zero_std += !GroupHasSignal(rewards);
  }
  at::Tensor sums = at::tensor({reward_sum, reward_sq, samples, len_sum, staleness.staleness_mean * double(staleness.tokens),
                                double(staleness.tokens), double(staleness.stale_groups), double(groups.size()), gen_sum,
                                timings.wait_s, timings.score_s, zero_std, episodes, turns, tool_s},
                               at::kDouble);
  at::Tensor maxes = at::tensor({double(staleness.staleness_max), timings.train_s, timings.sync_s, timings.gen_s,
                                 tool_step_max_s},
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
              {"stale_groups", int64_t(s[6])}, {"zero_std_groups", int64_t(s[11])}, {"train_s", m[1]}, {"sync_s", m[2]},
              {"score_s", s[10] / dp.Size()}, {"idle_s_trainer", s[9] / dp.Size()}});
  // Split placement: the groups' mean latency; colocated: the generate phase's wall time.
  row["gen_s"] = m[3] > 0 ? m[3] : (s[7] > 0 ? s[8] / s[7] : 0.0);
  if (s[12] > 0) {  // multi-turn episodes: every model turn is one environment step
    row.update({{"turns_mean", s[13] / s[12]}, {"tool_s_mean", s[13] > 0 ? s[14] / s[13] : 0.0},
                {"tool_s_max", m[4]}});
  }
  return row;
}

Json PeakRssRow(Communicator& dp, int world_rank) {
  at::Tensor mine = at::tensor({int64_t(world_rank), TakeWindowPeakRssBytes()}, at::kLong);
  std::vector<at::Tensor> all;
  for (int r = 0; r < dp.Size(); ++r) all.push_back(at::empty({2}, at::kLong));
  dp.AllGather(all, mine)->Wait();
  Json row;
  int64_t peak = 0;
  for (const at::Tensor& t : all) {
    row["peak_rss_bytes_rank" + std::to_string(t[0].item<int64_t>())] = t[1].item<int64_t>();
    peak = std::max(peak, t[1].item<int64_t>());
  }
  row["peak_rss_bytes"] = peak;
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

Json EvalTally::ToJson(int64_t samples) const {
  Json j{{"eval_reward_mean", Mean()}};
  if (samples > 0 && count > 0) {
    j.update({{"eval_pass_at_k", pass_at_k_sum / double(count)}, {"eval_mean_at_k", mean_at_k_sum / double(count)},
              {"eval_samples", samples}});
  }
  return j;
}

TrainStepMetrics TrainOnGroups(JobContext& job, Trainer& trainer, const std::vector<RolloutGroup>& groups,
                               int64_t step, StepTimings* timings) {
  const auto start = std::chrono::steady_clock::now();
  TrainStepMetrics metrics;
  {
    ScopedPhase phase(job, "train");
    TrainBatch batch = ToTrainBatch(groups, job.recipe.algorithm.dapo.overlong == "filter");
    if (step == job.recipe.debug.nan_at_step) {
      LogWarning("debug.nan_at_step: the rewards of RL step ", step, " are NaN");
      for (TrainSample& s : batch.samples) s.reward = std::nan("");
    }
    metrics = trainer.Step(batch);
  }
  timings->train_s += SecondsSince(start);
  return metrics;
}

}  // namespace llamarl::controller
