// A recipe: everything `llamarl train` needs to run one job, read from one JSON file (recipes/*.json,
// schema in recipes/README.md) with `--set a.b=value` overrides applied before parsing. Every section
// is parsed through core/config.h's ConfigReader, so an unknown key lists the known ones and a bad
// value names its full path ("rollout.group_size: expected a number in [1, inf), got 0").
//
// A section that configures a component is read into that component's own struct by that component's
// reader, and the recipe holds the struct: "generator" is GeneratorConfig (generator/generator_config.h),
// the sampling keys of "rollout" are the engine's SamplingParams (read by ReadSamplingParams), "trainer"
// is TrainerConfig (trainer/trainer_config.h), the tiny model's shape is model/'s TinyLlamaOptions.
// "reward" is reward/'s RewardSpec ({"name", "config"}, the config in the named reward's own schema,
// checked when the recipe is read), "data" is the controller's DatasetConfig.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "controller/dataset.h"
#include "env/episode.h"
#include "core/config.h"
#include "generator/engine.h"
#include "generator/generator_config.h"
#include "model/llama_config.h"
#include "reward/registry.h"
#include "trainer/trainer_config.h"

namespace llamarl::controller {

struct ModelRecipe {
  std::string source = "tiny";  // "tiny": a random tiny Llama; "hf": an HF checkpoint directory
  std::string path;             // the HF directory (source "hf")
  // Source "tiny": the shape (keys hidden_size, num_layers, num_heads, num_kv_heads,
  // intermediate_size, max_position_embeddings; the context defaults to 512 here), over the byte
  // tokenizer's vocabulary and EOS ids, which the job sets.
  TinyLlamaOptions tiny = [] {
    TinyLlamaOptions o;
    o.max_position_embeddings = 512;
    return o;
  }();
  int64_t init_seed = 0;  // seed of the random init (source "tiny")

  static ModelRecipe FromJson(const Json& j, const std::string& path);
};

struct TokenizerRecipe {
  std::string source = "tiny";  // "tiny": the 259-token byte tokenizer; "hf": tokenizer.json in `path`
  std::string path;             // default: model.path

  static TokenizerRecipe FromJson(const Json& j, const std::string& path);
};

struct PlacementRecipe {
  std::string mode = "split";  // "split": disjoint generator and trainer ranks; "colocated": every rank does both
  int generator_ranks = 0;     // split: ranks [0, G) generate; 0 = half of the world (at least 1)
  int trainer_ranks = 0;       // split: the rest train; 0 = world - G
  int tp_size = 1;             // tensor-parallel degree of each generator replica
  // Colocated: the trainer state goes to host memory while the rank generates and the KV cache is
  // freed while it trains. Defaults to true for colocated and false for split (where no rank holds
  // both); true with split is an error.
  bool offload = false;

  static PlacementRecipe FromJson(const Json& j, const std::string& path);
};

struct RolloutRecipe {
  int64_t prompts_per_step = 8;  // groups per training step (global)
  int64_t group_size = 4;        // samples per prompt (the GRPO group)
  // The keys temperature, top_k, top_p, max_new_tokens (32 here) and stop_strings, read by the
  // generator (ReadSamplingParams); each request sets its own seed and EOS ids.
  SamplingParams sampling = [] {
    SamplingParams p;
    p.max_new_tokens = 32;
    return p;
  }();

  static RolloutRecipe FromJson(const Json& j, const std::string& path);
};

struct SftRecipe {
  int64_t steps = 0;       // warm-start optimizer steps on reference responses before RL (0 = none)
  int64_t batch_size = 16;  // examples per step (global)
  // The warm start's trainer: the recipe's "trainer" section with the key "trainer" of this section
  // merged over it (overrides such as {"optimizer": {"lr": 1e-3}}), scoring at temperature 1, a
  // schedule without total_steps decaying over `steps`, no separate critic (RL's critic starts from
  // the warm start's result). An error names the key as the recipe has it: trainer.X, or
  // sft.trainer.X when the merge causes it. Read only when steps > 0.
  TrainerConfig trainer;

  // `trainer` is the recipe's "trainer" section (null when absent).
  static SftRecipe FromJson(const Json& j, const std::string& path, const Json& trainer);
};

struct EvalRecipe {
  int64_t every = 0;           // evaluate every N RL steps, at the start and at the end (0 = start and end only)
  int64_t num_prompts = 32;    // held-out prompts per evaluation (at most the eval split)
  int64_t max_new_tokens = 0;  // 0 = rollout.max_new_tokens
  int64_t samples = 0;         // k > 0: also k samples per prompt at rollout.temperature, for pass@k and mean@k
  double pass_threshold = 1.0;  // a sample passes (pass@k) when its reward is at least this

