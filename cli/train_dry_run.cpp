#include "cli/train_dry_run.h"

#include "controller/job.h"
#include "core/check.h"
#include "core/device.h"
#include "core/host_allocator.h"
#include "core/process_memory.h"
#include "generator/kv_budget.h"
#include "plan/plan_model.h"
#include "plan/plan_rank_memory.h"

#include <algorithm>
#include <cstdio>

namespace llamarl::cli {
namespace {

int64_t DtypeBytes(const std::string& name) { return name == "float32" ? 4 : 2; }

void PrintDryRun(const PlanModel& model, const controller::Placement& placement,
                 const std::vector<PlannedRank>& planned, double host, const std::string& problem, bool json) {
  const int ranks = int(planned.size());
  if (json) {
    Json out{{"host_memory_bytes", host}, {"fits", problem.empty()}, {"problem", problem}, {"ranks", Json::array()}};
    for (const PlannedRank& r : planned) {
      Json j = r.memory.ToJson();
      j.update({{"rank", r.rank}, {"role", r.role}});
      out["ranks"].push_back(j);
    }
    std::printf("%s\n", out.dump(2).c_str());
  } else {
    std::printf("llamarl train --dry-run: %s (%lld parameters) on %d rank(s), %s placement%s\n",
                model.name.c_str(), static_cast<long long>(model.num_params), ranks,
                placement.split ? "split" : "colocated", placement.offload ? " with offload" : "");
    std::printf("%s", MemoryPlanText(planned, host).c_str());
    if (problem.empty()) {
      std::printf("fits: every rank, and all of them together, fit this machine's memory\n");
    } else {
      std::printf("DOES NOT FIT:\n%s", problem.c_str());
    }
  }
}

}  // namespace

int TrainDryRun(const controller::RecipeConfig& recipe, int ranks, bool json, bool print) {
  LLAMARL_CHECK(ranks >= 1, "--ranks must be >= 1, got ", ranks);
  const controller::Placement placement = controller::ResolvePlacement(recipe.placement, ranks);
  const LlamaConfig config = controller::BuildModelConfig(recipe);
  const PlanModel model = BuildPlanModel(recipe.model.source == "hf" ? recipe.model.path : "tiny", config);
  const TrainerConfig& trainer = recipe.trainer;
  const GeneratorConfig& generator = recipe.generator;
  const Tokenizer tokenizer = controller::BuildTokenizer(recipe);
  const controller::DatasetSplits data = controller::LoadDataset(recipe.data);
  const EngineOptions engine = controller::GeneratorEngineOptions(recipe, config, tokenizer, data);

  RankMemoryInputs in;
  in.trainer_ranks = placement.num_trainers;
  in.zero3 = trainer.sharding == "zero3";
  in.activation_checkpointing = trainer.activation_checkpointing;
  in.compute_bytes = DtypeBytes(trainer.compute_dtype);
  in.reference_bytes = trainer.kl.coef > 0 ? DtypeBytes(trainer.kl.reference_dtype) : 0;
  // The largest micro-batch: micro_batch_tokens, or all of a rank's tokens when fewer.
  const int64_t step_tokens = recipe.rollout.prompts_per_step * recipe.rollout.group_size * engine.max_seq_len;
  in.micro_batch_tokens = std::min(trainer.micro_batch_tokens, (step_tokens + in.trainer_ranks - 1) / in.trainer_ranks);
  in.logprob_token_chunk = trainer.logprob_token_chunk;
  in.logprob_vocab_chunk = trainer.logprob_vocab_chunk;
  in.tp = placement.tp_size;
  in.generator_weight_bytes = DtypeBytes(generator.weight_dtype);
  in.generator_fp8 = generator.Fp8Weights();
  in.max_slots = engine.max_slots;
  // A CPU rank's state lives in the host heap, where the tuned allocator keeps what a step frees.
  // ("cuda" is not resolved here: a machine without a GPU is the run's error, not the plan's.)
  const bool cpu = recipe.device == "cpu" || (recipe.device == "auto" && ResolveDevice("auto", "device").is_cpu());
  if (HostAllocatorTuned() && cpu)
    in.allocator_retained_bytes = double(kHostTrimThreshold);
  KvCacheSizing sizing;
  sizing.tp_size = placement.tp_size;
  sizing.dtype_bytes = in.generator_weight_bytes;
  sizing.default_tokens = engine.max_slots * engine.max_seq_len;
  if (engine.kv_cache.bytes == 0 && engine.kv_cache.fraction > 0) {
    // What the engine will see: the memory available now less this rank's weights.
    in.role = "generator";
    in.kv_budget_bytes = 0;
    sizing.memory_left_bytes =
        std::max<int64_t>(0, HostMemoryAvailableBytes() - int64_t(PlanRankMemory(model, in).weights));
  }
  in.kv_budget_bytes = double(SizeKvCache(config, engine.kv_cache, sizing).budget_bytes);

  std::vector<PlannedRank> planned;
  for (int r = 0; r < ranks; ++r) {
    in.role = !placement.split ? "colocated" : placement.IsGenerator(r) ? "generator" : "trainer";
    planned.push_back({r, in.role, PlanRankMemory(model, in)});
  }
  const double host = double(HostMemoryTotalBytes());
  const std::string problem = MemoryFitProblem(planned, host);
  if (print) PrintDryRun(model, placement, planned, host, problem, json);
  return problem.empty() ? 0 : 2;
}

}  // namespace llamarl::cli
