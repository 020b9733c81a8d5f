// The cost model's memory and time figures against hand-worked cases (the arithmetic is in the
// comments; GB = 1e9 bytes, H100: 80 GB, 3350 GB/s HBM, 989 TFLOP/s, NVLink 450 GB/s, NIC 50 GB/s).
#include "plan/plan_cost.h"
#include "core/check.h"

#include <gtest/gtest.h>

namespace llamarl {
namespace {

const PlanModel& Llama8b() {
  static const PlanModel m = LoadPlanModel("8b");
  return m;
}

TEST(PlanCostTest, MemoryFormulasBy8bHand) {
  const PlanModel& m = Llama8b();
  // 16 bytes * 8,030,261,248 params / 64 GPUs = 2,007,565,312.
  EXPECT_DOUBLE_EQ(TrainerStateBytesPerGpu(m, 64), 2007565312.0);
  // Per layer 2 * (6*4096 + 2*1024 + 4*14336) = 2 * 83,968 = 167,936 bytes; x 32 layers = 5,373,952.
  EXPECT_DOUBLE_EQ(ActivationBytesPerToken(m.config, false), 5373952.0);
  // Checkpointing keeps 2 * 4096 bytes per layer (32 layers: 262,144) + one layer's 167,936 = 430,080.
  EXPECT_DOUBLE_EQ(ActivationBytesPerToken(m.config, true), 430080.0);
  // bf16: 2 * N = 16,060,522,496. fp8: 6,979,321,856 linear bytes + 2 * 1,050,939,392 others = 9,081,200,640.
  EXPECT_DOUBLE_EQ(GeneratorWeightBytes(m, WeightDtype::kBf16), 16060522496.0);
  EXPECT_DOUBLE_EQ(GeneratorWeightBytes(m, WeightDtype::kFp8), 9081200640.0);
  // 131,072 bytes of KV per token split over TP=2: 65,536; TP=8 gives each GPU one of the 8 KV heads.
  EXPECT_DOUBLE_EQ(KvBytesPerTokenPerGpu(m, 2), 65536.0);
  EXPECT_DOUBLE_EQ(KvBytesPerTokenPerGpu(m, 8), 16384.0);
}

TEST(PlanCostTest, TrainerOn8GpusByHand) {
  PlanAssumptions a;  // 2048 sequences of 512 + 1024 tokens = 3,145,728 tokens; 393,216 per GPU
  TrainerCost t = EstimateTrainer(Llama8b(), HardwareProfileByName("h100"), a, TrainerSetup{8, 8, true});
  ASSERT_TRUE(t.fits) << t.why_not;
  EXPECT_DOUBLE_EQ(t.state_bytes_per_gpu, 16060522496.0);    // 16 * N / 8
  EXPECT_DOUBLE_EQ(t.gathered_bytes_per_gpu, 2101346304.0);  // 2 units * 2 bytes * 525,336,576 (embedding)
  EXPECT_DOUBLE_EQ(t.activation_bytes_per_gpu, 7046430720.0);  // 430,080 * 16,384-token micro-batch
  // + 4 GB reserve = 29,208,299,520.
  EXPECT_DOUBLE_EQ(t.total_bytes_per_gpu, 29208299520.0);
  EXPECT_EQ(t.micro_batches, 24);  // 393,216 / 16,384
  // (6 + 2 reference + 2 recompute) * N * 3,145,728 / (8 * 989e12 * 0.4) = 79.8187 s.
  EXPECT_NEAR(t.compute_s, 79.8187, 1e-3);
  // ZeRO-3 inside one node: 24 * 3 * 2N * 7/8 / (450e9 * 0.8) = 2.8106 s, hidden under compute;
  // AdamW: 2 * 16.06 GB / (3350e9 * 0.7) = 0.0137 s.
  EXPECT_NEAR(t.comm_s, 2.8106, 1e-3);
  EXPECT_NEAR(t.time_s, 79.8187 + 0.0137, 1e-3);
}

TEST(PlanCostTest, TrainerThatDoesNotFitNamesItsNumbers) {
  // No checkpointing: 5,373,952 * 16,384 = 88.05 GB of activations alone exceed 80 GB.
  TrainerCost t = EstimateTrainer(Llama8b(), HardwareProfileByName("h100"), PlanAssumptions{}, TrainerSetup{8, 8, false});
  EXPECT_FALSE(t.fits);
  EXPECT_NE(t.why_not.find("88.05 GB activations"), std::string::npos) << t.why_not;
  EXPECT_NE(t.why_not.find("> 80 GB"), std::string::npos) << t.why_not;
}

TEST(PlanCostTest, DecodeIsBandwidthBoundByHand) {
  PlanAssumptions a;
  GeneratorCost g = EstimateGenerator(Llama8b(), HardwareProfileByName("h100"), a, GeneratorSetup{8, 1});
  ASSERT_TRUE(g.fits) << g.why_not;
  // KV budget: 80e9 - 4e9 reserve - 16,060,522,496 weights = 59,939,477,504 bytes; one sequence
  // reserves 131,072 * (512 + 4096) = 603,979,776 -> 99 at once (of 2048 / 8 = 256 per replica).
  EXPECT_DOUBLE_EQ(g.kv_budget_bytes_per_gpu, 59939477504.0);
  EXPECT_EQ(g.sequences_per_replica, 256);
  EXPECT_EQ(g.concurrent_sequences, 99);
  // Continuous batching: max(4096, 256 * 1024 / 99 + 4096 - 1024) = 5719.92 steps.
  EXPECT_NEAR(g.decode_steps, 5719.9192, 1e-3);
  // Per step: (16,060,522,496 weights + 99 * (512 + 512) * 131,072 KV) / (3350e9 * 0.7) = 12.515 ms,
  // above the compute floor 2N * 99 / (989e12 * 0.5) = 3.2 ms; TP=1 has no all-reduce.
  EXPECT_NEAR(g.decode_step_s, 0.0125152, 1e-6);
  // Prefill: 2N * 256 * 512 / (989e12 * 0.5) = 4.257 s; total 4.257 + 5719.92 * 0.0125152 = 75.843 s.
  EXPECT_NEAR(g.prefill_s, 4.2570, 1e-3);
  EXPECT_NEAR(g.time_s, 75.8428, 1e-3);
}

TEST(PlanCostTest, Bf16405bDoesNotFitOneNodeButFp8Does) {
  PlanModel m = LoadPlanModel("405b");
  HardwareProfile h100 = HardwareProfileByName("h100");
  // bf16: 2 * 405,853,388,800 / 8 = 101.46 GB of weights per GPU > 80 GB.
  GeneratorCost bf16 = EstimateGenerator(m, h100, PlanAssumptions{}, GeneratorSetup{8, 8, WeightDtype::kBf16});
  EXPECT_FALSE(bf16.fits);
  EXPECT_NE(bf16.why_not.find("101.5 GB weights"), std::string::npos) << bf16.why_not;
  GeneratorCost fp8 = EstimateGenerator(m, h100, PlanAssumptions{}, GeneratorSetup{8, 8, WeightDtype::kFp8});
  EXPECT_TRUE(fp8.fits) << fp8.why_not;
  // TP=8 also adds 2 all-reduces * 126 layers * 10 us = 2.52 ms to every decode step.
  EXPECT_GT(fp8.decode_step_s, 2.52e-3);
}

TEST(PlanCostTest, WeightSyncByHand) {
  HardwareProfile h100 = HardwareProfileByName("h100");
  // 16,060,522,496 bf16 bytes; 4 trainer GPUs push to 4 replicas of TP=2: each trainer GPU sends
  // 4 * bytes / 4 = 16.06 GB, each generator GPU receives bytes / 2 = 8.03 GB; NIC 50e9 * 0.8.
  WeightSyncCost w = EstimateWeightSync(Llama8b(), h100, PlanAssumptions{}, TrainerSetup{4, 4, true},
                                        GeneratorSetup{8, 2});
  EXPECT_DOUBLE_EQ(w.bytes, 16060522496.0);
  EXPECT_NEAR(w.ddma_s, 16060522496.0 / 40e9, 1e-9);
  EXPECT_NEAR(w.gather_broadcast_s, 2 * 16060522496.0 / 40e9, 1e-9);
  // With 8 trainer GPUs the receive side (8.03 GB per generator GPU) is the limit.
  w = EstimateWeightSync(Llama8b(), h100, PlanAssumptions{}, TrainerSetup{8, 8, true}, GeneratorSetup{8, 2});
  EXPECT_NEAR(w.ddma_s, 8030261248.0 / 40e9, 1e-9);
}

TEST(PlanCostTest, AssumptionsRejectContradictionsAndUnknownKeys) {
  PlanAssumptions a;
  a.micro_batch_tokens = 1000;
  try {
    a.Validate();
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("micro_batch_tokens (1000) must hold one whole sequence"), std::string::npos)
        << e.what();
  }
  try {
    PlanAssumptions::FromJson(Json{{"train_mfu", 0.5}, {"mfu", 0.5}}, "assumptions.json", PlanAssumptions{});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown key 'mfu'"), std::string::npos) << e.what();
  }
  EXPECT_DOUBLE_EQ(PlanAssumptions::FromJson(Json{{"train_mfu", 0.5}}, "a", PlanAssumptions{}).train_mfu, 0.5);
}

}  // namespace
}  // namespace llamarl
