#include "controller/progress.h"

#include <gtest/gtest.h>

namespace llamarl::controller {
namespace {

TEST(Progress, TextShowsTheStepAndTheMetricsPresent) {
  Json row = {{"reward_mean", 0.25}, {"eval_reward_mean", 0.5}, {"loss", 0.0125}, {"step_s", 1.5}};
  EXPECT_EQ(ProgressText(row, 12, 60), "step 12/60 reward 0.25 eval 0.5 loss 0.0125 1.5 s/step");
  EXPECT_EQ(ProgressText(Json::object(), 1, 2), "step 1/2");
}

TEST(Progress, LogLinesAtTheEndsEveryTwentiethAndAtEvals) {
  std::vector<int64_t> logged;
  for (int64_t done = 1; done <= 500; ++done) {
    if (ShouldLogStep(Json{{"reward_mean", 0.1}}, done, 500)) logged.push_back(done);
  }
  ASSERT_EQ(logged.size(), 21u);  // step 1, then 25, 50, ..., 500
  EXPECT_EQ(logged.front(), 1);
  EXPECT_EQ(logged[1], 25);
  EXPECT_EQ(logged.back(), 500);
  EXPECT_TRUE(ShouldLogStep(Json{{"eval_reward_mean", 0.3}}, 7, 500));
  for (int64_t done = 1; done <= 8; ++done) EXPECT_TRUE(ShouldLogStep(Json::object(), done, 8)) << done;
}

}  // namespace
}  // namespace llamarl::controller
