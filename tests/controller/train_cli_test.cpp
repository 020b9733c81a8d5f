// `llamarl train` as a user runs it: under mpirun with 2 ranks, a rank that dies (debug.kill_rank
// makes it SIGKILL itself at an RL step) ends the whole job with a non-zero status within 60 s, with
// the checkpoints written before it intact; a bad recipe value fails before anything starts, naming
// the key. Needs the built llamarl program (tests/CMakeLists.txt builds it before the suite).
#include "controller/trainer_side.h"
#include "core/device.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <utility>
#include <vector>

#include "tests/test_util.h"

namespace llamarl::controller {
namespace {

namespace fs = std::filesystem;

// `mpi`: two ranks under mpirun (split placement); else one process, colocated.
std::string TrainCommand(const std::string& run_dir, const std::string& extra, bool mpi = true) {
  return "cd " + std::string(LLAMARL_SOURCE_DIR) +
         // `timeout` only guards the test itself against a hang; a job must end long before it.
         " && LLAMARL_TORCH_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 240 " +
         (mpi ? "mpirun -np 2 --oversubscribe --allow-run-as-root --bind-to none -x LLAMARL_TORCH_THREADS=1 " : "") +
         testing::LlamarlBinary() + " train recipes/tiny_grpo.json --set run_dir=" + run_dir +
         (mpi ? "" : " --set placement.mode=colocated") +
         " --set model.hidden_size=32 --set model.num_layers=1 --set sft.steps=2 --set rollout.prompts_per_step=4"
         " --set rollout.group_size=2 --set eval.num_prompts=4 --set steps=8 --set checkpoint.every=1 " + extra;
}

TEST(TrainCli, KilledRankEndsTheJobWithinAMinute) {
  ASSERT_TRUE(fs::exists(testing::LlamarlBinary())) << "build llamarl first: " << testing::LlamarlBinary();
  for (int victim : {0, 1}) {  // the generator, then the trainer (the controller)
    SCOPED_TRACE(victim);
    const std::string dir = testing::MakeTempDir("train_kill");
    std::string output;
    const auto start = std::chrono::steady_clock::now();
    const int status = testing::RunCommand(
        TrainCommand(dir, "--set debug.kill_rank=" + std::to_string(victim) +
                                               " --set debug.kill_at_step=3"),
        &output, /*merge_stderr=*/true);
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(status, 0) << output;
    EXPECT_LT(elapsed, 60.0) << output;
    // Steps 0-2 finished and were checkpointed before the kill; the newest checkpoint is complete.
    const std::string latest = LatestCheckpoint(dir);
    ASSERT_FALSE(latest.empty()) << output;
    const int64_t saved = std::stoll(fs::path(latest).filename().string().substr(5));
    EXPECT_GE(saved, 2) << output;
    EXPECT_LE(saved, 3) << output;
  }
}

TEST(TrainCli, BadRecipeValueIsNamedBeforeAnythingRuns) {
  ASSERT_TRUE(fs::exists(testing::LlamarlBinary())) << "build llamarl first";
  const std::string dir = testing::MakeTempDir("train_bad");
  std::string output;
  const int status = testing::RunCommand(TrainCommand(dir, "--set rollout.top_p=2"), &output, true);
  EXPECT_NE(status, 0);
  EXPECT_NE(output.find("rollout.top_p: expected a number in (0, 1], got 2"), std::string::npos) << output;
}

// Every trainer section is parsed before the warm start runs, and a key is named as the recipe has it.
TEST(TrainCli, TrainerMistakesAreNamedBeforeTheWarmStart) {
  const std::pair<const char*, const char*> cases[] = {
      {"--set trainer.optimiser.lr=0.1", "trainer: unknown key 'optimiser'"},
      {"--set trainer.optimizer.lr=fast", "trainer.optimizer.lr: expected a number"},
      {"--set sft.trainer.optimiser.lr=0.1", "sft.trainer: unknown key 'optimiser'"},
  };
  for (const auto& [set, expected] : cases) {
    SCOPED_TRACE(set);
    const std::string dir = testing::MakeTempDir("train_trainer_typo");
    std::string output;
    EXPECT_NE(testing::RunCommand(TrainCommand(dir, set, /*mpi=*/false), &output, true), 0);
    EXPECT_NE(output.find(expected), std::string::npos) << output;
    EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl")) << "no SFT step ran";
  }
}

// An impossible device or tensor backend is named before MPI starts or anything is loaded or written.
TEST(TrainCli, DeviceMistakesAreNamedBeforeAnythingLoads) {
  const DeviceEnvironment env = CurrentDeviceEnvironment();
  std::vector<std::pair<std::string, std::string>> cases = {
      {"--set device=cpu --set comm.backend=nccl", "comm.backend is 'nccl', which moves CUDA tensors, but the device is cpu"},
      {"--set device=gpu", "device: expected one of"},
  };
  if (!env.built_with_cuda) cases.push_back({"--set device=cuda", "device is 'cuda' but this llamarl was built without CUDA"});
  else if (env.num_visible_gpus == 0) cases.push_back({"--set device=cuda", "device is 'cuda' but this process sees no GPU"});
  for (const auto& [set, expected] : cases) {
    SCOPED_TRACE(set);
    const std::string dir = testing::MakeTempDir("train_device") + "/run";
    std::string output;
    EXPECT_NE(testing::RunCommand(TrainCommand(dir, set, /*mpi=*/false), &output, true), 0);
    EXPECT_NE(output.find(expected), std::string::npos) << output;
    EXPECT_FALSE(fs::exists(dir)) << "nothing is written";
  }
}

// Failures outside the model's work name the phase and the step they happened in: a full disk
// (metrics.jsonl on /dev/full) at the first SFT row, a reward program whose reply is not a number at
// the first RL step's scoring (it answers the 4 prompts of the start-of-RL evaluation first).
TEST(TrainCli, FailuresNameTheirPhaseAndStep) {
  {
    const std::string dir = testing::MakeTempDir("train_full_disk");
    fs::create_symlink("/dev/full", dir + "/metrics.jsonl");
    std::string output;
    EXPECT_NE(testing::RunCommand(TrainCommand(dir, "", /*mpi=*/false), &output, true), 0);
    EXPECT_NE(output.find("failed in phase 'metrics' at SFT step 0"), std::string::npos) << output;
    EXPECT_NE(output.find("No space left on device"), std::string::npos) << output;
  }
  const std::string dir = testing::MakeTempDir("train_bad_reward");
  std::ofstream(dir + "/judge.sh") << "n=0; while read line; do n=$((n+1)); "
                                      "if [ $n -le 4 ]; then echo '{\"score\": 0}'; else echo '{\"score\": \"high\"}'; fi; done\n";
  const std::string reward = "'reward={\"name\": \"command\", \"config\": {\"command\": [\"sh\", \"" + dir + "/judge.sh\"]}}'";
  std::string output;
  EXPECT_NE(testing::RunCommand(TrainCommand(dir + "/run", "--set " + reward, /*mpi=*/false), &output, true), 0);
  EXPECT_NE(output.find("failed in phase 'score' at RL step 0"), std::string::npos) << output;
}

}  // namespace
}  // namespace llamarl::controller
