// Resume as a user meets it, under mpirun -np 2 and -np 3: a recipe change a resume cannot honour is
// refused before anything in the run directory changes; a damaged newest checkpoint is skipped for
// the newest whole one; a run with a KL penalty resumes to the same figures as the uninterrupted
// run (the reference policy is in the checkpoint); the summary keeps the true start-of-RL
// evaluation; an injected non-finite step is skipped and counted end to end; a deterministic
// asynchronous run (max_policy_lag 1) repeats itself exactly, and resumed from a mid-run checkpoint
// it reproduces the uninterrupted run row for row (the finished groups waiting at the checkpoint
// were saved in it).
#include "controller/loop.h"
#include "controller/run_dir.h"
#include "controller/trainer_side.h"
#include "report/jsonl_file.h"
#include "report/metrics.h"
#include "tests/controller/training_test_util.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace llamarl::controller {
namespace {

using training_test::ExpectConsecutiveSteps;
using training_test::TrainingTest;
namespace fs = std::filesystem;

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

TEST_F(TrainingTest, ResumeRefusesARecipeChangeAndTouchesNothing) {
  const std::string dir = RunDir("resume_refused");
  Run(TinyRecipe(dir, {"steps=2", "checkpoint.every=1"}));
  const std::string metrics = ReadFile(dir + "/metrics.jsonl");
  const std::string recipe = ReadFile(dir + "/recipe.json");
  try {
    Run(TinyRecipe(dir, {"steps=4", "sft.steps=0", "trainer.optimizer.lr=0.002"}), RunOptions{dir});
    FAIL() << "a resume that changes sft.steps and the learning rate ran";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("sft.steps: 2 in " + dir + "/recipe.json, now 0"), std::string::npos) << what;
    EXPECT_NE(what.find("trainer.optimizer.lr: 0.001"), std::string::npos) << what;
    EXPECT_EQ(what.find("\n  steps:"), std::string::npos) << "steps may change: " << what;
  }
  world_->Barrier()->Wait(training_test::kTimeout);
  EXPECT_EQ(ReadFile(dir + "/metrics.jsonl"), metrics);
  EXPECT_EQ(ReadFile(dir + "/recipe.json"), recipe);
  EXPECT_FALSE(fs::exists(dir + "/resumes.jsonl"));
}

// The newest checkpoint loses the end of a shard: the resume says so, continues from the one before,
// recomputes the steps after it (their rows replaced, not repeated) and keeps the start-of-RL eval.
TEST_F(TrainingTest, ResumeSkipsADamagedCheckpointForTheNewestWholeOne) {
  const std::string dir = RunDir("resume_damaged");
  Run(TinyRecipe(dir, {"steps=3", "checkpoint.every=1", "checkpoint.keep=3"}));
  const Json first_row = ReadMetrics(dir + "/metrics.jsonl").at(2);  // after the 2 SFT rows
  ASSERT_EQ(first_row["rl_step"], 0);
  ASSERT_TRUE(first_row.contains("eval_reward_mean"));
  if (world_->Rank() == 0) {
    for (const auto& e : fs::directory_iterator(dir + "/checkpoints/step_3")) {
      if (e.path().extension() != ".safetensors") continue;
      fs::resize_file(e.path(), fs::file_size(e.path()) / 2);
      break;
    }
  }
  world_->Barrier()->Wait(training_test::kTimeout);
  std::vector<Json> rl =
      Run(TinyRecipe(dir, {"steps=4", "checkpoint.every=1", "checkpoint.keep=3"}), RunOptions{dir});
  ExpectConsecutiveSteps(rl, 2, 4);  // steps 0-1 kept, 2-3 rerun from step_2, each row once
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step_3.damaged")) << "kept for inspection, out of the sequence";
  EXPECT_EQ(LatestCheckpoint(dir), dir + "/checkpoints/step_4");
  const JsonlContents resumes = ReadJsonl(dir + "/resumes.jsonl", "resumes");
  ASSERT_EQ(resumes.rows.size(), 1u);
  EXPECT_EQ(resumes.rows[0]["rl_step"], 2);
  EXPECT_EQ(resumes.rows[0]["changes"]["steps"], (Json{{"from", 3}, {"to", 4}}));
  ASSERT_EQ(resumes.rows[0]["skipped_checkpoints"].size(), 1u);
  EXPECT_EQ(resumes.rows[0]["skipped_checkpoints"][0].get<std::string>().rfind("step_3: ", 0), 0u);
  const Json summary = ReadJsonFile(dir + "/summary.json");
  EXPECT_EQ(summary["eval_start"]["eval_reward_mean"], first_row["eval_reward_mean"]) << summary.dump();
  EXPECT_TRUE(summary.contains("eval_resume")) << "the resume point's eval is kept under its own name";
}

