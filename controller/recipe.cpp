#include "controller/recipe.h"

#include <algorithm>

#include "core/check.h"
#include "env/environment.h"
#include "reward/registry.h"

namespace llamarl::controller {

ModelRecipe ModelRecipe::FromJson(const Json& j, const std::string& path) {
  ModelRecipe c;
  ConfigReader r(j, path);
  r.Read("source", &c.source, {"tiny", "hf"}, "a random tiny Llama or an HF checkpoint directory");
  r.Read("path", &c.path, {}, "HF checkpoint directory (source hf)");
  r.Read("hidden_size", &c.tiny.hidden_size, Range::AtLeast(1), "tiny model width");
  r.Read("num_layers", &c.tiny.num_layers, Range::AtLeast(1), "tiny model depth");
  r.Read("num_heads", &c.tiny.num_heads, Range::AtLeast(1), "attention heads");
  r.Read("num_kv_heads", &c.tiny.num_kv_heads, Range::AtLeast(1), "key/value heads (GQA)");
  r.Read("intermediate_size", &c.tiny.intermediate_size, Range::AtLeast(0), "MLP width (0 = 8/3 x hidden)");
  r.Read("max_position_embeddings", &c.tiny.max_position_embeddings, Range::AtLeast(1), "longest sequence");
  r.Read("init_seed", &c.init_seed, Range::AtLeast(0), "seed of the random init");
  r.Finish();
  LLAMARL_CHECK(c.source != "hf" || !c.path.empty(), r.PathOf("path"),
                ": source 'hf' needs the checkpoint directory; set ", r.PathOf("path"));
  return c;
}

TokenizerRecipe TokenizerRecipe::FromJson(const Json& j, const std::string& path) {
  TokenizerRecipe c;
  ConfigReader r(j, path);
  r.Read("source", &c.source, {"tiny", "hf"}, "the byte tokenizer of tiny models or an HF tokenizer.json");
  r.Read("path", &c.path, {}, "directory holding tokenizer.json (default: model.path)");
  r.Finish();
  return c;
}

PlacementRecipe PlacementRecipe::FromJson(const Json& j, const std::string& path) {
  PlacementRecipe c;
  ConfigReader r(j, path);
  r.Read("mode", &c.mode, {"split", "colocated"}, "disjoint generator/trainer ranks, or every rank both");
  r.Read("generator_ranks", &c.generator_ranks, Range::AtLeast(0), "split: generating ranks (0 = half)");
  r.Read("trainer_ranks", &c.trainer_ranks, Range::AtLeast(0), "split: training ranks (0 = the rest)");
  r.Read("tp_size", &c.tp_size, Range::AtLeast(1), "tensor-parallel degree of a generator replica");
  const bool offload_set = r.Has("offload");
  c.offload = c.mode == "colocated";
  r.Read("offload", &c.offload, "colocated: trainer state to host while generating, KV cache freed while training");
  r.Finish();
  LLAMARL_CHECK(!(offload_set && c.offload && c.mode == "split"), r.PathOf("offload"),
                ": true applies to colocated placement only (a split rank never holds both a trainer state and a ",
                "KV cache); remove it, or set ", r.PathOf("mode"), " to colocated");
  return c;
}

RolloutRecipe RolloutRecipe::FromJson(const Json& j, const std::string& path) {
  RolloutRecipe c;
  ConfigReader r(j, path);
  r.Read("prompts_per_step", &c.prompts_per_step, Range::AtLeast(1), "prompt groups per training step");
  r.Read("group_size", &c.group_size, Range::AtLeast(1), "samples per prompt");
  LLAMARL_CHECK(!r.Has("max_slots"), r.PathOf("max_slots"), ": moved to generator.max_slots (the engine's ",
                "concurrent sequences per replica, read into its own EngineOptions)");
  ReadSamplingParams(r, &c.sampling);
  r.Finish();
  return c;
}

namespace {

// A trainer section as an object (absent = all defaults) whose schedule, when it has no
// total_steps, decays over the `steps` of the phase it drives.
Json TrainerSection(const Json& trainer, int64_t steps) {
  Json j = trainer.is_null() ? Json::object() : trainer;
  if (j.contains("schedule") && j["schedule"].is_object() && !j["schedule"].contains("total_steps")) {
    j["schedule"]["total_steps"] = steps;
  }
  return j;
}

// RL's trainer (RecipeConfig::trainer): scores at the temperature the rollouts are sampled at.
TrainerConfig RlTrainer(const Json& trainer, int64_t steps, double rollout_temperature) {
  TrainerConfig c = TrainerConfig::FromJson(TrainerSection(trainer, steps), "trainer");
  const double sampled_at = rollout_temperature > 0 ? rollout_temperature : 1.0;
  LLAMARL_CHECK(!trainer.is_object() || !trainer.contains("temperature") || c.temperature == sampled_at,
                "trainer.temperature (", c.temperature, ") differs from the temperature the rollouts are sampled at (",
                sampled_at, "); leave trainer.temperature out: it follows rollout.temperature");
  c.temperature = sampled_at;
  return c;
}

}  // namespace

SftRecipe SftRecipe::FromJson(const Json& j, const std::string& path, const Json& trainer) {
  SftRecipe c;
  ConfigReader r(j, path);
  r.Read("steps", &c.steps, Range::AtLeast(0), "warm-start steps on reference responses (0 = none)");
  r.Read("batch_size", &c.batch_size, Range::AtLeast(1), "examples per warm-start step");
  const Json& overrides = r.Raw("trainer");
  LLAMARL_CHECK(overrides.is_null() || overrides.is_object(), r.PathOf("trainer"),
                ": expected an object of trainer overrides such as {\"optimizer\": {\"lr\": 1e-3}}, got ",
                DescribeJson(overrides));
  r.Finish();
  if (c.steps == 0) return c;
  // A key of `trainer` itself is named as such; what fails only once the overrides are merged over
  // it comes from sft.trainer (its keys, or the combination).
  TrainerConfig::FromJson(TrainerSection(trainer, c.steps), "trainer");
  Json merged = trainer.is_null() ? Json::object() : trainer;
  if (!overrides.is_null()) merged.merge_patch(overrides);
  c.trainer = TrainerConfig::FromJson(TrainerSection(merged, c.steps), r.PathOf("trainer"));
  c.trainer.critic = CriticConfig();  // the warm start trains the policy alone
  return c;
}

EvalRecipe EvalRecipe::FromJson(const Json& j, const std::string& path) {
  EvalRecipe c;
  ConfigReader r(j, path);
  r.Read("every", &c.every, Range::AtLeast(0), "evaluate every N RL steps (0 = start and end only)");
  r.Read("num_prompts", &c.num_prompts, Range::AtLeast(1), "held-out prompts per evaluation");
  r.Read("max_new_tokens", &c.max_new_tokens, Range::AtLeast(0), "0 = rollout.max_new_tokens");
  r.Read("samples", &c.samples, Range::AtLeast(0), "k samples per prompt for pass@k and mean@k (0 = greedy only)");
  r.Read("pass_threshold", &c.pass_threshold, {}, "the reward at which a sample passes (pass@k)");
  r.Finish();
  return c;
}

CheckpointRecipe CheckpointRecipe::FromJson(const Json& j, const std::string& path) {
  CheckpointRecipe c;
  ConfigReader r(j, path);
  r.Read("every", &c.every, Range::AtLeast(0), "save every N RL steps (0 = only at the end)");
  r.Read("keep", &c.keep, Range::AtLeast(1), "newest checkpoints kept");
  r.Finish();
  return c;
}

AsyncRecipe AsyncRecipe::FromJson(const Json& j, const std::string& path) {
  AsyncRecipe c;
  ConfigReader r(j, path);
  r.Read("on_stale", &c.on_stale, {"train", "drop", "recompute"},
         "a finished group past the bound: train on it, drop it, or rescore it under the current policy");
  r.Read("deterministic", &c.deterministic,
         "batches in admission order, pushes between generation rounds: runs and resumes reproduce exactly");
  r.Finish();
  return c;
}

DapoRecipe DapoRecipe::FromJson(const Json& j, const std::string& path) {
  DapoRecipe c;
  ConfigReader r(j, path);
  r.Read("dynamic_sampling", &c.dynamic_sampling,
         "discard groups whose rewards are all equal and generate replacements until the batch is full");
  r.Read("max_gen_batches", &c.max_gen_batches, Range::AtLeast(1),
         "a step generates at most this many batches' worth of groups (dynamic sampling)");
  r.Read("overlong", &c.overlong, {"off", "penalty", "filter"},
         "truncated responses: no change, DAPO's soft length penalty, or kept out of the loss");
  r.Read("overlong_buffer", &c.overlong_buffer, Range::AtLeast(0),
         "penalty: tokens before rollout.max_new_tokens over which the penalty ramps from 0 to -1");
  r.Read("overlong_penalty_factor", &c.overlong_penalty_factor, Range::AtLeast(0),
         "penalty: the penalty's scale (1 = DAPO's)");
  r.Finish();
  return c;
}

AlgorithmRecipe AlgorithmRecipe::FromJson(const Json& j, const std::string& path) {
  AlgorithmRecipe c;
  ConfigReader r(j, path);
  c.dapo = DapoRecipe::FromJson(r.Raw("dapo"), r.PathOf("dapo"));
  r.Finish();
  return c;
}

TimeoutRecipe TimeoutRecipe::FromJson(const Json& j, const std::string& path) {
  TimeoutRecipe c;
  ConfigReader r(j, path);
  r.Read("startup_s", &c.startup_s, Range::Positive(), "limit of waits before RL starts (seconds)");
  r.Read("step_s", &c.step_s, Range::Positive(), "limit of any single wait during RL (seconds)");
  r.Finish();
  return c;
}

DebugRecipe DebugRecipe::FromJson(const Json& j, const std::string& path) {
  DebugRecipe c;
  ConfigReader r(j, path);
  r.Read("kill_rank", &c.kill_rank, Range::AtLeast(-1), "test only: rank that SIGKILLs itself (-1 = none)");
  r.Read("kill_at_step", &c.kill_at_step, Range::AtLeast(-1), "test only: RL step of the kill");
  r.Read("nan_at_step", &c.nan_at_step, Range::AtLeast(-1), "test only: RL step whose rewards are NaN (-1 = none)");
  r.Finish();
  return c;
}

CommRecipe CommRecipe::FromJson(const Json& j, const std::string& path) {
  CommRecipe c;
  ConfigReader r(j, path);
  r.Read("backend", &c.backend, {"auto", "mpi", "nccl", "local"}, "the Communicator backend for tensors");
  r.Finish();
  return c;
}

LoggingRecipe LoggingRecipe::FromJson(const Json& j, const std::string& path) {
  LoggingRecipe c;
  ConfigReader r(j, path);
  r.Read("tensorboard", &c.tensorboard, "write a TensorBoard event file beside metrics.jsonl");
  r.Finish();
  return c;
}

namespace {

// Cross-section rules, checked once every section parsed.
void ValidateRecipe(const RecipeConfig& c) {
  LLAMARL_CHECK(c.mode != "sync" || c.placement.mode == "colocated",
                "mode 'sync' is the synchronous colocated baseline but placement.mode is '", c.placement.mode,
                "'; set placement.mode to colocated, or mode to async");
  LLAMARL_CHECK(c.tokenizer.source != "hf" || !c.tokenizer.path.empty() || c.model.source == "hf",
                "tokenizer.source 'hf' needs tokenizer.path (or model.source 'hf' to read model.path)");
  LLAMARL_CHECK(c.steps > 0 || c.sft.steps > 0, "steps is 0 (the SFT warm start only) but sft.steps is 0 too: ",
                "nothing to run; set steps (RL) or sft.steps (warm start)");
  const TinyLlamaOptions& tiny = c.model.tiny;
  LLAMARL_CHECK(c.model.source != "tiny" || tiny.hidden_size % tiny.num_heads == 0,
                "model.hidden_size (", tiny.hidden_size, ") must be a multiple of model.num_heads (",
                tiny.num_heads, ")");
  LLAMARL_CHECK(c.model.source != "tiny" || tiny.num_heads % tiny.num_kv_heads == 0,
                "model.num_heads (", tiny.num_heads, ") must be a multiple of model.num_kv_heads (",
                tiny.num_kv_heads, ")");
  if (c.env.enabled()) {
    // Environment steps run on the replica's leader only and are not broadcast over a TP group yet.
    LLAMARL_CHECK(c.placement.tp_size == 1, "env: multi-turn rollouts run with placement.tp_size 1 for now, got ",
                  c.placement.tp_size, "; set placement.tp_size to 1");
    LLAMARL_CHECK(c.eval.samples == 0, "env: eval.samples (", c.eval.samples, ") must be 0 with an environment; ",
                  "held-out episodes are greedy and scored by the environment");
  }
  const DapoRecipe& dapo = c.algorithm.dapo;
  LLAMARL_CHECK(!dapo.dynamic_sampling || c.rollout.group_size >= 2,
                "algorithm.dapo.dynamic_sampling needs rollout.group_size >= 2 (got ", c.rollout.group_size,
                "): the rewards of a one-sample group are always all equal, so every group would be discarded");
  LLAMARL_CHECK(dapo.overlong != "penalty" ||
                    (dapo.overlong_buffer >= 1 && dapo.overlong_buffer <= c.rollout.sampling.max_new_tokens),
                "algorithm.dapo.overlong_buffer (", dapo.overlong_buffer, ") must be in [1, rollout.max_new_tokens (",
                c.rollout.sampling.max_new_tokens, ")] with algorithm.dapo.overlong 'penalty': the penalty ramps over that ",
                "many tokens before the limit (DAPO used 4096 of 20480)");
  LLAMARL_CHECK(!c.run_dir.empty(), "run_dir: must name the run directory, e.g. runs/tiny_grpo");
}

}  // namespace

RecipeConfig RecipeConfig::FromJson(const Json& j, const std::string& path) {
  RecipeConfig c;
  c.source = j;
  ConfigReader r(j, path);
  c.model = ModelRecipe::FromJson(r.Raw("model"), r.PathOf("model"));
  c.tokenizer = TokenizerRecipe::FromJson(r.Raw("tokenizer"), r.PathOf("tokenizer"));
  LLAMARL_CHECK(r.Has("data"), r.PathOf("data"), ": missing; a recipe needs a data section such as ",
                "{\"source\": \"arithmetic\", \"arithmetic\": {...}}");
  c.data = DatasetConfig::FromJson(r.Raw("data"), r.PathOf("data"));
  c.reward = reward::RewardSpec::FromJson(r.Raw("reward"), r.PathOf("reward"));  // checked now
  if (r.Has("env")) {
    c.env = env::EpisodeConfig::FromJson(r.Raw("env"), r.PathOf("env"));
    env::MakeEnvironmentFactory(c.env.name, c.env.config, r.PathOf("env") + ".config");  // validates it now
  }
  c.placement = PlacementRecipe::FromJson(r.Raw("placement"), r.PathOf("placement"));
  r.Read("mode", &c.mode, {"async", "sync"}, "bounded-staleness async RL or the synchronous baseline");
  r.Read("max_policy_lag", &c.max_policy_lag, Range::AtLeast(0), "staleness bound in policy versions");
  c.async = AsyncRecipe::FromJson(r.Raw("async"), r.PathOf("async"));
  c.algorithm = AlgorithmRecipe::FromJson(r.Raw("algorithm"), r.PathOf("algorithm"));
  c.rollout = RolloutRecipe::FromJson(r.Raw("rollout"), r.PathOf("rollout"));
  c.generator = GeneratorConfig::FromJson(r.Raw("generator"), r.PathOf("generator"));
  c.eval = EvalRecipe::FromJson(r.Raw("eval"), r.PathOf("eval"));
  c.checkpoint = CheckpointRecipe::FromJson(r.Raw("checkpoint"), r.PathOf("checkpoint"));
  c.timeouts = TimeoutRecipe::FromJson(r.Raw("timeouts"), r.PathOf("timeouts"));
  c.debug = DebugRecipe::FromJson(r.Raw("debug"), r.PathOf("debug"));
  c.logging = LoggingRecipe::FromJson(r.Raw("logging"), r.PathOf("logging"));
  r.Read("device", &c.device, {"auto", "cpu", "cuda"}, "where each rank's tensors live");
  c.comm = CommRecipe::FromJson(r.Raw("comm"), r.PathOf("comm"));
  r.Read("run_dir", &c.run_dir, {}, "where metrics, trace and checkpoints go");
  r.Read("steps", &c.steps, Range::AtLeast(0), "RL steps (0 = the SFT warm start only, saved as checkpoint step_0)");
  r.Read("seed", &c.seed, Range::AtLeast(0), "sampling seed of the run");
  // After steps and rollout: a schedule decays over the steps, the trainer scores at the rollouts'
  // temperature.
  const Json& trainer = r.Raw("trainer");
  // A warm-start-only run (steps 0) still builds its RL trainer once; its schedule spans one step.
  c.trainer = RlTrainer(trainer, std::max<int64_t>(c.steps, 1), c.rollout.sampling.temperature);
  c.sft = SftRecipe::FromJson(r.Raw("sft"), r.PathOf("sft"), trainer);
  r.Finish();
  ValidateRecipe(c);
  return c;
}

RecipeConfig LoadRecipe(const std::string& file, const std::vector<std::string>& overrides) {
  Json j = ReadJsonFile(file);
  LLAMARL_CHECK(j.is_object(), file, ": a recipe must be a JSON object, got ", DescribeJson(j));
  for (const std::string& assignment : overrides) ApplyOverride(j, assignment);
  return RecipeConfig::FromJson(j, "");
}

std::vector<int> Placement::ReplicaRanks(int replica) const {
  LLAMARL_ASSERT(replica >= 0 && replica < NumReplicas(), "replica ", replica, " of ", NumReplicas());
  std::vector<int> ranks;
  for (int i = 0; i < tp_size; ++i) ranks.push_back(replica * tp_size + i);
  return ranks;
}

int Placement::ReplicaOf(int rank) const {
  return IsGenerator(rank) ? rank / tp_size : -1;
}

std::vector<int> Placement::TrainerRanks() const {
  std::vector<int> ranks;
  for (int r = FirstTrainer(); r < world_size; ++r) ranks.push_back(r);
  return ranks;
}

Placement ResolvePlacement(const PlacementRecipe& recipe, int world_size) {
  LLAMARL_CHECK(world_size >= 1, "world size ", world_size, " must be at least 1");
  Placement p;
  p.world_size = world_size;
  p.split = recipe.mode == "split";
  p.tp_size = recipe.tp_size;
  if (p.split) {
    LLAMARL_CHECK(world_size >= 2, "placement.mode 'split' needs at least 2 ranks (one generator, one ",
                  "trainer) but the job has ", world_size, "; run under mpirun -np 2 or more, or set ",
                  "placement.mode to colocated");
    p.num_generators = recipe.generator_ranks > 0 ? recipe.generator_ranks : std::max(1, world_size / 2);
    p.num_trainers = recipe.trainer_ranks > 0 ? recipe.trainer_ranks : world_size - p.num_generators;
    LLAMARL_CHECK(p.num_generators + p.num_trainers == world_size, "placement.generator_ranks (",
                  p.num_generators, ") + placement.trainer_ranks (", p.num_trainers,
                  ") must equal the number of ranks (", world_size, "); change them or the mpirun -np");
    LLAMARL_CHECK(p.num_trainers >= 1, "placement.generator_ranks (", p.num_generators,
                  ") leaves no trainer rank among ", world_size, "; lower it below ", world_size);
  } else {
    LLAMARL_CHECK(recipe.generator_ranks == 0 && recipe.trainer_ranks == 0,
                  "placement.generator_ranks/trainer_ranks apply to split placement only; with colocated ",
                  "every rank does both: remove them");
    p.num_generators = world_size;
    p.num_trainers = world_size;
    p.offload = recipe.offload;
  }
  LLAMARL_CHECK(p.num_generators % p.tp_size == 0, "placement.tp_size (", p.tp_size,
                ") must divide the number of generator ranks (", p.num_generators,
                "); pick a tp_size among its divisors");
  return p;
}

Json ResolvedRecipeJson(const RecipeConfig& recipe, const Placement& placement) {
  Json j = recipe.source;
  j["placement"] = {{"mode", placement.split ? "split" : "colocated"},
                    {"generator_ranks", placement.split ? placement.num_generators : 0},
                    {"trainer_ranks", placement.split ? placement.num_trainers : 0},
                    {"tp_size", placement.tp_size},
                    {"offload", placement.offload}};
  j["run_dir"] = recipe.run_dir;
  return j;
}

}  // namespace llamarl::controller
