// DAPO's dynamic sampling in whole runs under mpirun -np 2 and -np 3: split placement (one
// generator; one or two trainers) and colocated (every rank a replica). A reward that random
// responses sometimes earn (a letter or digit anywhere) gives groups with and without signal; with
// dynamic sampling no trained group has all-equal rewards (zero_std_groups, counted by the trainer
// ranks on what they trained), every batch is full, and the counts add up (generated = batch +
// filtered; the run's total in summary.json). Without it such groups are trained (the control that
// shows the check can fail). A reward no response earns exhausts max_gen_batches: every rank ends
// with the error naming the key.
#include "controller/loop.h"
#include "tests/controller/training_test_util.h"

#include <gtest/gtest.h>

namespace llamarl::controller {
namespace {

using training_test::ExpectConsecutiveSteps;
using training_test::ExpectFullBatches;
using training_test::TrainingTest;

constexpr const char* kSometimes = R"(reward={"name": "format", "config": {"pattern": "[a-z0-9]"}})";
constexpr int64_t kBatch = 4, kGroupSize = 3;  // TinyRecipe's prompts_per_step and group_size

// Returns the run's filtered groups, after checking every row.
int64_t ExpectOnlyGroupsWithSignal(const std::vector<Json>& rl) {
  int64_t filtered = 0;
  for (const Json& row : rl) {
    EXPECT_EQ(row["zero_std_groups"], 0) << "a group without signal was trained: " << row.dump();
    EXPECT_EQ(row["samples"], kBatch * kGroupSize) << "full batches: " << row.dump();
    EXPECT_EQ(row["generated_groups"].get<int64_t>(), kBatch + row["filtered_groups"].get<int64_t>()) << row.dump();
    filtered += row["filtered_groups"].get<int64_t>();
  }
  return filtered;
}

class DynamicSamplingTest : public TrainingTest {
 protected:
  int64_t SummaryFiltered(const std::string& run_dir) {
    return ReadJsonFile(run_dir + "/summary.json").at("filtered_groups_total").get<int64_t>();
  }
};

TEST_F(DynamicSamplingTest, SplitTrainsOnlyGroupsWithSignalAndReplacesTheOthers) {
  // Lag 0 and 1: on-policy, every replacement admitted while the step waits; off-policy, with a
  // second batch already generating.
  for (const char* lag : {"max_policy_lag=0", "max_policy_lag=1"}) {
    SCOPED_TRACE(lag);
    std::vector<Json> rl = RunSplit(std::string("ds_split_") + lag[15],
                                    {lag, kSometimes, "algorithm.dapo.dynamic_sampling=true",
                                     "algorithm.dapo.max_gen_batches=20"},
                                    5);
    const int64_t filtered = ExpectOnlyGroupsWithSignal(rl);
    EXPECT_GT(filtered, 0) << "no group without signal was met: the test proves nothing";
    if (world_->Rank() == 0) {
      EXPECT_EQ(SummaryFiltered(last_run_dir_), filtered);
    }
  }
  std::vector<Json> control = RunSplit("ds_split_off", {kSometimes}, 5);
  int64_t trained_without_signal = 0;
  for (const Json& row : control) {
    EXPECT_FALSE(row.contains("filtered_groups"));
    trained_without_signal += row["zero_std_groups"].get<int64_t>();
  }
  EXPECT_GT(trained_without_signal, 0) << "without dynamic sampling such groups are trained";
}

TEST_F(DynamicSamplingTest, ColocatedReplicasFillTheirShareInRounds) {
  RecipeConfig recipe = TinyRecipe(RunDir("ds_colocated"),
                                   {"placement.mode=colocated", kSometimes, "algorithm.dapo.dynamic_sampling=true",
                                    "algorithm.dapo.max_gen_batches=20", "steps=4"});
  std::vector<Json> rl = Run(recipe);
  ExpectConsecutiveSteps(rl, /*first_version=*/2, 4);
  const int64_t filtered = ExpectOnlyGroupsWithSignal(rl);
  EXPECT_GT(filtered, 0) << "no group without signal was met: the test proves nothing";
  for (const Json& row : rl) {
    EXPECT_GE(row["generation_rounds"].get<int64_t>(), 1);
    EXPECT_EQ(row["generation_rounds"].get<int64_t>() > 1, row["filtered_groups"].get<int64_t>() > 0) << row.dump();
  }
  if (world_->Rank() == 0) {
    EXPECT_EQ(SummaryFiltered(recipe.run_dir), filtered);
  }
}

// Overlong filtering and the soft penalty run end to end (their math is dapo_test's); the penalty
// makes the rewards of truncated samples negative, and groups are filtered on the shaped rewards.
TEST_F(DynamicSamplingTest, OverlongShapingTrainsInBothPlacements) {
  for (const char* placement : {"placement.mode=split", "placement.mode=colocated"}) {
    for (const char* overlong : {"algorithm.dapo.overlong=filter", "algorithm.dapo.overlong=penalty"}) {
      SCOPED_TRACE(std::string(placement) + " " + overlong);
      // A directory per run: a rank still reading the last run's metrics must not see it removed.
      const std::string name = std::string("overlong_") + (placement + 15) + "_" + (overlong + 24);
      RecipeConfig recipe = TinyRecipe(RunDir(name), {placement, overlong, kSometimes, "algorithm.dapo.overlong_buffer=2",
                                                     "algorithm.dapo.dynamic_sampling=true",
                                                     "algorithm.dapo.max_gen_batches=20", "steps=2"});
      std::vector<Json> rl = Run(recipe);
      ASSERT_EQ(rl.size(), 2u);
      ExpectOnlyGroupsWithSignal(rl);
      for (const Json& row : rl) {
        const bool penalty = std::string(overlong).find("penalty") != std::string::npos;
        EXPECT_GE(row["reward_mean"].get<double>(), penalty ? -1.0 : 0.0) << row.dump();
        EXPECT_LE(row["reward_mean"].get<double>(), 1.0) << row.dump();
      }
    }
  }
}

TEST_F(DynamicSamplingTest, ExhaustingMaxGenBatchesEndsEveryColocatedRankNamingTheKey) {
  RecipeConfig recipe = TinyRecipe(
      RunDir("ds_exhausted"), {"placement.mode=colocated", R"(reward={"name": "format", "config": {"pattern": "^.{40}$"}})",
                               "algorithm.dapo.dynamic_sampling=true", "algorithm.dapo.max_gen_batches=2"});
  try {
    RunTraining(*world_, recipe);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("RL step 0: 8 of the 8 groups generated in 2 rounds had rewards all equal"), std::string::npos)
        << what;
    EXPECT_NE(what.find("algorithm.dapo.max_gen_batches 2 x rollout.prompts_per_step 4"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace llamarl::controller
