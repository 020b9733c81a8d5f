#include "bench/async_bench.h"

#include "controller/hf_export.h"
#include "controller/length_histogram.h"
#include "controller/loop.h"
#include "core/check.h"
#include "core/config.h"
#include "report/metrics.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <thread>

namespace llamarl::bench {
namespace {

using nlohmann::json;

double SumOf(const std::vector<json>& rows, const char* key) {
  double s = 0;
  for (const auto& r : rows) s += r.value(key, 0.0);
  return s;
}

// Where each role's time went. Colocated ranks play both roles: their idle time is the barrier wait
// for the slowest rank's generation. Split generators report idle time since the start of RL.
void AddIdleFractions(const json& summary, const std::vector<json>& timed, double step_total, json* out) {
  (*out)["idle_fraction_trainer"] = SumOf(timed, "idle_s_trainer") / step_total;
  if (!summary.contains("generators")) {
    (*out)["idle_fraction_generator"] = SumOf(timed, "idle_s_generator") / step_total;
    return;
  }
  double idle = 0, total = 0;
  for (const auto& g : summary["generators"]) idle += g.value("idle_s", 0.0), total += g.value("total_s", 0.0);
  (*out)["idle_fraction_generator"] = total > 0 ? idle / total : 0.0;
}

// Statistics of a histogram in the summary ("response_lengths": the trained samples by length), or
// null when the mode does not report it.
json HistogramStats(const json& summary, const char* key, const std::string& run_dir) {
  if (!summary.contains(key)) return nullptr;
  return controller::LengthHistogram::FromJson(summary[key], run_dir + "/summary.json " + key).Stats();
}

// The generators' histograms of every sample they generated (split only), merged.
json GeneratedLengthStats(const json& summary, const std::string& run_dir) {
  controller::LengthHistogram all;
  const json generators = summary.value("generators", json::array());
  for (size_t i = 0; i < generators.size(); ++i) {
    if (!generators[i].contains("response_lengths")) continue;
    const std::string what = run_dir + "/summary.json generators[" + std::to_string(i) + "].response_lengths";
    all.Merge(controller::LengthHistogram::FromJson(generators[i]["response_lengths"], what));
  }
  return all.Count() > 0 ? all.Stats() : json(nullptr);
}

// Reward against wall-clock seconds since the start of RL: [seconds, training reward mean] per step,
// and [seconds, held-out reward] at each evaluation.
json RewardCurves(const std::vector<json>& rl) {
  const double rl_start = rl.front().value("time_s", 0.0) - rl.front().value("step_s", 0.0);
  json train = json::array(), eval = json::array();
  for (const json& row : rl) {
    const double t = row.value("time_s", 0.0) - rl_start;
    train.push_back({t, row.value("reward_mean", 0.0)});
    if (row.contains("eval_reward_mean") && row["eval_reward_mean"].is_number())
      eval.push_back({t, row["eval_reward_mean"].get<double>()});
  }
  return {{"train", train}, {"eval", eval}};
}

}  // namespace

// The timings are the steady state: the first RL step pays for start-up (the generators' first
// prefill, allocator warm-up) and the last one for the final evaluation and checkpoint, in both
// modes alike, so both are left out when there are 3 steps or more.
json SummariseBenchRun(const std::string& run_dir) {
  std::vector<json> rl;
  for (const json& row : ReadMetrics(run_dir + "/metrics.jsonl"))
    if (row.value("phase", std::string()) == "rl") rl.push_back(row);
  LLAMARL_CHECK(!rl.empty(), "bench async: no RL step in ", run_dir, "/metrics.jsonl");
  const json summary = ReadJsonFile(run_dir + "/summary.json");
  const ptrdiff_t skip = rl.size() >= 3 ? 1 : 0;
  std::vector<json> timed(rl.begin() + skip, rl.end() - skip);
  const double step_total = SumOf(timed, "step_s");
  const double n = double(timed.size());
  std::vector<json> tail(rl.end() - std::min<ptrdiff_t>(5, ptrdiff_t(rl.size())), rl.end());
  json out = {{"step_s", step_total / n},
              {"timed_steps", int64_t(timed.size())},
              {"trained_samples", int64_t(SumOf(rl, "samples"))},
              {"trained_tokens", int64_t(SumOf(rl, "tokens"))},
              {"samples_per_s", SumOf(timed, "samples") / step_total},
              {"tokens_per_s", SumOf(timed, "tokens") / step_total},
              {"reward_start", summary["eval_start"].value("eval_reward_mean", 0.0)},
              {"reward_end", summary["eval_end"].value("eval_reward_mean", 0.0)},
              {"train_reward_last5", SumOf(tail, "reward_mean") / double(tail.size())},
              {"response_len_mean", SumOf(timed, "response_len_mean") / n},
              {"response_lengths", HistogramStats(summary, "response_lengths", run_dir)},
              {"generated_lengths", GeneratedLengthStats(summary, run_dir)},
              {"staleness_tokens", summary.value("staleness_tokens", json(nullptr))},
              {"gen_s", SumOf(timed, "gen_s") / n},
              {"train_s", SumOf(timed, "train_s") / n},
              {"sync_s", SumOf(timed, "sync_s") / n},
              {"staleness_mean", SumOf(timed, "staleness_mean") / n},
              {"dropped_stale", int64_t(SumOf(rl, "dropped_stale"))},
              {"stale_trained", int64_t(SumOf(rl, "stale_trained"))},
              {"stale_recomputed", int64_t(SumOf(rl, "stale_recomputed"))},
              {"reward_curve", RewardCurves(rl)}};
  AddIdleFractions(summary, timed, step_total, &out);
  return out;
}

namespace {

// The overrides of one run of the bench: the user's, then a placement and mode (colocated sync or
// split async) and RUN_DIR/`name`.
std::vector<std::string> RunOverrides(const AsyncBenchOptions& options, bool async, const std::string& name) {
  std::vector<std::string> overrides = options.overrides;
  if (options.steps > 0) overrides.push_back("steps=" + std::to_string(options.steps));
  overrides.push_back(async ? "placement.mode=split" : "placement.mode=colocated");
  overrides.push_back(async ? "mode=async" : "mode=sync");
  overrides.push_back("run_dir=" + options.run_dir + "/" + name);
  return overrides;
}

// `warm_start`: the shared warm start's HF directory (empty: the recipe has no warm start).
controller::RecipeConfig ModeRecipe(const AsyncBenchOptions& options, bool async, const std::string& warm_start) {
  std::vector<std::string> overrides = RunOverrides(options, async, async ? "async" : "sync");
  if (!warm_start.empty()) {
    for (const char* o : {"model.source=hf", "sft.steps=0"}) overrides.emplace_back(o);
    overrides.push_back("model.path=" + warm_start);
  }
  return controller::LoadRecipe(options.recipe, overrides);
}

// One SFT warm start for both modes. Each mode warm-starting on its own trains on different ranks (all
// of them colocated, the trainer ranks split), so their sums round differently and RL would start
// from different policies: the modes' reward and response lengths would differ for that reason
// alone. Here the warm start runs once (colocated, RL steps 0), is exported in f32 (the master weights
// exactly) and both modes start RL from that directory. Returns {} when the recipe has no warm start.
json SharedWarmStart(Communicator& world, const AsyncBenchOptions& options, std::string* hf_dir) {
  std::vector<std::string> overrides = RunOverrides(options, false, "warm_start");
  // Read as it is first: steps 0 without SFT steps is refused, and then there is nothing to share.
  if (controller::LoadRecipe(options.recipe, overrides).sft.steps == 0) return json::object();
  overrides.emplace_back("steps=0");  // after the user's steps: the last override of a key wins
  const controller::RecipeConfig warm = controller::LoadRecipe(options.recipe, overrides);
  *hf_dir = warm.run_dir + "/hf";
  if (world.Rank() == 0) std::filesystem::remove_all(warm.run_dir);
  world.Barrier()->Wait();
  const auto start = std::chrono::steady_clock::now();
  controller::RunTraining(world, warm);
  if (world.Rank() == 0) controller::ExportRun({warm.run_dir, *hf_dir, "f32"});
  world.Barrier()->Wait();
  return {{"sft_steps", warm.sft.steps}, {"ranks", world.Size()}, {"dir", *hf_dir},
          {"seconds", std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()}};
}

}  // namespace

json RunAsyncBench(Communicator& world, const AsyncBenchOptions& options) {
  LLAMARL_CHECK(world.Size() >= 2, "bench async compares colocated and split placement on the same ranks: run it under ",
                "mpirun -np 2 or more (got ", world.Size(), " rank)");
  std::string warm_dir;
  LLAMARL_CHECK(options.threads >= 0, "bench async: threads per rank must be >= 0 (0 = the machine's cores / ranks), got ",
                options.threads);
  // Both modes get the same intra-op threads per rank: the ranks' share of the machine's cores.
  const int cores = int(std::max(1u, std::thread::hardware_concurrency()));
  const int threads = options.threads > 0 ? options.threads : std::max(1, cores / world.Size());
  at::set_num_threads(threads);
  const json warm_start = SharedWarmStart(world, options, &warm_dir);
  controller::RecipeConfig sync = ModeRecipe(options, false, warm_dir);
  controller::RecipeConfig async = ModeRecipe(options, true, warm_dir);
  for (const auto* r : {&sync, &async}) {
    if (world.Rank() == 0) std::filesystem::remove_all(r->run_dir);  // fresh runs, not resumed ones
  }
  world.Barrier()->Wait();
  controller::RunTraining(world, sync);
  controller::RunTraining(world, async);
  if (world.Rank() != 0) return json::object();
  json s = SummariseBenchRun(sync.run_dir), a = SummariseBenchRun(async.run_dir);
  return {{"steps", sync.steps},
          {"ranks", world.Size()},
          {"threads_per_rank", threads},
          {"recipe", options.recipe},
          {"warm_start", warm_start},
          {"sync", s},
          {"async", a},
          // The share of a synchronous step spent generating: what asynchrony can hide.
          {"sync_generate_fraction", s["gen_s"].get<double>() / s["step_s"].get<double>()},
          {"step_speedup", s["step_s"].get<double>() / a["step_s"].get<double>()},
          // What the user gets: trained tokens per second (a mode that trained on shorter responses
          // or fewer samples per step cannot look faster this way).
          {"speedup", a["tokens_per_s"].get<double>() / s["tokens_per_s"].get<double>()}};
}

}  // namespace llamarl::bench
