#include "controller/recipe.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/test_util.h"

namespace llamarl::controller {
namespace {


#define EXPECT_CONTAINS(text, part)                                              \
  do {                                                                           \
    const std::string text_ = (text);                                            \
    EXPECT_NE(text_.find(part), std::string::npos) << "'" << part << "' not in: " << text_; \
  } while (0)

// The error text of `f`, or "(no error)".
template <typename F>
std::string ErrorOf(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

Json MinimalRecipe() {
  return Json::parse(R"({
    "data": {"source": "arithmetic", "arithmetic": {"num_items": 50}, "eval": {"num_items": 10}},
    "reward": {"name": "arithmetic"},
    "run_dir": "runs/x"
  })");
}

TEST(RecipeConfig, DefaultsAndSections) {
  Json j = MinimalRecipe();
  j["rollout"] = {{"group_size", 8}, {"temperature", 0.7}};
  j["placement"] = {{"mode", "colocated"}, {"tp_size", 2}};
  j["trainer"] = {{"algorithm", "grpo"}};
  RecipeConfig c = RecipeConfig::FromJson(j);
  EXPECT_EQ(c.rollout.group_size, 8);
  EXPECT_DOUBLE_EQ(c.rollout.sampling.temperature, 0.7);
  EXPECT_EQ(c.rollout.prompts_per_step, 8);  // default kept
  EXPECT_EQ(c.placement.mode, "colocated");
  EXPECT_EQ(c.mode, "async");
  EXPECT_EQ(c.max_policy_lag, 1);
  EXPECT_EQ(c.data.source, "arithmetic");
  EXPECT_EQ(c.trainer.algorithm, "grpo");
  EXPECT_DOUBLE_EQ(c.trainer.temperature, 0.7) << "the trainer scores at the rollouts' temperature";
  EXPECT_EQ(c.run_dir, "runs/x");
  EXPECT_EQ(c.device, "auto");
  EXPECT_EQ(c.comm.backend, "auto");
}

TEST(RecipeConfig, ErrorsNameThePathAndListKnownKeys) {
  Json j = MinimalRecipe();
  j["rollout"] = {{"group_sise", 8}};
  std::string e = ErrorOf([&] { RecipeConfig::FromJson(j); });
  EXPECT_CONTAINS(e, "rollout: unknown key 'group_sise'");
  EXPECT_CONTAINS(e, "group_size");

  j = MinimalRecipe();
  j["rollout"] = {{"group_size", 0}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "rollout.group_size");

  j = MinimalRecipe();
  j["stepz"] = 3;
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "unknown key 'stepz'");

  j = MinimalRecipe();
  j["reward"] = {{"name", "gsm9k"}};
  e = ErrorOf([&] { RecipeConfig::FromJson(j); });
  EXPECT_CONTAINS(e, "gsm9k");
  EXPECT_CONTAINS(e, "gsm8k");

  j = MinimalRecipe();
  j["comm"] = {{"backend", "gloo"}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "comm.backend: expected one of 'auto', 'mpi', 'nccl'");
  j = MinimalRecipe();
  j["device"] = "cuda:1";
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "device: expected one of 'auto', 'cpu', 'cuda'");

  j = MinimalRecipe();
  j.erase("reward");
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "reward: missing");
}

