// End-to-end training runs under mpirun -np 2 and -np 3 with a tiny model and a few steps: split
// placement with one or two generators and one or two trainers, colocated placement, the synchronous
// baseline, the staleness bound with each async.on_stale choice, and resume. Each checks what
// the run wrote (metrics.jsonl, checkpoints, trace) against what the recipe asked for.
#include "controller/length_histogram.h"
#include "controller/loop.h"
#include "controller/trainer_side.h"
#include "report/metrics.h"
#include "report/trace.h"
#include "tests/controller/training_test_util.h"
#include "tests/report/event_file_reader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

namespace llamarl::controller {
namespace {

using training_test::ExpectConsecutiveSteps;
using training_test::ExpectFullBatches;
using training_test::TrainingTest;
namespace fs = std::filesystem;

std::vector<std::string> EventFiles(const std::string& run_dir) {
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(run_dir))
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) files.push_back(e.path().string());
  return files;
}

// eval.samples = k: the eval row also has pass@k and mean@k over the same prompts; with 0/1 rewards
// mean@k (the fraction of samples that pass) cannot exceed pass@k (the fraction of prompts with one).
void ExpectPassAtK(const Json& row, int64_t k) {
  ASSERT_TRUE(row.contains("eval_pass_at_k")) << row.dump();
  EXPECT_EQ(row["eval_samples"], k);
  const double pass = row["eval_pass_at_k"].get<double>(), mean = row["eval_mean_at_k"].get<double>();
  EXPECT_GE(mean, 0.0);
  EXPECT_LE(mean, pass);
  EXPECT_LE(pass, 1.0);
}

TEST_F(TrainingTest, SplitAsyncTrainsFullBatchesAndDropsNothingByDefault) {
  std::vector<Json> rl = RunSplit("split", {"max_policy_lag=1", "eval.samples=3"}, 4);
  const std::string dir = last_run_dir_;
  for (const Json& row : rl) {
    EXPECT_EQ(row["dropped_stale"], 0) << row.dump();
    EXPECT_EQ(row["trainer_tokens"].size(), size_t(world_->Size() - 1)) << "1 generator, the rest train";
    EXPECT_LE(row["ready_queue"].get<int64_t>(), 2 * 4) << "admission keeps at most (lag + 1) batches live";
  }
  EXPECT_TRUE(rl.front().contains("eval_reward_mean")) << "the evaluation before RL lands in the first row";
  EXPECT_TRUE(rl.back().contains("eval_reward_mean")) << "the final evaluation is waited for";
  ExpectPassAtK(rl.front(), 3);
  ExpectPassAtK(rl.back(), 3);
  EXPECT_TRUE(fs::exists(dir + "/recipe.json"));
  EXPECT_TRUE(fs::exists(dir + "/trace/rank_0.jsonl"));
  EXPECT_TRUE(fs::exists(dir + "/trace/rank_1.jsonl"));
  EXPECT_EQ(LatestCheckpoint(dir), dir + "/checkpoints/step_4");
  if (world_->Rank() == 0) {
    const Json summary = ReadJsonFile(dir + "/summary.json");
    EXPECT_EQ(summary["dropped_stale_total"], 0);
    const LengthHistogram trained = LengthHistogram::FromJson(summary.at("response_lengths"), "summary");
    EXPECT_EQ(trained.Count(), 4 * 4 * 3) << "the trained lengths count every trained sample";
    const LengthHistogram staleness = LengthHistogram::FromJson(summary.at("staleness_tokens"), "summary");
    int64_t tokens = 0;
    for (const Json& row : rl) tokens += row["tokens"].get<int64_t>();
    EXPECT_EQ(staleness.Count(), tokens) << "one staleness count per trained token";
  }
  // The TensorBoard event file holds the same scalars at the same steps, and the recipe as text.
  std::vector<std::string> event_files = EventFiles(dir);
  ASSERT_EQ(event_files.size(), 1u);
  std::map<int64_t, std::map<std::string, float>> scalars;
  bool has_recipe = false;
  for (const auto& e : testing::ReadEventFile(event_files[0])) {
    for (const auto& [tag, value] : e.scalars) scalars[e.step][tag] = value;
    has_recipe |= e.texts.count("recipe") && e.texts.at("recipe").find("\"max_policy_lag\": 1") != std::string::npos;
  }
  EXPECT_TRUE(has_recipe);
  for (const Json& row : rl) {
    const int64_t step = row["step"].get<int64_t>();
    for (const char* key : {"reward_mean", "loss", "staleness_mean", "train_s", "policy_version", "eval_reward_mean"})
      if (row.contains(key)) EXPECT_EQ(scalars[step].at(key), row[key].get<float>()) << key << " at step " << step;
  }
}

