// The trainer on a GPU (TrainerConfig::device): master shard, AdamW state, gradients and the working
// model in CUDA memory, micro-batches moved there. One GRPO step from the same weights and batch
// gives the CPU trainer's loss and updated weights up to float32 summation order; the state goes to
// pinned host memory and back unchanged. Built under LLAMARL_CUDA, run where a GPU is (label gpu).
#include "core/communicator.h"
#include "tests/trainer/trainer_test_util.h"
#include "trainer/trainer.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cmath>

namespace llamarl {
namespace {

using namespace llamarl::testing;

TEST(TrainerOnCuda, OneStepMatchesTheCpuTrainer) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM model = TrainerTestModel(config);
  const TrainBatch batch = TrainerTestBatch(config, 3, 4, 7);
  auto comm = CreateCommunicator("local");
  TrainerConfig cfg = TrainerTestTrainerConfig("grpo");
  Trainer cpu(*comm, config, *model, cfg);
  cfg.device = c10::Device(c10::kCUDA, 0);
  Trainer gpu(*comm, config, *model, cfg);
  ASSERT_TRUE(gpu.FlatShard().is_cuda());
  const TrainStepMetrics a = cpu.Step(batch), b = gpu.Step(batch);
  EXPECT_NEAR(a.loss, b.loss, 1e-5 * std::max(1.0, std::abs(a.loss)));
  EXPECT_NEAR(a.grad_norm, b.grad_norm, 1e-4 * std::max(1.0, a.grad_norm));
  const at::Tensor w_cpu = cpu.FlatShard(), w_gpu = gpu.FlatShard().cpu();
  EXPECT_LT((w_cpu - w_gpu).norm().item<double>() / w_cpu.norm().item<double>(), 1e-5);
}

TEST(TrainerOnCuda, OffloadGoesToPinnedHostMemoryAndBack) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const LlamaConfig config = TrainerTestConfig();
  LlamaForCausalLM model = TrainerTestModel(config);
  auto comm = CreateCommunicator("local");
  TrainerConfig cfg = TrainerTestTrainerConfig("grpo");
  cfg.device = c10::Device(c10::kCUDA, 0);
  Trainer trainer(*comm, config, *model, cfg);
  const at::Tensor before = trainer.FlatShard().cpu();
  EXPECT_GT(trainer.OffloadState(), 0);
  EXPECT_EQ(trainer.ResidentStateBytes(), 0);
  trainer.RestoreState();
  EXPECT_TRUE(trainer.FlatShard().is_cuda());
  EXPECT_TRUE(at::equal(trainer.FlatShard().cpu(), before));
}

}  // namespace
}  // namespace llamarl