  static EvalRecipe FromJson(const Json& j, const std::string& path);
};

struct CheckpointRecipe {
  int64_t every = 0;  // save every N RL steps and at the end (0 = only at the end)
  int64_t keep = 2;   // newest checkpoints kept

  static CheckpointRecipe FromJson(const Json& j, const std::string& path);
};

// Asynchronous (split) runs: what the controller does with a finished group that is older than the
// bound when its training step comes. Staleness is bounded at admission (controller/batch_planner.h),
// so this is the rare group that outlived the bound while it generated; by default it is trained on
// with its per-token importance correction, because dropping the groups that take longest would
// train the policy on short answers.
struct AsyncRecipe {
  // "train": train on it as sampled (importance-corrected); "drop": discard it and wait for another
  // (the batch stays full); "recompute": rescore its log-probs under the current policy, then train.
  std::string on_stale = "train";
  // Reproducible split runs: batches in admission order, admissions to the replicas in turn, and
  // each generator applies a weight push (and runs an evaluation) only between rounds of generation,
  // never under a running group, so a group is sampled with one version and a run's figures do not
  // depend on timing. Checkpoints then carry the finished groups waiting for the trainer, and a
  // resumed run reproduces the uninterrupted one row for row. Costs overlap: a push waits for the
  // round in progress (max_policy_lag >= 1 still overlaps generation of step s + lag with training).
  bool deterministic = false;

  static AsyncRecipe FromJson(const Json& j, const std::string& path);
};

// DAPO (Yu et al. 2025, arXiv:2503.14476): the parts that live outside the loss. Clip-higher and
// token-level aggregation are trainer keys (trainer.grpo.eps_high, trainer.aggregation).
//
// Dynamic sampling: a group whose rewards are all equal has zero advantage for every sample, so it
// adds nothing to the gradient but still dilutes the batch. It is discarded and another prompt is
// generated in its place until the batch holds rollout.prompts_per_step groups with signal. Split
// placement: the controller discards it when it plans a step and gives its admission back, so a
// replacement is admitted at once (controller/batch_planner.h). Colocated: each replica generates
// replacements in rounds until it holds its share (controller/colocated_worker.h). Either way a
// step generates at most max_gen_batches x prompts_per_step groups; one that needs more ends the
// run with an error naming this key (the task is then too easy or too hard for the policy).
//
// Overlong: "penalty" adds overlong_penalty_factor x R_length (reward/overlong.h; DAPO's soft
// overlong punishment over the last overlong_buffer tokens before rollout.max_new_tokens) to each
// sample's reward; "filter" keeps truncated samples (finish reason "length") out of the loss, their
// rewards still counting in their group's advantage statistics (DAPO's overlong filtering).
struct DapoRecipe {
  bool dynamic_sampling = false;
  int64_t max_gen_batches = 10;  // verl's max_num_gen_batches
  std::string overlong = "off";  // "off", "penalty" or "filter"
  int64_t overlong_buffer = 0;   // L_cache in tokens ("penalty": required, in [1, rollout.max_new_tokens])
  double overlong_penalty_factor = 1.0;

  static DapoRecipe FromJson(const Json& j, const std::string& path);
};

// Controller-side parts of RL algorithms (the losses are trainer.algorithm's).
struct AlgorithmRecipe {
  DapoRecipe dapo;

  static AlgorithmRecipe FromJson(const Json& j, const std::string& path);
};

// Every wait of the job has one of these limits; an expired wait is an error naming the rank and the
// phase (never a hang).
struct TimeoutRecipe {
  double startup_s = 600;  // waits before the first RL step (model load, SFT warm-start)
  double step_s = 300;     // any single wait during RL (rollouts, weight pushes, commands)

  static TimeoutRecipe FromJson(const Json& j, const std::string& path);
};

// Test-only fault injection (tests/controller): rank `kill_rank` raises SIGKILL on itself when it
// reaches RL step `kill_at_step`; at RL step `nan_at_step` every reward the trainers see is NaN, so
// the loss and gradient are not finite and the step is skipped and counted. Off by default; no
// recipe under recipes/ sets them.
struct DebugRecipe {
  int kill_rank = -1;
  int64_t kill_at_step = -1;
  int64_t nan_at_step = -1;