// Where the bound is enforced at training time (on_stale "drop"), no trained token is older than
// max_policy_lag versions, and the batches stay full: a dropped group's admission is given back.
TEST_F(TrainingTest, DropKeepsEveryTrainedTokenWithinTheBoundAndBatchesFull) {
  std::vector<Json> rl = RunSplit("drop", {"max_policy_lag=1", "async.on_stale=drop"}, 4);
  for (const Json& row : rl) {
    EXPECT_LE(row["staleness_max"].get<int64_t>(), 1) << row.dump();
    EXPECT_EQ(row["stale_groups"], 0) << row.dump();
  }
}

TEST_F(TrainingTest, RecomputeCountsEveryStaleGroupItRescores) {
  std::vector<Json> rl = RunSplit("recompute", {"max_policy_lag=1", "async.on_stale=recompute"}, 3);
  for (const Json& row : rl) {
    EXPECT_EQ(row["stale_trained"], 0) << "no stale group is trained as sampled: " << row.dump();
    EXPECT_EQ(row["dropped_stale"], 0) << row.dump();
  }
}

// Two generator replicas feed one trainer (np3 only; np2 has one of each, np3's default is one
// generator and two trainers, covered above).
TEST_F(TrainingTest, TwoGeneratorsFeedOneTrainer) {
  if (world_->Size() != 3) GTEST_SKIP() << "needs 3 ranks";
  RunSplit("two_generators", {"placement.generator_ranks=2"}, 3);
  if (world_->Rank() != 0) return;
  const Json summary = ReadJsonFile(last_run_dir_ + "/summary.json");
  ASSERT_EQ(summary["generators"].size(), 2u);
  int64_t sent = 0;
  for (const Json& g : summary["generators"]) sent += g["groups_sent"].get<int64_t>();
  EXPECT_EQ(sent, 3 * 4) << "each trained group was sent once, by one of the replicas";
}

TEST_F(TrainingTest, OnPolicyBoundNeverTrainsOnStaleTokens) {
  std::vector<Json> rl = RunSplit("lag0", {"max_policy_lag=0", "logging.tensorboard=false"}, 3);
  EXPECT_TRUE(EventFiles(last_run_dir_).empty()) << "logging.tensorboard false writes no event file";
  for (const Json& row : rl) {
    EXPECT_EQ(row["staleness_max"], 0) << row.dump();
    EXPECT_EQ(row["staleness_mean"], 0.0) << row.dump();
    EXPECT_EQ(row["dropped_stale"], 0) << "admission alone keeps lag 0 on-policy: " << row.dump();
  }
}

