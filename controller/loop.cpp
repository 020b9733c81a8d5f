#include "controller/loop.h"

#include <filesystem>
#include <fstream>
#include <optional>

#include "controller/colocated_worker.h"
#include "controller/generator_worker.h"
#include "controller/job.h"
#include "controller/run_dir.h"
#include "controller/trainer_side.h"
#include "controller/trainer_worker.h"
#include "core/check.h"
#include "core/error_text.h"
#include "core/logging.h"
#include "core/process_memory.h"
#include "report/metrics.h"
#include "report/trace.h"

namespace llamarl::controller {
namespace fs = std::filesystem;
namespace {

const char* RoleOf(const Placement& p, int rank) {
  if (!p.split) return "colocated";
  return p.IsGenerator(rank) ? "generator" : "trainer";
}

void CheckRecipeFitsPlacement(const RecipeConfig& recipe, const Placement& p) {
  LLAMARL_CHECK(recipe.rollout.prompts_per_step >= p.NumReplicas(), "rollout.prompts_per_step (",
                recipe.rollout.prompts_per_step, ") must be at least the number of generator replicas (",
                p.NumReplicas(), ") so that every replica has a group to generate; raise it or use fewer ranks");
  LLAMARL_CHECK(!p.split || recipe.rollout.prompts_per_step >= p.num_trainers,
                "rollout.prompts_per_step (", recipe.rollout.prompts_per_step,
                ") must be at least the number of trainer ranks (", p.num_trainers,
                ") so that every trainer rank trains on a group each step; raise it or use fewer trainer ranks");
  LLAMARL_CHECK(recipe.rollout.group_size <= recipe.generator.engine.max_slots, "rollout.group_size (",
                recipe.rollout.group_size, ") exceeds generator.max_slots (", recipe.generator.engine.max_slots,
                "); a group is admitted at once: raise generator.max_slots");
}

// steps 0: the recipe's SFT warm start and nothing else, saved as RUN_DIR/checkpoints/step_0 (the
// step RL would start at), so that `llamarl export` turns it into an HF directory several RL runs can
// start from, whatever their placement. Every training rank (all of them colocated, the trainer ranks
// split) takes part; a split placement's generators have nothing to do.
Json WarmStartOnly(JobContext& job, LlamaWeightSource& weights, Communicator& dp) {
  TrainingStart start = StartTraining(job, dp, weights);
  StepPrompts prompts(job.data.train, job.recipe);
  const std::string checkpoint = SaveRunCheckpoint(job, *start.trainer, 0, prompts.CursorAt(0));
  if (dp.Rank() == 0) LogInfo("warm start only (steps 0): ", job.recipe.sft.steps, " SFT steps saved in ", checkpoint);
  return Json{{"warm_start_only", true}, {"sft_steps", job.recipe.sft.steps}, {"checkpoint", checkpoint},
              {"policy_version", start.trainer->PolicyVersion()}};
}

Json RunRole(JobContext& job, LlamaWeightSource& weights) {
  const Placement& p = job.placement;
  const int rank = job.world.Rank();
  // Sub-communicators, split collectively in the same order on every rank.
  const int replica = p.ReplicaOf(rank);
  std::unique_ptr<Communicator> tp = job.world.Split(replica, rank);
  std::unique_ptr<Communicator> dp = job.world.Split(p.split && p.IsTrainer(rank) ? 0 : -1, rank);
  if (job.recipe.steps == 0) {
    if (!p.split) return WarmStartOnly(job, weights, job.world);
    return p.IsTrainer(rank) ? WarmStartOnly(job, weights, *dp) : Json::object();
  }
  ReplicaWeightSync sync(job.world, job.config, p, job.recipe.mode == "sync", job.timeouts.step,
                         GeneratorWeightOptions(job.recipe, job.device), job.recipe.generator.Fp8Weights());
  if (!p.split) return ColocatedWorker(job, weights, sync, std::move(tp)).Run();
  if (p.IsGenerator(rank)) {
    GeneratorWorker(job, weights, sync, std::move(tp)).Run();
    return Json::object();
  }
  return TrainerWorker(job, weights, sync, std::move(dp)).Run();
}

// Every rank's peak resident memory over the run and its resident memory before loading:
// {"peak_rss_bytes": {"rank0": ..}, "rss_at_start_bytes": {...}}. Collective over the world.
Json RanksMemory(Communicator& world, int64_t rss_at_start) {
  at::Tensor mine = at::tensor({LifetimePeakRssBytes(), rss_at_start}, at::kLong);
  std::vector<at::Tensor> all;
  for (int r = 0; r < world.Size(); ++r) all.push_back(at::empty({2}, at::kLong));
  world.AllGather(all, mine)->Wait();
  Json peak = Json::object(), start = Json::object();
  for (int r = 0; r < world.Size(); ++r) {
    peak["rank" + std::to_string(r)] = all[size_t(r)][0].item<int64_t>();
    start["rank" + std::to_string(r)] = all[size_t(r)][1].item<int64_t>();
  }
  return Json{{"peak_rss_bytes", peak}, {"rss_at_start_bytes", start}};
}

// RUN_DIR/summary.json. The start of RL is where the run began RL, not where a resume picked it up.
void WriteSummary(const std::string& run_dir, const ResumePoint* resume, Json* summary) {
  if (resume && !resume->eval_start.is_null()) {
    (*summary)["eval_resume"] = summary->value("eval_start", Json());
    (*summary)["eval_start"] = resume->eval_start;
  }
  (*summary)["run_dir"] = run_dir;
  std::ofstream(run_dir + "/summary.json") << summary->dump(2) << "\n";
}

void MergeTraceOrWarn(const std::string& run_dir) {
  // The per-rank trace files are complete either way; `llamarl report` merges them when trace.json
  // is missing, so a merge failure is reported but does not fail a finished run.
  try {
    MergeTrace(run_dir);
  } catch (const std::exception& e) {
    LogWarning("could not merge ", run_dir, "/trace/*.jsonl into trace.json: ", ErrorText(e));
  }
}

}  // namespace

// Everything that can fail on the recipe or its inputs is checked before any rank does work or
// writes anything: the sections when the recipe was read, then placement, the model config, the
// tokenizer, the data and, on resume, the run directory (controller/run_dir.h).
Json RunTraining(Communicator& world, RecipeConfig recipe, const RunOptions& options) {
  const Placement placement = ResolvePlacement(recipe.placement, world.Size());
  CheckRecipeFitsPlacement(recipe, placement);
  if (!options.resume_dir.empty()) recipe.run_dir = options.resume_dir;
  const Json resolved = ResolvedRecipeJson(recipe, placement);
  std::optional<ResumePoint> resume;
  if (!options.resume_dir.empty()) resume = PlanResume(resolved, options.resume_dir);  // reads only
  const int64_t rss_at_start = CurrentRssBytes();  // before any weight is loaded
  const int rank = world.Rank();
  const bool controller = rank == placement.FirstTrainer();
  SetLogRank(world.Size() > 1 ? rank : -1);
  const LlamaConfig config = BuildModelConfig(recipe);
  JobContext job{world, recipe, placement, config, BuildTokenizer(recipe), LoadDataset(recipe.data),
                 TimeoutsOf(recipe), GroupRouting{recipe.rollout.prompts_per_step, placement.NumReplicas()},
                 options.resume_dir, resume ? resume->checkpoint : ""};
  job.device = options.device;
  std::unique_ptr<MetricsWriter> metrics;
  if (controller) {
    if (resume && !resume->skipped.empty())
      LogWarning("--resume ", recipe.run_dir, ": skipping damaged checkpoint(s):", SkippedText(*resume),
                 "\nresuming from ", resume->checkpoint, " (RL step ", resume->rl_step, ") instead");
    metrics = OpenRunDirectory(recipe.run_dir, resolved, resume ? &*resume : nullptr, recipe.logging.tensorboard);
  }
  world.Barrier()->Wait(job.timeouts.startup);  // the run directory exists for every rank
  auto tracer = std::make_unique<Tracer>(recipe.run_dir, rank, RoleOf(placement, rank));
  job.metrics = metrics.get();
  job.tracer = tracer.get();
  Json summary;
  ResetPhase();
  try {
    LlamaWeightSource weights = BuildWeights(recipe);
    summary = RunRole(job, weights);
  } catch (const std::exception& e) {
    throw TrainingFailure("rank " + std::to_string(rank) + " (" + RoleOf(placement, rank) + ") failed in phase '" +
                          CurrentPhase() + "'" + CurrentStepText() + ": " + ErrorText(e));
  }
  tracer.reset();
  const Json memory = RanksMemory(world, rss_at_start);  // collective over the world
  world.Barrier()->Wait(TimeoutsOf(recipe).step);
  if (rank == 0) MergeTraceOrWarn(recipe.run_dir);
  if (!controller) return Json::object();
  summary.update(memory);
  WriteSummary(recipe.run_dir, resume ? &*resume : nullptr, &summary);
  return summary;
}

}  // namespace llamarl::controller