TEST(RecipeConfig, ComponentSectionsAreReadIntoTheComponentsStructs) {
  Json j = MinimalRecipe();
  RecipeConfig c = RecipeConfig::FromJson(j);
  EXPECT_EQ(c.rollout.sampling.max_new_tokens, 32) << "the recipe's default response length";
  EXPECT_EQ(c.model.tiny.max_position_embeddings, 512) << "the recipe's default context";
  EXPECT_EQ(c.generator.weight_dtype, "bfloat16");
  j["model"] = {{"hidden_size", 32}, {"num_layers", 1}};
  j["rollout"] = {{"top_k", 5}, {"stop_strings", {"\n"}}};
  j["generator"] = {{"max_slots", 12}, {"kv_cache_bytes", 123456}, {"kv_block_size", 8}, {"weight_dtype", "float32"}};
  c = RecipeConfig::FromJson(j);
  EXPECT_EQ(c.model.tiny.hidden_size, 32);
  EXPECT_EQ(c.model.tiny.num_layers, 1);
  EXPECT_EQ(c.rollout.sampling.top_k, 5);
  EXPECT_EQ(c.rollout.sampling.stop_strings, std::vector<std::string>{"\n"});
  EXPECT_EQ(c.generator.engine.max_slots, 12) << "read straight into the engine's own options";
  EXPECT_EQ(c.generator.engine.kv_cache.bytes, 123456);
  EXPECT_EQ(c.generator.engine.kv_cache.block_size, 8);
  EXPECT_EQ(c.generator.weight_dtype, "float32");
  EXPECT_FALSE(c.generator.engine.fp8_weights);
  j["generator"] = {{"weight_dtype", "float8_e4m3"}};
  c = RecipeConfig::FromJson(j);
  EXPECT_TRUE(c.generator.engine.fp8_weights) << "the engine holds the projections in fp8";
  EXPECT_EQ(c.generator.WeightDtype(), at::kBFloat16) << "and computes in bf16";

  j = MinimalRecipe();
  j["generator"] = {{"kv_cache_byte", 1}};
  std::string e = ErrorOf([&] { RecipeConfig::FromJson(j); });
  EXPECT_CONTAINS(e, "generator: unknown key 'kv_cache_byte'");
  EXPECT_CONTAINS(e, "kv_cache_bytes");
  j["generator"] = {{"kv_cache_bytes", "lots"}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "generator.kv_cache_bytes: expected");
  j = MinimalRecipe();
  j["trainer"] = {{"optimizer", {{"lr", "fast"}}}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "trainer.optimizer.lr: expected");
  j["trainer"] = 3;
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "trainer");
}

TEST(RecipeConfig, RewardSpecAndEngineOptionsAreTheComponentsOwn) {
  Json j = MinimalRecipe();
  j["generator"] = {{"max_slots", 0}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "generator.max_slots: expected an integer in [1, inf), got 0");
  j = MinimalRecipe();
  j["rollout"] = {{"max_slots", 8}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "rollout.max_slots: moved to generator.max_slots");
  j = MinimalRecipe();
  j["reward"] = {{"name", "gsm8k"}, {"config", {{"correct_score", "high"}}}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "reward.config.correct_score: expected a number");
  j["reward"] = {{"name", "gsm9k"}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "reward: unknown reward 'gsm9k'; known: ");
  j["reward"] = {{"name", "gsm8k"}, {"config", {{"correct_score", 2}}}};
  const RecipeConfig c = RecipeConfig::FromJson(j);
  EXPECT_EQ(c.reward.name, "gsm8k");
  EXPECT_EQ(c.reward.path, "reward");
  EXPECT_EQ(c.reward.Make()->Score({{"p", "#### 5", "#### 5"}}).scores[0], 2.0) << "the reward's own config, read by it";
}

TEST(RecipeConfig, TrainerScoresAtTheSamplingTemperatureAndRejectsAnotherOne) {
  Json j = MinimalRecipe();
  j["rollout"] = {{"temperature", 0.7}};
  EXPECT_DOUBLE_EQ(RecipeConfig::FromJson(j).trainer.temperature, 0.7);
  j["rollout"] = {{"temperature", 0}};  // greedy rollouts record log-probs at temperature 1
  EXPECT_DOUBLE_EQ(RecipeConfig::FromJson(j).trainer.temperature, 1.0);
  j["rollout"] = {{"temperature", 0.7}};
  j["trainer"] = {{"temperature", 0.7}};
  EXPECT_DOUBLE_EQ(RecipeConfig::FromJson(j).trainer.temperature, 0.7);
  j["trainer"] = {{"temperature", 1.0}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }),
                  "trainer.temperature (1) differs from the temperature the rollouts are sampled at (0.7)");
}

