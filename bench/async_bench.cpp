#include "bench/async_bench.h"

#include "controller/loop.h"
#include "controller/metrics.h"
#include "core/config.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <filesystem>

namespace llamarl::bench {
namespace {

using nlohmann::json;

double SumOf(const std::vector<json>& rows, const char* key) {
  double s = 0;
  for (const auto& r : rows) s += r.value(key, 0.0);
  return s;
}

// One mode's figures from its run directory. The first RL step is left out of the timings: it pays
// for start-up (the generators' first prefill, allocator warm-up) in both modes alike.
json Summarise(const std::string& run_dir) {
  std::vector<json> rl;
  for (const json& row : ReadMetrics(run_dir + "/metrics.jsonl"))
    if (row.value("phase", std::string()) == "rl") rl.push_back(row);
  TORCH_CHECK(!rl.empty(), "bench async: no RL step in ", run_dir, "/metrics.jsonl");
  const json summary = ReadJsonFile(run_dir + "/summary.json");
  std::vector<json> timed(rl.size() > 1 ? rl.begin() + 1 : rl.begin(), rl.end());
  const double step_total = SumOf(timed, "step_s");
  const double n = double(timed.size());
  std::vector<json> tail(rl.end() - std::min<ptrdiff_t>(5, ptrdiff_t(rl.size())), rl.end());
  json out = {{"step_s", step_total / n},
              {"samples_per_s", SumOf(timed, "samples") / step_total},
              {"tokens_per_s", SumOf(timed, "tokens") / step_total},
              {"reward_start", summary["eval_start"].value("eval_reward_mean", 0.0)},
              {"reward_end", summary["eval_end"].value("eval_reward_mean", 0.0)},
              {"train_reward_last5", SumOf(tail, "reward_mean") / double(tail.size())},
              {"response_len_mean", SumOf(timed, "response_len_mean") / n},
              {"idle_fraction_trainer", SumOf(timed, "idle_s_trainer") / step_total},
              {"gen_s", SumOf(timed, "gen_s") / n},
              {"train_s", SumOf(timed, "train_s") / n},
              {"sync_s", SumOf(timed, "sync_s") / n},
              {"staleness_mean", SumOf(timed, "staleness_mean") / n},
              {"dropped_stale", SumOf(rl, "dropped_stale")}};
  if (summary.contains("generators")) {
    double idle = 0, total = 0;
    for (const auto& g : summary["generators"]) idle += g.value("idle_s", 0.0), total += g.value("total_s", 0.0);
    out["idle_fraction_generator"] = total > 0 ? idle / total : 0.0;
  } else {
    out["idle_fraction_generator"] = SumOf(timed, "idle_s_generator") / step_total;
  }
  return out;
}

controller::RecipeConfig ModeRecipe(const AsyncBenchOptions& options, bool async) {
  std::vector<std::string> overrides = options.overrides;
  if (options.steps > 0) overrides.push_back("steps=" + std::to_string(options.steps));
  overrides.push_back(async ? "placement.mode=split" : "placement.mode=colocated");
  overrides.push_back(async ? "mode=async" : "mode=sync");
  overrides.push_back("run_dir=" + options.run_dir + (async ? "/async" : "/sync"));
  return controller::LoadRecipe(options.recipe, overrides);
}

}  // namespace

json RunAsyncBench(Communicator& world, const AsyncBenchOptions& options) {
  TORCH_CHECK(world.Size() >= 2, "bench async compares colocated and split placement on the same ranks: run it under ",
              "mpirun -np 2 or more (got ", world.Size(), " rank)");
  controller::RecipeConfig sync = ModeRecipe(options, false);
  controller::RecipeConfig async = ModeRecipe(options, true);
  for (const auto* r : {&sync, &async}) {
    if (world.Rank() == 0) std::filesystem::remove_all(r->run_dir);  // fresh runs, not resumed ones
  }
  world.Barrier()->Wait();
  controller::RunTraining(world, sync);
  controller::RunTraining(world, async);
  if (world.Rank() != 0) return json::object();
  json s = Summarise(sync.run_dir), a = Summarise(async.run_dir);
  return {{"steps", sync.steps},
          {"ranks", world.Size()},
          {"recipe", options.recipe},
          {"sync", s},
          {"async", a},
          {"speedup", s["step_s"].get<double>() / a["step_s"].get<double>()}};
}

}  // namespace llamarl::bench
