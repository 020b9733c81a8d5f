#include "controller/loop.h"

#include <c10/util/Exception.h>

#include <filesystem>
#include <fstream>

#include "controller/colocated_worker.h"
#include "controller/generator_worker.h"
#include "controller/metrics.h"
#include "controller/trace.h"
#include "controller/trainer_worker.h"
#include "core/logging.h"
#include "generator/generator_config.h"

namespace llamarl::controller {
namespace fs = std::filesystem;
namespace {

const char* RoleOf(const Placement& p, int rank) {
  if (!p.split) return "colocated";
  return p.IsGenerator(rank) ? "generator" : "trainer";
}

void CheckRecipeFitsPlacement(const RecipeConfig& recipe, const Placement& p) {
  TORCH_CHECK(recipe.rollout.prompts_per_step >= p.NumReplicas(), "rollout.prompts_per_step (",
              recipe.rollout.prompts_per_step, ") must be at least the number of generator replicas (",
              p.NumReplicas(), ") so that every replica has a group to generate; raise it or use fewer ranks");
  TORCH_CHECK(!p.split || recipe.rollout.prompts_per_step >= p.num_trainers,
              "rollout.prompts_per_step (", recipe.rollout.prompts_per_step,
              ") must be at least the number of trainer ranks (", p.num_trainers,
              ") so that every trainer rank trains on a group each step; raise it or use fewer trainer ranks");
  TORCH_CHECK(recipe.rollout.group_size <= recipe.rollout.max_slots, "rollout.group_size (", recipe.rollout.group_size,
              ") exceeds rollout.max_slots (", recipe.rollout.max_slots, "); a group is admitted at once: raise max_slots");
  GeneratorConfig::FromJson(recipe.generator, "generator");  // its errors before any model is built
}

// The controller prepares the run directory; on resume the metrics after the checkpoint are cut so
// the rerun steps are not counted twice.
std::unique_ptr<MetricsWriter> OpenRunDirectory(const RecipeConfig& recipe, const Placement& placement, bool resume) {
  fs::create_directories(recipe.run_dir);
  std::ofstream(recipe.run_dir + "/recipe.json") << ResolvedRecipeJson(recipe, placement).dump(2) << "\n";
  const std::string metrics = recipe.run_dir + "/metrics.jsonl";
  if (resume) {
    const std::string latest = LatestCheckpoint(recipe.run_dir);
    if (!latest.empty() && fs::exists(metrics)) {
      const int64_t rl_step = std::stoll(fs::path(latest).filename().string().substr(5));
      DropMetricsAfterStep(metrics, recipe.sft.steps + rl_step - 1);
    }
  }
  return std::make_unique<MetricsWriter>(metrics, resume);
}

Json RunRole(JobContext& job, LlamaForCausalLMImpl& model) {
  const Placement& p = job.placement;
  const int rank = job.world.Rank();
  // Sub-communicators, split collectively in the same order on every rank.
  const int replica = p.ReplicaOf(rank);
  std::unique_ptr<Communicator> tp = job.world.Split(replica, rank);
  std::unique_ptr<Communicator> dp = job.world.Split(p.split && p.IsTrainer(rank) ? 0 : -1, rank);
  ReplicaWeightSync sync(job.world, job.config, p, job.recipe.mode == "sync", job.timeouts.step);
  if (!p.split) return ColocatedWorker(job, model, sync, std::move(tp)).Run();
  if (p.IsGenerator(rank)) {
    GeneratorWorker(job, model, sync, std::move(tp)).Run();
    return Json::object();
  }
  return TrainerWorker(job, model, sync, std::move(dp)).Run();
}

std::string ErrorText(const std::exception& e) {
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) return c10->what_without_backtrace();
  return e.what();
}

}  // namespace

Json RunTraining(Communicator& world, RecipeConfig recipe, const RunOptions& options) {
  const Placement placement = ResolvePlacement(recipe.placement, world.Size());
  CheckRecipeFitsPlacement(recipe, placement);
  if (!options.resume_dir.empty()) recipe.run_dir = options.resume_dir;
  const int rank = world.Rank();
  const bool controller = rank == placement.FirstTrainer();
  SetLogRank(world.Size() > 1 ? rank : -1);
  std::unique_ptr<MetricsWriter> metrics;
  if (controller) metrics = OpenRunDirectory(recipe, placement, !options.resume_dir.empty());
  world.Barrier()->Wait(TimeoutsOf(recipe).startup);  // the run directory exists for every rank
  auto tracer = std::make_unique<Tracer>(recipe.run_dir, rank, RoleOf(placement, rank));
  const LlamaConfig config = BuildModelConfig(recipe);
  JobContext job{world, recipe, placement, config, BuildTokenizer(recipe), LoadDataset(recipe.data),
                 TimeoutsOf(recipe), GroupRouting{recipe.rollout.prompts_per_step, placement.NumReplicas()},
                 options.resume_dir, metrics.get(), tracer.get()};
  Json summary;
  ResetPhase();
  try {
    LlamaForCausalLM model = BuildModel(recipe, config);
    summary = RunRole(job, *model);
  } catch (const std::exception& e) {
    throw TrainingFailure("rank " + std::to_string(rank) + " (" + RoleOf(placement, rank) + ") failed in phase '" +
                          CurrentPhase() + "': " + ErrorText(e));
  }
  tracer.reset();
  world.Barrier()->Wait(TimeoutsOf(recipe).step);
  if (rank == 0) {
    // The per-rank trace files are complete either way; `llamarl report` merges them when trace.json
    // is missing, so a merge failure is reported but does not fail a finished run.
    try {
      MergeTrace(recipe.run_dir);
    } catch (const std::exception& e) {
      LogWarning("could not merge ", recipe.run_dir, "/trace/*.jsonl into trace.json: ", ErrorText(e));
    }
  }
  if (!controller) return Json::object();
  {
    summary["run_dir"] = recipe.run_dir;
    std::ofstream(recipe.run_dir + "/summary.json") << summary.dump(2) << "\n";
  }
  return summary;
}

}  // namespace llamarl::controller
