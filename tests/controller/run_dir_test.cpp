// The run directory's resume rules without a training run: which recipe changes a resume refuses
// (named, with both values) and allows, and that a refused or impossible resume writes nothing.
#include "controller/run_dir.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "report/metrics.h"
#include "tests/test_util.h"

namespace llamarl::controller {
namespace {

namespace fs = std::filesystem;

TEST(RunDir, RecipeChangesListsEveryChangedLeaf) {
  const Json before = Json::parse(R"({"steps": 20, "sft": {"steps": 80, "batch_size": 4}, "seed": 1,
                                      "rollout": {"stop_strings": ["a"]}})");
  const Json after = Json::parse(R"({"steps": 40, "sft": {"steps": 0, "batch_size": 4},
                                     "rollout": {"stop_strings": ["a", "b"]}, "eval": {"every": 5}})");
  EXPECT_EQ(RecipeChanges(before, after), Json::parse(R"({
      "steps": {"from": 20, "to": 40}, "sft.steps": {"from": 80, "to": 0}, "seed": {"from": 1, "to": null},
      "rollout.stop_strings": {"from": ["a"], "to": ["a", "b"]}, "eval.every": {"from": null, "to": 5}})"));
  EXPECT_EQ(RecipeChanges(before, before), Json::object());
}

TEST(RunDir, ResumeRefusesChangesItCannotHonourBeforeLookingAtCheckpoints) {
  const std::string dir = testing::MakeTempDir("run_dir_refuse");
  const Json saved = Json::parse(R"({"steps": 20, "sft": {"steps": 80}, "trainer": {"optimizer": {"lr": 0.001}},
                                     "eval": {"every": 5}})");
  std::ofstream(dir + "/recipe.json") << saved.dump();
  Json changed = saved;
  changed["sft"]["steps"] = 0;
  changed["trainer"]["optimizer"]["lr"] = 0.002;
  changed["steps"] = 40;
  changed["eval"]["every"] = 10;
  try {
    PlanResume(changed, dir);
    FAIL() << "the resume was accepted";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("\n  sft.steps: 80 in " + dir + "/recipe.json, now 0"), std::string::npos) << what;
    EXPECT_NE(what.find("\n  trainer.optimizer.lr: 0.001 in "), std::string::npos) << what;
    EXPECT_EQ(what.find("\n  steps:"), std::string::npos) << what;
    EXPECT_EQ(what.find("\n  eval.every:"), std::string::npos) << what;
  }
  // Allowed changes only: the recipe passes and the missing checkpoint is what stops the resume.
  Json allowed = saved;
  allowed["steps"] = 40;
  allowed["eval"]["every"] = 10;
  try {
    PlanResume(allowed, dir);
    FAIL() << "a resume without checkpoints was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("the run saved none (set checkpoint.every)"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir + "/resumes.jsonl"));
  EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl"));
}

TEST(RunDir, ResumeOfAMissingDirectoryNamesIt) {
  try {
    PlanResume(Json::object(), "/nonexistent/run");
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("--resume /nonexistent/run: no such run directory"), std::string::npos)
        << e.what();
  }
}

TEST(RunDir, AnUnwritableRunDirNamesTheKey) {
  try {
    OpenRunDirectory("/dev/null/run", Json::object(), nullptr, true);
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("run_dir: cannot create '/dev/null/run'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace llamarl::controller