TEST(RecipeConfig, CosineScheduleDecaysOverThePhaseItDrives) {
  Json j = MinimalRecipe();
  j["steps"] = 500;
  j["sft"] = {{"steps", 80}, {"trainer", {{"optimizer", {{"lr", 0.01}}}}}};
  j["trainer"] = {{"schedule", {{"kind", "cosine"}}}, {"temperature", 1.0}};
  RecipeConfig c = RecipeConfig::FromJson(j);
  EXPECT_EQ(c.trainer.schedule.total_steps, 500);
  EXPECT_EQ(c.sft.trainer.schedule.total_steps, 80);
  EXPECT_DOUBLE_EQ(c.sft.trainer.temperature, 1.0);
  EXPECT_DOUBLE_EQ(c.sft.trainer.optimizer.lr, 0.01);
  j["trainer"]["schedule"]["total_steps"] = 300;  // an explicit value wins
  c = RecipeConfig::FromJson(j);
  EXPECT_EQ(c.trainer.schedule.total_steps, 300);
  EXPECT_EQ(c.sft.trainer.schedule.total_steps, 300);
  j["sft"]["trainer"] = {{"optimiser", {{"lr", 0.1}}}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "sft.trainer: unknown key 'optimiser'");
}

TEST(RecipeConfig, AsyncOnStaleChoicesAndErrors) {
  Json j = MinimalRecipe();
  EXPECT_EQ(RecipeConfig::FromJson(j).async.on_stale, "train") << "stale groups are trained on by default";
  j["async"] = {{"on_stale", "recompute"}};
  EXPECT_EQ(RecipeConfig::FromJson(j).async.on_stale, "recompute");
  j["async"] = {{"on_stale", "skip"}};
  std::string e = ErrorOf([&] { RecipeConfig::FromJson(j); });
  EXPECT_CONTAINS(e, "async.on_stale");
  EXPECT_CONTAINS(e, "skip");
  EXPECT_CONTAINS(e, "recompute");
  j["async"] = {{"on_stal", "drop"}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "unknown key 'on_stal'");
}

TEST(RecipeConfig, DapoKeysDefaultOffAndNameTheirPathOnBadValues) {
  Json j = MinimalRecipe();
  const DapoRecipe off = RecipeConfig::FromJson(j).algorithm.dapo;
  EXPECT_FALSE(off.dynamic_sampling);
  EXPECT_EQ(off.overlong, "off");
  j["algorithm"] = {{"dapo", {{"dynamic_sampling", true}, {"max_gen_batches", 4}, {"overlong", "penalty"},
                              {"overlong_buffer", 8}, {"overlong_penalty_factor", 0.5}}}};
  const DapoRecipe on = RecipeConfig::FromJson(j).algorithm.dapo;
  EXPECT_TRUE(on.dynamic_sampling);
  EXPECT_EQ(on.max_gen_batches, 4);
  EXPECT_EQ(on.overlong_buffer, 8);
  EXPECT_EQ(on.overlong_penalty_factor, 0.5);
  const auto error_with = [&](const char* key, const Json& value) {
    Json k = j;
    k["algorithm"]["dapo"][key] = value;
    return ErrorOf([&] { RecipeConfig::FromJson(k); });
  };
  EXPECT_CONTAINS(error_with("max_gen_batches", 0), "algorithm.dapo.max_gen_batches");
  EXPECT_CONTAINS(error_with("overlong", "truncate"), "algorithm.dapo.overlong");
  EXPECT_CONTAINS(error_with("overlong", "truncate"), "filter");
  EXPECT_CONTAINS(error_with("overlong_penalty_factor", -1), "algorithm.dapo.overlong_penalty_factor");
  EXPECT_CONTAINS(error_with("overlong_buffer", 33), "algorithm.dapo.overlong_buffer (33) must be in [1, "
                                                     "rollout.max_new_tokens (32)]");
  EXPECT_CONTAINS(error_with("overlong_buffer", 0), "algorithm.dapo.overlong_buffer (0)");
  EXPECT_CONTAINS(error_with("max_rounds", 3), "unknown key 'max_rounds'");
  j["algorithm"]["dapo"]["overlong"] = "filter";
  j["algorithm"]["dapo"]["overlong_buffer"] = 0;
  EXPECT_EQ(RecipeConfig::FromJson(j).algorithm.dapo.overlong, "filter") << "the buffer is the penalty's only";
  j["rollout"] = {{"group_size", 1}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }),
                  "algorithm.dapo.dynamic_sampling needs rollout.group_size >= 2 (got 1)");
  j["algorithm"] = {{"dapos", Json::object()}};
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "unknown key 'dapos'");
}