// Colocated runs are deterministic, so a run stopped after step 2 and resumed must give step 2's
// figures exactly; with kl.coef > 0 that holds only if the reference policy (the post-SFT weights)
// comes back from the checkpoint rather than being rebuilt from the initial weights.
TEST_F(TrainingTest, ResumeWithKlEqualsTheUninterruptedRun) {
  const std::vector<std::string> common{"placement.mode=colocated", "trainer.kl.coef=0.05", "checkpoint.every=1",
                                        R"(reward={"name": "format", "config": {"pattern": "[a-z0-9]"}})"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.end(), common.begin(), common.end());
    return extra;
  };
  const std::vector<Json> whole = Run(TinyRecipe(RunDir("kl_whole"), with({"steps=3"})));
  const std::string dir = RunDir("kl_resumed");
  Run(TinyRecipe(dir, with({"steps=2"})));
  const std::vector<Json> resumed = Run(TinyRecipe(dir, with({"steps=3"})), RunOptions{dir});
  ASSERT_EQ(whole.size(), 3u);
  ASSERT_EQ(resumed.size(), 3u);
  for (const char* key : {"reward_mean", "loss", "kl", "entropy", "grad_norm", "policy_version"})
    EXPECT_EQ(resumed[2][key], whole[2][key]) << key;
  EXPECT_GT(whole[2]["kl"].get<double>(), 0.0);
}

// debug.nan_at_step makes step 1's rewards NaN on every trainer rank: the step is skipped (no
// update, the policy version stays), counted, written with a null loss, and the run goes on.
TEST_F(TrainingTest, NonFiniteStepIsSkippedAndCounted) {
  std::vector<Json> rl = Run(TinyRecipe(RunDir("nan"), {"steps=3", "debug.nan_at_step=1"}));
  ASSERT_EQ(rl.size(), 3u);
  EXPECT_EQ(rl[0]["skipped"], false);
  EXPECT_EQ(rl[1]["skipped"], true) << rl[1].dump();
  EXPECT_TRUE(rl[1]["loss"].is_null()) << rl[1].dump();
  EXPECT_EQ(rl[1]["skipped_steps"], 1);
  EXPECT_EQ(rl[1]["policy_version"], rl[0]["policy_version"]);
  EXPECT_EQ(rl[2]["skipped"], false);
  EXPECT_EQ(rl[2]["skipped_steps"], 1);
  EXPECT_EQ(rl[2]["policy_version"], rl[1]["policy_version"].get<int64_t>() + 1);
}

// The figures of a row that do not depend on timing.
void ExpectSameFigures(const Json& a, const Json& b, const std::string& what) {
  for (const char* key : {"rl_step", "policy_version", "reward_mean", "reward_std", "loss", "entropy", "grad_norm",
                          "samples", "tokens", "response_len_mean", "staleness_mean", "staleness_max", "stale_groups",
                          "trainer_tokens", "eval_reward_mean", "eval_policy_version"}) {
    EXPECT_EQ(a.contains(key), b.contains(key)) << what << ": " << key << "\n" << a.dump() << "\n" << b.dump();
    if (a.contains(key) && b.contains(key)) EXPECT_EQ(a[key], b[key]) << what << ": " << key;
  }
}

TEST_F(TrainingTest, DeterministicAsyncRunResumesRowForRow) {
  const std::vector<std::string> common{"async.deterministic=true", "max_policy_lag=1", "checkpoint.every=1",
                                        "checkpoint.keep=10", "eval.every=1", "steps=5",
                                        R"(reward={"name": "format", "config": {"pattern": "[a-z0-9]"}})"};
  const std::vector<Json> whole = Run(TinyRecipe(RunDir("det_whole"), common));
  ASSERT_EQ(whole.size(), 5u);
  int64_t learning_rows = 0;  // rows whose figures would show a difference
  for (const Json& row : whole) learning_rows += row["reward_std"].get<double>() > 0 && row["loss"].get<double>() != 0;
  EXPECT_GE(learning_rows, 3) << "the reward must vary for the comparison to mean something";
  EXPECT_EQ(whole[3]["staleness_max"], 1) << "a group of step s is sampled at version s - lag, all of it";
  EXPECT_EQ(whole[3]["staleness_mean"], 1.0);

  const std::vector<Json> again = Run(TinyRecipe(RunDir("det_again"), common));
  ASSERT_EQ(again.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i)
    ExpectSameFigures(again[i], whole[i], "second run, row " + std::to_string(i));

  // As if killed right after checkpoint step_2: the later checkpoints were never written.
  const std::string dir = RunDir("det_resumed");
  if (world_->Rank() == 0) {
    fs::copy(std::string(LLAMARL_BINARY_DIR) + "/Testing/tmp/training_np" + std::to_string(world_->Size()) +
                 "_det_whole",
             dir, fs::copy_options::recursive);
    for (int s = 3; s <= 5; ++s) fs::remove_all(dir + "/checkpoints/step_" + std::to_string(s));
    const Json state = ReadJsonFile(dir + "/checkpoints/step_2/trainer_state.json");
    EXPECT_EQ(state["extra"]["parked"]["groups"], 4) << "step 2's batch was sampled before the checkpoint";
    EXPECT_EQ(state["extra"]["parked"]["next_index"], 3 * 4) << "step 3's groups are sampled again";
  }
  world_->Barrier()->Wait(training_test::kTimeout);
  const std::vector<Json> resumed = Run(TinyRecipe(dir, common), RunOptions{dir});
  ASSERT_EQ(resumed.size(), whole.size());
  for (size_t i = 0; i < whole.size(); ++i)
    ExpectSameFigures(resumed[i], whole[i], "resumed, row " + std::to_string(i));
}

}  // namespace
}  // namespace llamarl::controller
