// Resume as a user meets it, under mpirun -np 2 and -np 3: a recipe change a resume cannot honour is
// refused before anything in the run directory changes; a damaged newest checkpoint is skipped for
// the newest whole one; a run with a KL penalty resumes to the same figures as the uninterrupted
// run (the reference policy is in the checkpoint); the summary keeps the true start-of-RL
// evaluation; an injected non-finite step is skipped and counted end to end.
#include "controller/jsonl_file.h"
#include "controller/loop.h"
#include "controller/metrics.h"
#include "controller/run_dir.h"
#include "controller/trainer_side.h"
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

}  // namespace
}  // namespace llamarl::controller