TEST(RecipeConfig, SyncModeNeedsColocatedPlacement) {
  Json j = MinimalRecipe();
  j["mode"] = "sync";
  EXPECT_CONTAINS(ErrorOf([&] { RecipeConfig::FromJson(j); }), "set placement.mode to colocated");
  j["placement"] = {{"mode", "colocated"}};
  EXPECT_EQ(RecipeConfig::FromJson(j).mode, "sync");
}

TEST(LoadRecipe, OverridesApplyBeforeParsing) {
  std::string dir = testing::MakeTempDir("recipe");
  std::string file = dir + "/r.json";
  std::ofstream(file) << MinimalRecipe().dump();
  RecipeConfig c = LoadRecipe(file, {"steps=7", "rollout.max_new_tokens=12", "placement.mode=colocated"});
  EXPECT_EQ(c.steps, 7);
  EXPECT_EQ(c.rollout.sampling.max_new_tokens, 12);
  EXPECT_EQ(c.placement.mode, "colocated");
  EXPECT_EQ(c.source["steps"], 7);
  EXPECT_CONTAINS(ErrorOf([&] { LoadRecipe(file, {"rollout.top_p=2"}); }), "rollout.top_p");
}

TEST(ShippedRecipes, ParseAndResolveOnTwoRanks) {
  for (const char* name : {"tiny_grpo.json", "tiny_ppo.json", "tiny_gspo.json", "tiny_cispo.json", "tiny_dapo.json"}) {
    SCOPED_TRACE(name);
    RecipeConfig c = LoadRecipe(std::string(LLAMARL_SOURCE_DIR) + "/recipes/" + name);
    Placement p = ResolvePlacement(c.placement, 2);
    EXPECT_EQ(p.num_generators + (p.split ? p.num_trainers : 0), 2);
  }
}

TEST(ResolvePlacement, SplitDefaultsAndValidation) {
  PlacementRecipe r;
  Placement p = ResolvePlacement(r, 3);
  EXPECT_TRUE(p.split);
  EXPECT_EQ(p.num_generators, 1);
  EXPECT_EQ(p.num_trainers, 2);
  EXPECT_EQ(p.FirstTrainer(), 1);
  EXPECT_EQ(p.TrainerRanks(), (std::vector<int>{1, 2}));
  EXPECT_TRUE(p.IsGenerator(0));
  EXPECT_FALSE(p.IsGenerator(1));
  EXPECT_EQ(p.ReplicaOf(2), -1);

  EXPECT_CONTAINS(ErrorOf([&] { ResolvePlacement(r, 1); }), "needs at least 2 ranks");
  r.generator_ranks = 2;
  r.trainer_ranks = 2;
  EXPECT_CONTAINS(ErrorOf([&] { ResolvePlacement(r, 3); }), "must equal the number of ranks (3)");
  r.trainer_ranks = 0;
  r.generator_ranks = 3;
  EXPECT_CONTAINS(ErrorOf([&] { ResolvePlacement(r, 3); }), "leaves no trainer rank");
  r.generator_ranks = 3;
  r.tp_size = 2;
  EXPECT_CONTAINS(ErrorOf([&] { ResolvePlacement(r, 4); }), "placement.tp_size (2) must divide");
}

TEST(ResolvePlacement, ColocatedReplicas) {
  PlacementRecipe r;
  r.mode = "colocated";
  r.tp_size = 2;
  Placement p = ResolvePlacement(r, 4);
  EXPECT_FALSE(p.split);
  EXPECT_EQ(p.NumReplicas(), 2);
  EXPECT_EQ(p.ReplicaRanks(1), (std::vector<int>{2, 3}));
  EXPECT_EQ(p.ReplicaOf(3), 1);
  EXPECT_TRUE(p.IsTrainer(0) && p.IsGenerator(0));
  EXPECT_EQ(ResolvePlacement(PlacementRecipe{"colocated"}, 1).num_trainers, 1);
  r.generator_ranks = 1;
  EXPECT_CONTAINS(ErrorOf([&] { ResolvePlacement(r, 4); }), "split placement only");
}

}  // namespace
}  // namespace llamarl::controller
