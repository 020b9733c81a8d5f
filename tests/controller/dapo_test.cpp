// DAPO's controller-side parts against the standard-library Python transcription of the paper
// (tests/fixtures/controller/dapo.json, scripts/fixtures/dapo.py): the soft overlong punishment and
// the shaped reward, the dynamic-sampling group filter, and the batches BatchPlanner builds from a
// stream of finished groups (which are filtered, which are trained, where the per-step bound ends
// the run); then overlong filtering in the training batch and the replacement prompts' stream.
#include "controller/batch_planner.h"
#include "controller/job.h"
#include "reward/overlong.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

namespace llamarl::controller {
namespace {

const Json& Fixture() {
  static const Json fixture = ReadJsonFile(testing::FixturePath("controller/dapo.json"));
  return fixture;
}

TEST(DapoFixture, OverlongPenaltyMatchesThePaper) {
  ASSERT_GT(Fixture().at("overlong").size(), 20u);
  for (const Json& c : Fixture().at("overlong")) {
    SCOPED_TRACE(c.dump());
    EXPECT_DOUBLE_EQ(reward::OverlongPenalty(c.at("length"), c.at("max_new_tokens"), c.at("buffer")),
                     c.at("penalty").get<double>());
  }
  EXPECT_THROW(reward::OverlongPenalty(3, 4, 0), std::exception);
  EXPECT_THROW(reward::OverlongPenalty(3, 4, 5), std::exception);
}

TEST(DapoFixture, ShapedRewardsAddTheScaledPenalty) {
  for (const Json& c : Fixture().at("shaped")) {
    SCOPED_TRACE(c.dump());
    RolloutGroup g;
    RolloutSample s;
    s.response.assign(size_t(c.at("length").get<int64_t>()), 65);
    s.reward = c.at("score").get<double>();
    g.samples = {s, s};
    DapoRecipe dapo;
    dapo.overlong_buffer = c.at("buffer");
    dapo.overlong_penalty_factor = c.at("factor");
    dapo.overlong = "filter";
    ShapeRewards(&g, dapo, c.at("max_new_tokens"));
    EXPECT_EQ(g.samples[0].reward, c.at("score").get<double>()) << "only 'penalty' changes rewards";
    dapo.overlong = "penalty";
    ShapeRewards(&g, dapo, c.at("max_new_tokens"));
    for (const RolloutSample& shaped : g.samples) EXPECT_NEAR(shaped.reward, c.at("reward").get<double>(), 1e-12);
  }
}

TEST(DapoFixture, GroupFilterKeepsGroupsWithRewardVariance) {
  for (const Json& c : Fixture().at("group_filter")) {
    SCOPED_TRACE(c.dump());
    EXPECT_EQ(GroupHasSignal(c.at("rewards").get<std::vector<double>>()), c.at("keep").get<bool>());
  }
}

// On-policy (lag 0) with one replica, groups finish in admission order, so the planner meets the
// fixture's stream in its order: each admission takes the stream's next group.
TEST(DapoFixture, PlannerBatchesMatchTheStream) {
  for (const Json& stream : Fixture().at("streams")) {
    const int64_t per_step = stream.at("per_step"), steps = stream.at("steps");
    SCOPED_TRACE("per_step " + std::to_string(per_step) + ", max_gen_batches " + stream.at("max_gen_batches").dump());
    const auto groups = stream.at("groups").get<std::vector<std::vector<double>>>();
    BatchPlannerOptions o{per_step, /*max_policy_lag=*/0};
    o.dynamic_sampling = true;
    o.max_gen_batches = stream.at("max_gen_batches");
    BatchPlanner planner(o);
    std::vector<std::vector<int64_t>> batches, filtered;
    int64_t error_step = -1;
    for (int64_t step = 0; step < steps && error_step < 0; ++step) {
      try {
        std::optional<BatchPlan> plan;
        while (!plan) {
          const std::vector<Admission> admitted = planner.Admit();
          ASSERT_FALSE(admitted.empty()) << "the planner waits with nothing generating";
          for (const Admission& a : admitted) {
            ASSERT_LT(a.index, int64_t(groups.size())) << "the stream is long enough in the fixture";
            planner.OnReady(ReadyGroup{a.index, 0, 3, step, groups[size_t(a.index)]});
          }
          plan = planner.TryPlan(step, step);
        }
        std::vector<int64_t> trained, discarded;
        for (const RoutedGroup& g : plan->groups) trained.push_back(g.group_id);
        for (const ReadyGroup& g : plan->filtered) discarded.push_back(g.group_id);
        batches.push_back(trained);
        filtered.push_back(discarded);
      } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find("algorithm.dapo.max_gen_batches"), std::string::npos) << e.what();
        error_step = step;
      }
    }
    EXPECT_EQ(batches, stream.at("batches").get<std::vector<std::vector<int64_t>>>());
    EXPECT_EQ(filtered, stream.at("filtered").get<std::vector<std::vector<int64_t>>>());
    EXPECT_EQ(error_step, stream.at("error_step").is_null() ? -1 : stream.at("error_step").get<int64_t>());
  }
}