TEST_F(TrainingTest, ColocatedAsyncAndSyncBaselineTrainTheSameSteps) {
  for (const char* mode : {"async", "sync"}) {
    SCOPED_TRACE(mode);
    RecipeConfig recipe = TinyRecipe(RunDir(std::string("colocated_") + mode),
                                     {"placement.mode=colocated", std::string("mode=") + mode, "steps=3", "eval.samples=2"});
    std::vector<Json> rl = Run(recipe);
    ExpectConsecutiveSteps(rl, 2, 3);
    for (const Json& row : rl) EXPECT_EQ(row["staleness_max"], 0) << "colocated rollouts are on-policy";
    EXPECT_TRUE(rl.front().contains("eval_reward_mean")) << "the evaluation before RL lands in the first row";
    EXPECT_EQ(rl.front()["eval_reward_mean"], rl.front()["eval_start_reward_mean"]);
    EXPECT_TRUE(rl.back().contains("eval_reward_mean"));
    ExpectPassAtK(rl.front(), 2);
    ExpectPassAtK(rl.back(), 2);
    if (world_->Rank() == 0) {  // the controller's summary counts every rank's trained samples by length
      int64_t samples = 0;
      for (const Json& row : rl) samples += row["samples"].get<int64_t>();
      const Json summary = ReadJsonFile(recipe.run_dir + "/summary.json");
      const LengthHistogram lengths = LengthHistogram::FromJson(summary.at("response_lengths"), "summary");
      EXPECT_EQ(lengths.Count(), samples);
      EXPECT_LE(lengths.Max(), 4) << "rollout.max_new_tokens is 4";
      EXPECT_GT(lengths.Mean(), 0.0);
    }
  }
}

// fp8 generator weights: split async receives the DDMA pushes (the SFT warm start's, then every
// step's) as e4m3fn with per-row scales, its projections written in place; the colocated synchronous
// baseline sends bf16, which the engine quantises on receipt. Both train every step on full batches.
TEST_F(TrainingTest, Fp8GeneratorWeightsTrainSplitAndColocated) {
  RunSplit("fp8_split", {"generator.weight_dtype=float8_e4m3"}, 2);
  RecipeConfig recipe = TinyRecipe(RunDir("fp8_sync"), {"placement.mode=colocated", "mode=sync", "steps=2",
                                                        "generator.weight_dtype=float8_e4m3"});
  ASSERT_TRUE(recipe.generator.engine.fp8_weights);
  std::vector<Json> rl = Run(recipe);
  ExpectConsecutiveSteps(rl, 2, 2);
  for (const Json& row : rl) EXPECT_EQ(row["samples"], 4 * 3) << row.dump();
}

// Multi-turn episodes under either placement: the SFT warm start on the calculator's reference
// episodes, then rollouts that call it; every step records turns per episode and tool latency, and
// the held-out episodes are evaluated before and after RL.
TEST_F(TrainingTest, EpisodesWithACalculatorRunSplitAndColocated) {
  const std::string env = R"(env={"name": "calculator", "config": {"call_format": "expression", "call_open": "<c>",
      "call_close": "</c>"}, "max_turns": 2, "max_turn_tokens": 8, "max_tokens": 24, "observation_prefix": "<r>",
      "observation_suffix": "</r>", "num_workers": 1})";
  for (const char* placement : {"split", "colocated"}) {
    SCOPED_TRACE(placement);
    RecipeConfig recipe = TinyRecipe(RunDir(std::string("episodes_") + placement),
                                     {env, std::string("placement.mode=") + placement, "steps=2",
                                      "rollout.max_new_tokens=24", R"(rollout.stop_strings=["</c>"])"});
    std::vector<Json> rl = Run(recipe);
    ExpectConsecutiveSteps(rl, 2, 2);
    for (const Json& row : rl) {
      EXPECT_EQ(row["samples"], 4 * 3) << row.dump();
      EXPECT_GE(row["turns_mean"].get<double>(), 1.0) << row.dump();
      EXPECT_LE(row["turns_mean"].get<double>(), 2.0) << row.dump();
      EXPECT_GE(row["tool_s_max"].get<double>(), row["tool_s_mean"].get<double>()) << row.dump();
    }
    EXPECT_TRUE(rl.front().contains("eval_reward_mean"));
    EXPECT_TRUE(rl.back().contains("eval_reward_mean"));
  }
}

