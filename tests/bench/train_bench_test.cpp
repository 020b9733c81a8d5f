// RunTrainBench on a small workload: the report's ratios are the ratios of its own figures, the token
// count is the batch it built, and out-of-range options are errors that name the option.
#include "bench/train_bench.h"
#include "core/check.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace llamarl::bench {
namespace {

TEST(TrainBenchTest, ReportsZero3ReplicatedAndFractionOfPeak) {
  auto comm = CreateCommunicator("local");
  TrainBenchOptions o;
  o.samples_per_rank = 2;
  o.prompt_len = 8;
  o.response_len = 24;
  o.micro_batch_tokens = 64;
  o.steps = 1;
  o.gemm_size = 256;
  const nlohmann::json r = RunTrainBench(*comm, o);
  EXPECT_GT(r.at("model_params").get<int64_t>(), 15000000);
  EXPECT_LT(r.at("model_params").get<int64_t>(), 25000000);
  EXPECT_EQ(r.at("ranks").get<int64_t>(), 1);
  EXPECT_EQ(r.at("tokens_per_step").get<int64_t>(), 2 * (8 + 24 - 1));  // the inputs of the forward
  const double zero3 = r.at("tokens_per_s"), replicated = r.at("baseline_tokens_per_s");
  const double step = r.at("step_seconds"), baseline_step = r.at("baseline_step_seconds");
  EXPECT_GT(zero3, 0);
  EXPECT_GT(replicated, 0);
  EXPECT_NEAR(zero3 * step, double(r.at("tokens_per_step").get<int64_t>()), 1e-6 * zero3 * step);
  EXPECT_NEAR(replicated * baseline_step, zero3 * step, 1e-6 * zero3 * step);
  EXPECT_NEAR(r.at("speedup_vs_baseline").get<double>(), zero3 / replicated, 1e-9 * zero3 / replicated);
  const double achieved = r.at("achieved_gflops"), peak = r.at("gemm_gflops");
  EXPECT_GT(peak, 0);
  const double flops = 6.0 * double(r.at("model_params").get<int64_t>()) * double(r.at("tokens_per_step").get<int64_t>());
  EXPECT_NEAR(achieved, flops / step / 1e9, 1e-9 * achieved);
  EXPECT_NEAR(r.at("fraction_of_peak").get<double>(), achieved / peak, 1e-9 * achieved / peak);
}

TEST(TrainBenchTest, OptionsOutOfRangeAreErrors) {
  auto comm = CreateCommunicator("local");
  TrainBenchOptions o;
  o.samples_per_rank = 0;
  try {
    RunTrainBench(*comm, o);
    ADD_FAILURE() << "samples_per_rank 0 was accepted";
  } catch (const llamarl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("samples_per_rank must be >= 1, got 0"), std::string::npos) << e.what();
  }
  TrainBenchOptions gemm;
  gemm.gemm_size = 8;
  EXPECT_THROW(RunTrainBench(*comm, gemm), llamarl::Error);
}

}  // namespace
}  // namespace llamarl::bench
