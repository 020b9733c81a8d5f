// The fixture of the end-to-end training suites (training_mpi_test, resume_mpi_test): a world of
// MPI ranks, a fresh run directory shared by every rank, a tiny recipe that runs in seconds, and the
// RL rows a run wrote.
#pragma once

#include "controller/loop.h"
#include "controller/recipe.h"
#include "core/communicator.h"
#include "report/metrics.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace llamarl::controller {
namespace training_test {

namespace fs = std::filesystem;
constexpr auto kTimeout = std::chrono::seconds(120);

inline void ExpectConsecutiveSteps(const std::vector<Json>& rl, int64_t first_version, int64_t num_steps);
inline void ExpectFullBatches(const std::vector<Json>& rl);

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
      "rollout": {"prompts_per_step": 4, "group_size": 3, "max_new_tokens": 4},
      "generator": {"max_slots": 32},
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

inline void ExpectConsecutiveSteps(const std::vector<Json>& rl, int64_t first_version, int64_t num_steps) {
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
inline void ExpectFullBatches(const std::vector<Json>& rl) {
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

}  // namespace training_test
}  // namespace llamarl::controller
