// `llamarl bench weight-sync` on a small model under mpirun: the JSON has the fields, the
// figures are positive and consistent with each other, and DDMA delivered the same shards as the
// gather-then-broadcast baseline.
#include "bench/weight_sync_bench.h"
#include "model/llama_config.h"

#include <gtest/gtest.h>

namespace llamarl::bench {
namespace {

TEST(WeightSyncBench, MeasuresDdmaBaselineAndMemcpyInOneRun) {
  auto world = CreateCommunicator(DefaultCommunicatorName());
  ASSERT_GE(world->Size(), 2) << "run under mpirun -np 2 or more";
  WeightSyncBenchOptions options;
  options.model = "tiny";
  options.num_generators = 1;  // TP 1 divides every head count of the tiny preset
  options.bucket_bytes = 8192;
  options.repeats = 1;
  options.checksum = true;
  options.fp8 = true;
  const nlohmann::json result = RunWeightSyncBench(*world, options);
  for (const char* key : {"ranks", "bytes", "ddma_s", "baseline_s", "memcpy_s", "speedup_vs_baseline",
                          "fraction_of_memcpy", "results_match"})
    ASSERT_TRUE(result.contains(key)) << key << " missing from " << result.dump();
  EXPECT_EQ(result["ranks"].get<int>(), world->Size());
  // One TP rank holds the whole tiny model in bf16.
  EXPECT_EQ(result["bytes"].get<int64_t>(), 2 * LlamaPresetConfig("tiny").NumParameters());
  EXPECT_TRUE(result["results_match"].get<bool>());
  for (const char* key : {"ddma_s", "baseline_s", "memcpy_s"}) EXPECT_GT(result[key].get<double>(), 0.0) << key;
  EXPECT_DOUBLE_EQ(result["speedup_vs_baseline"].get<double>(),
                   result["baseline_s"].get<double>() / result["ddma_s"].get<double>());
  // fp8: one byte per parameter, plus a float32 scale per row (per tensor for 1-D parameters).
  ASSERT_TRUE(result.contains("ddma_fp8_s")) << result.dump();
  const LlamaConfig c = LlamaPresetConfig("tiny");
  EXPECT_GT(result["fp8_bytes"].get<int64_t>(), c.NumParameters());
  EXPECT_LT(result["fp8_bytes"].get<int64_t>(), c.NumParameters() + 4 * c.NumParameters() / c.hidden_size + 4096);
  EXPECT_DOUBLE_EQ(result["fp8_speedup_vs_ddma"].get<double>(),
                   result["ddma_s"].get<double>() / result["ddma_fp8_s"].get<double>());
}

TEST(WeightSyncBench, RejectsASingleRank) {
  auto local = CreateCommunicator("local");
  EXPECT_THROW(RunWeightSyncBench(*local, {}), std::exception);
}

}  // namespace
}  // namespace llamarl::bench
