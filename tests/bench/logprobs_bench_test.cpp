// RunLogprobsBench at a small size: both variants run in children, agree on the log-probs and
// gradients, and the tiled variant's measured peak is far below the composition's [T, V] tensors.
#include "bench/logprobs_bench.h"

#include <gtest/gtest.h>

namespace llamarl::bench {
namespace {

TEST(LogprobsBench, MeasuresBothVariantsInOneRun) {
  LogprobsBenchOptions options;
  options.tokens = 512;
  options.vocab = 32768;
  options.hidden = 64;
  options.token_chunk = 256;
  options.vocab_chunk = 2048;
  const nlohmann::json result = RunLogprobsBench(options);
  for (const char* key : {"fused_peak_bytes", "naive_peak_bytes", "memory_ratio", "time_ratio"})
    ASSERT_TRUE(result.contains(key)) << key << " missing from " << result.dump();
  // The composition holds at least two [T, V] float32 tensors at once (64 MiB each here); the tiled
  // variant's tiles are 2 MiB, and both produce the same [V, D] weight gradient (8 MiB).
  const double tv_bytes = 512.0 * 32768 * 4;
  EXPECT_GT(result["naive_peak_bytes"].get<double>(), 2 * tv_bytes);
  EXPECT_LT(result["fused_peak_bytes"].get<double>(), tv_bytes);
  EXPECT_GT(result["memory_ratio"].get<double>(), 4.0);
  EXPECT_GT(result["time_ratio"].get<double>(), 0.0);
  EXPECT_LT(result["max_abs_logprob_diff"].get<double>(), 1e-3);
  EXPECT_NEAR(result["grad_weight_norm_fused"].get<double>(), result["grad_weight_norm_naive"].get<double>(),
              1e-4 * result["grad_weight_norm_naive"].get<double>());
}

TEST(LogprobsBench, RejectsBadOptions) {
  LogprobsBenchOptions options;
  options.dtype = "int8";
  EXPECT_THROW(RunLogprobsBench(options), std::exception);
  options = LogprobsBenchOptions{};
  options.tokens = 0;
  EXPECT_THROW(RunLogprobsBench(options), std::exception);
}

}  // namespace
}  // namespace llamarl::bench