// Colocated runs are deterministic (phases in lockstep, seeded sampling, reductions in a fixed
// order) and the offload round trip is bit-exact, so offloading must not change one figure of the
// run; only the swap's own metrics differ. The KL reference makes the reference policy part of the
// offloaded state; a reward that random responses often earn (a letter or digit anywhere) makes the
// advantages, hence the updates, non-trivial.
TEST_F(TrainingTest, ColocatedOffloadChangesNothingButMemory) {
  std::map<bool, std::vector<Json>> runs;
  for (bool offload : {true, false}) {
    RecipeConfig recipe =
        TinyRecipe(RunDir(offload ? "offload_on" : "offload_off"),
                   {"placement.mode=colocated", std::string("placement.offload=") + (offload ? "true" : "false"),
                    "steps=3", "trainer.kl.coef=0.05",
                    R"(reward={"name": "format", "config": {"pattern": "[a-z0-9]"}})"});
    runs[offload] = Run(recipe);
    ExpectConsecutiveSteps(runs[offload], 2, 3);
    if (world_->Rank() == 0) {  // rank 0 merged trace.json
      bool traced = false;
      for (const Json& e : ReadTraceJson(recipe.run_dir + "/trace.json")) traced |= e.value("name", "") == "offload";
      EXPECT_EQ(traced, offload) << "the swaps are the trace's offload phases";
    }
  }
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE("rl step " + std::to_string(i));
    const Json& on = runs[true][i];
    const Json& off = runs[false][i];
    for (const char* key : {"reward_mean", "reward_std", "loss", "kl", "entropy", "grad_norm", "iw_mean", "tokens",
                            "samples", "response_len_mean", "policy_version"})
      EXPECT_EQ(on[key], off[key]) << key;
    EXPECT_EQ(on.value("eval_reward_mean", Json()), off.value("eval_reward_mean", Json()));
    EXPECT_GT(off["reward_std"].get<double>(), 0.0) << "the rewards vary, so the policy loss is not zero";
    // Off: everything stays resident. On: each phase holds only what it uses, and what goes to
    // host is exactly the trainer state that stays resident without offload.
    EXPECT_FALSE(off.contains("offload_s"));
    EXPECT_GT(off["gen_trainer_state_bytes"].get<int64_t>(), 0);
    EXPECT_GT(off["train_kv_cache_bytes"].get<int64_t>(), 0);
    EXPECT_GE(on["offload_s"].get<double>(), 0.0);
    EXPECT_EQ(on["gen_trainer_state_bytes"], 0);
    EXPECT_EQ(on["train_kv_cache_bytes"], 0);
    EXPECT_EQ(on["offload_bytes"], off["gen_trainer_state_bytes"]);
    EXPECT_EQ(on["train_trainer_state_bytes"], off["train_trainer_state_bytes"]);
    EXPECT_EQ(on["gen_kv_cache_bytes"], off["gen_kv_cache_bytes"]);
  }
}

TEST_F(TrainingTest, ResumeContinuesFromTheLastCheckpoint) {
  const std::string dir = RunDir("resume");
  RecipeConfig first = TinyRecipe(dir, {"steps=2", "checkpoint.every=1"});
  Run(first);
  EXPECT_EQ(LatestCheckpoint(dir), dir + "/checkpoints/step_2");
  RecipeConfig second = TinyRecipe("unused", {"steps=4", "checkpoint.every=1"});
  std::vector<Json> rl = Run(second, RunOptions{dir});
  // Steps 0-1 from the first run, 2-3 from the resumed one; versions continue without the SFT rerun.
  ExpectConsecutiveSteps(rl, 2, 4);
  int64_t sft_rows = 0;
  for (const Json& row : ReadMetrics(dir + "/metrics.jsonl")) sft_rows += row.value("phase", "") == "sft";
  EXPECT_EQ(sft_rows, 2) << "a resumed run does not warm-start again";
  EXPECT_EQ(LatestCheckpoint(dir), dir + "/checkpoints/step_4");
  EXPECT_FALSE(fs::exists(dir + "/checkpoints/step_1")) << "checkpoint.keep (2) prunes older ones";
}

}  // namespace
}  // namespace llamarl::controller
