// RunGenerateBench on a small workload: the report has the fields, its ratios are the ratios
// of its own figures, and out-of-range options are errors that name the option.
#include "bench/generate_bench.h"
#include "core/check.h"

#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace llamarl::bench {
namespace {

TEST(GenerateBenchTest, ReportsEngineRecomputeAndRooflinePerBatch) {
  GenerateBenchOptions o;
  o.batches = {1, 4};
  o.prompt_len = 8;
  o.new_tokens = 24;
  o.recompute_steps = 2;
  o.roofline_repeats = 2;
  int progress_lines = 0;
  o.progress = [&](const std::string&) { ++progress_lines; };
  const nlohmann::json report = RunGenerateBench(o);
  EXPECT_GT(report.at("model_params").get<int64_t>(), 15000000);
  EXPECT_LT(report.at("model_params").get<int64_t>(), 25000000);
  ASSERT_EQ(report.at("results").size(), 2u);
  EXPECT_EQ(progress_lines, 2);
  for (const auto& row : report.at("results")) {
    const double engine = row.at("engine_tokens_per_s"), recompute = row.at("recompute_tokens_per_s"),
                 roofline = row.at("roofline_tokens_per_s");
    EXPECT_GT(engine, 0);
    EXPECT_GT(recompute, 0);
    EXPECT_GT(roofline, 0);
    EXPECT_NEAR(row.at("speedup_vs_recompute").get<double>(), engine / recompute, 1e-9 * engine / recompute);
    EXPECT_NEAR(row.at("fraction_of_roofline").get<double>(), engine / roofline, 1e-9 * engine / roofline);
  }
  EXPECT_EQ(report["results"][1].at("batch").get<int64_t>(), 4);
}

TEST(GenerateBenchTest, OptionsOutOfRangeAreErrors) {
  GenerateBenchOptions o;
  o.batches = {0};
  EXPECT_THROW(RunGenerateBench(o), llamarl::Error);
  GenerateBenchOptions too_long;
  too_long.prompt_len = 2000;
  too_long.new_tokens = 256;
  try {
    RunGenerateBench(too_long);
    ADD_FAILURE() << "a sequence longer than max_position_embeddings was accepted";
  } catch (const llamarl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the model's max_position_embeddings (2048)"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace llamarl::bench
