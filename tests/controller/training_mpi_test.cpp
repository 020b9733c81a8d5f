// End-to-end training runs under mpirun -np 2 and -np 3 with a tiny model and a few steps: split
// placement with one or two generators and one or two trainers, colocated placement, the synchronous
// baseline, the staleness bound with each async.on_stale choice, and resume. Each checks what
// the run wrote (metrics.jsonl, checkpoints, trace) against what the recipe asked for.
#include "controller/length_histogram.h"
#include "controller/loop.h"
#include "controller/metrics.h"
#include "controller/trace.h"
#include "controller/trainer_side.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

namespace llamarl::controller {
namespace {

namespace fs = std::filesystem;
constexpr auto kTimeout = std::chrono::seconds(120);

void ExpectConsecutiveSteps(const std::vector<Json>& rl, int64_t first_version, int64_t num_steps);
void ExpectFullBatches(const std::vector<Json>& rl);

class TrainingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = CreateCommunicator("mpi");
    ASSERT_GE(world_->Size(), 2) << "run under mpirun -np 2 or more";
  }

  // The same directory on every rank, fresh for each run.
  std::string RunDir(const std::string& name) {
    const std::string dir = std::string(LLAMARL_BINARY_DIR) + "/Testing/tmp/training_np" +
                            std::to_string(world_->Size()) + "_" + name;
    if (world_->Rank() == 0) fs::remove_all(dir);
    world_->Barrier()->Wait(kTimeout);
    return dir;
  }

  // A run of a few seconds: 2-digit-free addition, short responses, a small model.
  RecipeConfig TinyRecipe(const std::string& run_dir, std::vector<std::string> overrides = {}) {
    Json j = Json::parse(R"({
      "model": {"source": "tiny", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                "max_position_embeddings": 48, "init_seed": 3},
      "data": {"source": "arithmetic", "arithmetic": {"num_items": 400, "seed": 5, "max_operands": 2,
               "max_digits": 1, "operators": "+"}, "prompt": {"style": "plain", "plain_suffix": " "},
               "eval": {"num_items": 8}, "seed": 5},
      "reward": {"name": "arithmetic"},
      "rollout": {"prompts_per_step": 4, "group_size": 3, "max_new_tokens": 4, "max_slots": 32},
      "trainer": {"algorithm": "aipo", "optimizer": {"lr": 0.001}},
      "sft": {"steps": 2, "batch_size": 4},
      "eval": {"every": 2, "num_prompts": 8},
      "timeouts": {"startup_s": 120, "step_s": 60},
      "steps": 4, "seed": 7
    })");
    j["run_dir"] = run_dir;
    for (const auto& o : overrides) ApplyOverride(j, o);
    return RecipeConfig::FromJson(j);
  }

  // Runs the recipe and returns the RL rows of metrics.jsonl (read on every rank).
  std::vector<Json> Run(const RecipeConfig& recipe, const RunOptions& options = {}) {
    RunTraining(*world_, recipe, options);
    world_->Barrier()->Wait(kTimeout);
    std::vector<Json> rl;
    const std::string dir = options.resume_dir.empty() ? recipe.run_dir : options.resume_dir;
    for (const Json& row : ReadMetrics(dir + "/metrics.jsonl"))
      if (row.value("phase", "") == "rl") rl.push_back(row);
    return rl;
  }

  // A split run of `steps` RL steps after the tiny recipe's 2 SFT steps: one optimizer step per RL
  // step, each on a full batch (ExpectFullBatches).
  std::vector<Json> RunSplit(const std::string& name, std::vector<std::string> overrides, int64_t steps) {
    overrides.push_back("steps=" + std::to_string(steps));
    RecipeConfig recipe = TinyRecipe(RunDir(name), overrides);
    last_run_dir_ = recipe.run_dir;
    std::vector<Json> rl = Run(recipe);
    ExpectConsecutiveSteps(rl, /*first_version=*/2, steps);
    ExpectFullBatches(rl);
    return rl;
  }

  std::unique_ptr<Communicator> world_;
  std::string last_run_dir_;
};

void ExpectConsecutiveSteps(const std::vector<Json>& rl, int64_t first_version, int64_t num_steps) {
  ASSERT_EQ(int64_t(rl.size()), num_steps);
  for (int64_t i = 0; i < num_steps; ++i) {
    EXPECT_EQ(rl[size_t(i)]["rl_step"], i);
    EXPECT_EQ(rl[size_t(i)]["policy_version"], first_version + i + 1) << "one optimizer step per RL step";
    EXPECT_GT(rl[size_t(i)]["samples"].get<int64_t>(), 0);
    EXPECT_GE(rl[size_t(i)]["reward_mean"].get<double>(), 0.0);
    EXPECT_LE(rl[size_t(i)]["reward_mean"].get<double>(), 1.0);
  }
}

// Every step trains a full batch (4 groups of 3 samples), and with the default async.on_stale
// nothing is dropped: a group that outlived the bound is trained on and counted.
void ExpectFullBatches(const std::vector<Json>& rl) {
  for (const Json& row : rl) {
    EXPECT_EQ(row["samples"], 4 * 3) << row.dump();
    EXPECT_EQ(row["stale_groups"], row["stale_trained"].get<int64_t>() + row["stale_recomputed"].get<int64_t>())
        << "every trained group past the bound is counted under its choice: " << row.dump();
    int64_t routed = 0;
    for (const Json& t : row["trainer_tokens"]) {
      EXPECT_GT(t.get<int64_t>(), 0) << "every trainer rank gets groups: " << row.dump();
      routed += t.get<int64_t>();
    }
    EXPECT_EQ(routed, row["tokens"]) << "the groups routed are the groups trained on";
  }
}

TEST_F(TrainingTest, SplitAsyncTrainsFullBatchesAndDropsNothingByDefault) {
  std::vector<Json> rl = RunSplit("split", {"max_policy_lag=1"}, 4);
  const std::string dir = last_run_dir_;
  for (const Json& row : rl) {
    EXPECT_EQ(row["dropped_stale"], 0) << row.dump();
    EXPECT_EQ(row["trainer_tokens"].size(), size_t(world_->Size() - 1)) << "1 generator, the rest train";
    EXPECT_LE(row["ready_queue"].get<int64_t>(), 2 * 4) << "admission keeps at most (lag + 1) batches live";
  }
  EXPECT_TRUE(rl.front().contains("eval_reward_mean")) << "the evaluation before RL lands in the first row";
  EXPECT_TRUE(rl.back().contains("eval_reward_mean")) << "the final evaluation is waited for";
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
  std::vector<Json> rl = RunSplit("lag0", {"max_policy_lag=0"}, 3);
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
                                     {"placement.mode=colocated", std::string("mode=") + mode, "steps=3"});
    std::vector<Json> rl = Run(recipe);
    ExpectConsecutiveSteps(rl, 2, 3);
    for (const Json& row : rl) EXPECT_EQ(row["staleness_max"], 0) << "colocated rollouts are on-policy";
    EXPECT_TRUE(rl.front().contains("eval_reward_mean")) << "the evaluation before RL lands in the first row";
    EXPECT_EQ(rl.front()["eval_reward_mean"], rl.front()["eval_start_reward_mean"]);
    EXPECT_TRUE(rl.back().contains("eval_reward_mean"));
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