TEST(OverlongFilter, MasksOnlyTruncatedSamples) {
  RolloutGroup g;
  g.prompt = {1, 2};
  for (const char* reason : {"eos", "length", "stop"}) {
    RolloutSample s;
    s.response = {5, 6};
    s.logprobs = {-1, -1};
    s.finish_reason = reason;
    g.samples.push_back(s);
  }
  const TrainBatch masked = ToTrainBatch({g}, /*mask_truncated=*/true);
  EXPECT_FALSE(masked.samples[0].loss_masked);
  EXPECT_TRUE(masked.samples[1].loss_masked);
  EXPECT_FALSE(masked.samples[2].loss_masked);
  for (const TrainSample& s : ToTrainBatch({g}).samples) EXPECT_FALSE(s.loss_masked);
}

// Replacement prompts come after everything handed out so far; the next step's prompts after them,
// and the cursor a checkpoint saves counts them, so a resumed run continues the same stream.
TEST(StepPrompts, ExtraPromptsContinueTheStream) {
  Json j = Json::parse(R"({
    "data": {"source": "arithmetic", "arithmetic": {"num_items": 12, "seed": 1, "max_operands": 2,
             "operators": "+"}, "prompt": {"style": "plain", "plain_suffix": " "}, "eval": {"num_items": 2},
             "seed": 3},
    "reward": {"name": "arithmetic"}, "rollout": {"prompts_per_step": 3}, "run_dir": "unused"})");
  const RecipeConfig recipe = RecipeConfig::FromJson(j);
  const DatasetSplits data = LoadDataset(recipe.data);
  StepPrompts plain(data.train, recipe);
  std::vector<int64_t> stream;
  for (int64_t step = 0; step < 4; ++step)
    for (const DatasetItem& item : plain.ForStep(step)) stream.push_back(item.id);  // 12 items: epoch 0 + 2

  StepPrompts p(data.train, recipe);
  std::vector<int64_t> seen;
  for (const DatasetItem& item : p.ForStep(0)) seen.push_back(item.id);
  int64_t first = -1;
  for (const DatasetItem& item : p.Extra(4, &first)) seen.push_back(item.id);
  EXPECT_EQ(first, 3);
  const Cursor at1 = p.CursorAt(1);
  EXPECT_EQ(at1.index, 7);
  for (const DatasetItem& item : p.ForStep(1)) seen.push_back(item.id);
  EXPECT_EQ(seen, std::vector<int64_t>(stream.begin(), stream.begin() + 10));
  EXPECT_EQ(p.Extra(2, &first).size(), 2u);
  EXPECT_EQ(first, 10) << "epoch 1, index 0: 1 x 10 training items + 0";
  EXPECT_EQ(p.Extra(3, &first).size(), 3u);
  EXPECT_EQ(first, 12);

  StepPrompts resumed(data.train, recipe);
  resumed.Restore(at1, 1);
  std::vector<int64_t> again;
  for (const DatasetItem& item : resumed.ForStep(1)) again.push_back(item.id);
  EXPECT_EQ(again, std::vector<int64_t>(stream.begin() + 7, stream.begin() + 10));
}

}  // namespace
}  // namespace llamarl::controller