  static DebugRecipe FromJson(const Json& j, const std::string& path);
};

// How tensors move between ranks (core/device.h, core/routed_communicator.h): control messages and
// rollouts always go over mpi (local for one process); tensors over `backend`.
struct CommRecipe {
  std::string backend = "auto";  // "auto": nccl on cuda across ranks, else mpi; or "mpi", "nccl", "local"

  static CommRecipe FromJson(const Json& j, const std::string& path);
};

// What the run writes besides metrics.jsonl, trace and checkpoints.
struct LoggingRecipe {
  bool tensorboard = true;  // RUN_DIR/events.out.tfevents.*: the metrics as scalars, the recipe as text

  static LoggingRecipe FromJson(const Json& j, const std::string& path);
};

struct RecipeConfig {
  ModelRecipe model;
  TokenizerRecipe tokenizer;
  DatasetConfig data;
  reward::RewardSpec reward;  // {"name": ..., "config": {...}} (reward/registry.h)
  // Multi-turn rollouts (env/episode.h): {"name": "calculator", "config": {...}, "max_turns": 4, ...};
  // absent = single-turn. With an environment, the episode's reward is the environment's; `reward`
  // is still read (and validated) but scores nothing.
  env::EpisodeConfig env;
  PlacementRecipe placement;
  std::string mode = "async";  // "async" (bounded staleness) or "sync" (the colocated baseline)
  int64_t max_policy_lag = 1;  // a group starts only while at most (lag + 1) batches are live
  AsyncRecipe async;
  AlgorithmRecipe algorithm;
  RolloutRecipe rollout;
  GeneratorConfig generator;  // the engine's options (max_slots, KV cache budget) and weight dtype
  // RL's trainer: scoring at the temperature the rollouts are sampled at (greedy rollouts record
  // log-probs at 1; a trainer.temperature that differs is an error), a schedule without total_steps
  // decaying over `steps`. The job sets sampled_vocab_size and device.
  TrainerConfig trainer;
  SftRecipe sft;
  EvalRecipe eval;
  CheckpointRecipe checkpoint;
  TimeoutRecipe timeouts;
  DebugRecipe debug;
  LoggingRecipe logging;
  // Where each rank's tensors live (core/device.h): "auto" (cuda when the build has CUDA and a GPU is
  // visible, else cpu), "cpu" or "cuda" (each rank takes the GPU of its node-local rank).
  std::string device = "auto";
  CommRecipe comm;
  std::string run_dir = "runs/run";
  int64_t steps = 20;  // RL steps
  int64_t seed = 0;    // sampling seed of the run (rollouts draw from (seed, step, group, sample))

  Json source;  // the recipe JSON after overrides, as parsed (written to RUN_DIR/recipe.json)

  static RecipeConfig FromJson(const Json& j, const std::string& path = "");
};

// Reads `file`, applies every `key=value` override in order, and parses the result.
RecipeConfig LoadRecipe(const std::string& file, const std::vector<std::string>& overrides = {});

// The roles of a world of `world_size` ranks under a placement, validated with errors that name the
// recipe key, the value and the fix.
struct Placement {
  bool split = true;
  int world_size = 1;
  int num_generators = 0;  // split: ranks [0, num_generators); colocated: every rank
  int num_trainers = 0;    // split: ranks [num_generators, world); colocated: every rank
  int tp_size = 1;
  bool offload = false;  // colocated only: see PlacementRecipe::offload

  int NumReplicas() const { return num_generators / tp_size; }
  int FirstTrainer() const { return split ? num_generators : 0; }  // the controller's rank
  bool IsGenerator(int rank) const { return !split || rank < num_generators; }
  bool IsTrainer(int rank) const { return !split || rank >= num_generators; }
  // World ranks of generator replica r (tp_size consecutive ranks).
  std::vector<int> ReplicaRanks(int replica) const;
  int ReplicaOf(int rank) const;  // -1 for a rank that does not generate
  std::vector<int> TrainerRanks() const;
};

Placement ResolvePlacement(const PlacementRecipe& recipe, int world_size);

// The resolved recipe: the parsed JSON plus what the job derived (placement, world size).
Json ResolvedRecipeJson(const RecipeConfig& recipe, const Placement& placement);

}  // namespace llamarl::controller
