// BatchPlanner against hand-worked schedules: the admission cap of (lag + 1) batches of live groups,
// admissions to the least busy replica, full batches in completion order, each async.on_stale
// choice counted (drops give their admission back), and longest-first routing to the least loaded
// trainer rank.
#include "controller/batch_planner.h"

#include <gtest/gtest.h>

namespace llamarl::controller {
namespace {

BatchPlannerOptions Options(int64_t per_step, int64_t lag, const std::string& on_stale = "train", int replicas = 1,
                            int trainers = 1, int64_t total = INT64_MAX) {
  return BatchPlannerOptions{per_step, lag, on_stale, replicas, trainers, total};
}

ReadyGroup Ready(int64_t id, int replica, int64_t tokens, int64_t min_version) {
  return ReadyGroup{id, replica, tokens, min_version, {1.0, 0.0}};
}

std::vector<int64_t> Ids(const BatchPlan& plan) {
  std::vector<int64_t> ids;
  for (const auto& g : plan.groups) ids.push_back(g.group_id);
  return ids;
}

TEST(BatchPlanner, AdmitsAtMostLagPlusOneBatchesOfLiveGroups) {
  BatchPlanner p(Options(/*per_step=*/2, /*lag=*/1));
  EXPECT_EQ(p.Admit().size(), 4u) << "(1 + 1) * 2 live groups";
  EXPECT_TRUE(p.Admit().empty()) << "nothing more until a batch is consumed";
  p.OnReady(Ready(0, 0, 5, 10));
  EXPECT_TRUE(p.Admit().empty()) << "a finished group is still live until it is trained on";
  p.OnReady(Ready(1, 0, 5, 10));
  ASSERT_TRUE(p.TryPlan(0, 10).has_value());
  EXPECT_EQ(p.Live(), 2);
  const std::vector<Admission> next = p.Admit();
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].index, 4);
  EXPECT_EQ(next[1].index, 5);
}

TEST(BatchPlanner, OnPolicyLagAdmitsExactlyOneBatch) {
  BatchPlanner p(Options(3, 0));
  EXPECT_EQ(p.Admit().size(), 3u);
  EXPECT_TRUE(p.Admit().empty());
}

TEST(BatchPlanner, AdmissionsGoToTheReplicaWithFewestGroupsGenerating) {
  BatchPlanner p(Options(2, 1, "train", /*replicas=*/2));
  std::vector<Admission> a = p.Admit();
  ASSERT_EQ(a.size(), 4u);
  EXPECT_EQ(a[0].replica, 0);  // ties go to the lowest replica: 0, 1, 0, 1
  EXPECT_EQ(a[1].replica, 1);
  EXPECT_EQ(a[2].replica, 0);
  EXPECT_EQ(a[3].replica, 1);
  // Replica 1 finishes both of its groups; they form step 0's batch, and both new admissions go
  // to replica 1, which has none generating (replica 0 still has two).
  p.OnReady(Ready(1, 1, 3, 0));
  p.OnReady(Ready(3, 1, 3, 0));
  ASSERT_TRUE(p.TryPlan(0, 0).has_value());
  a = p.Admit();
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].replica, 1);
  EXPECT_EQ(a[1].replica, 1);
}

TEST(BatchPlanner, StopsAdmittingAtTheRunsLastGroup) {
  BatchPlanner p(Options(2, 3, "train", 1, 1, /*total=*/5));
  EXPECT_EQ(p.Admit().size(), 5u) << "the cap (8) is above what the run trains";
}

TEST(BatchPlanner, FullBatchesInCompletionOrder) {
  BatchPlanner p(Options(3, 2));
  p.Admit();
  p.OnReady(Ready(4, 0, 9, 7));
  p.OnReady(Ready(2, 0, 1, 7));
  EXPECT_FALSE(p.TryPlan(0, 7).has_value()) << "two finished groups do not make a batch of three";
  p.OnReady(Ready(0, 0, 50, 7));
  p.OnReady(Ready(1, 0, 2, 7));
  std::optional<BatchPlan> plan = p.TryPlan(0, 7);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{4, 2, 0}));
  EXPECT_EQ(p.NumReady(), 1);
}

TEST(BatchPlanner, StaleGroupsAreTrainedByDefaultAndCounted) {
  BatchPlanner p(Options(2, 1));
  p.Admit();
  p.OnReady(Ready(0, 0, 4, 3));  // trainer at 5, bound 4: stale
  p.OnReady(Ready(1, 0, 4, 4));  // within
  std::optional<BatchPlan> plan = p.TryPlan(0, 5);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{0, 1}));
  EXPECT_TRUE(plan->groups[0].stale);
  EXPECT_FALSE(plan->groups[0].recompute);
  EXPECT_FALSE(plan->groups[1].stale);
  EXPECT_EQ(plan->stale_trained, 1);
  EXPECT_EQ(plan->stale_recomputed, 0);
  EXPECT_TRUE(plan->dropped.empty());
  EXPECT_EQ(p.TotalDropped(), 0);
}

TEST(BatchPlanner, DropDiscardsStaleGroupsAndGivesTheirAdmissionBack) {
  BatchPlanner p(Options(2, 1, "drop", 1, 1, /*total=*/4));
  EXPECT_EQ(p.Admit().size(), 4u);
  p.OnReady(Ready(0, 0, 4, 3));  // stale at trainer version 5
  p.OnReady(Ready(1, 0, 4, 5));
  EXPECT_FALSE(p.TryPlan(0, 5).has_value()) << "one usable group left: the batch waits rather than shrink";
  EXPECT_EQ(p.TotalDropped(), 1);
  EXPECT_EQ(p.Admit().size(), 1u) << "the dropped group's admission comes back, past the run's total";
  p.OnReady(Ready(2, 0, 6, 5));
  std::optional<BatchPlan> plan = p.TryPlan(0, 5);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{1, 2}));
  ASSERT_EQ(plan->dropped.size(), 1u) << "the plan that completes the batch carries the drop";
  EXPECT_EQ(plan->dropped[0].group_id, 0);
  EXPECT_EQ(plan->stale_trained, 0);
}

TEST(BatchPlanner, RecomputeMarksStaleGroups) {
  BatchPlanner p(Options(2, 0, "recompute"));
  p.Admit();
  p.OnReady(Ready(0, 0, 4, 6));
  p.OnReady(Ready(1, 0, 4, 7));
  std::optional<BatchPlan> plan = p.TryPlan(0, 7);
  ASSERT_TRUE(plan.has_value());
  EXPECT_TRUE(plan->groups[0].recompute);
  EXPECT_FALSE(plan->groups[1].recompute);
  EXPECT_EQ(plan->stale_recomputed, 1);
  EXPECT_EQ(plan->stale_trained, 0);
}

TEST(BatchPlanner, RoutesLongestFirstToTheLeastLoadedTrainer) {
  BatchPlanner p(Options(5, 0, "train", 2, /*trainers=*/2));
  p.Admit();
  // Tokens 10, 40, 30, 20, 5 (completion order). Longest first: 40 -> t0; 30 -> t1 (every rank gets
  // one first); 20 -> t1 (30 < 40, now 50); 10 -> t0 (40 < 50, now 50); 5 -> t0 (a tie goes to the
  // lower index, now 55).
  const int64_t tokens[] = {10, 40, 30, 20, 5};
  for (int64_t i = 0; i < 5; ++i) p.OnReady(Ready(i, int(i % 2), tokens[i], 0));
  std::optional<BatchPlan> plan = p.TryPlan(0, 0);
  ASSERT_TRUE(plan.has_value());
  std::vector<int> trainer;
  for (const auto& g : plan->groups) trainer.push_back(g.trainer);
  EXPECT_EQ(trainer, (std::vector<int>{0, 0, 1, 1, 0}));
  EXPECT_EQ(plan->trainer_tokens, (std::vector<int64_t>{55, 50}));
  // What each trainer receives from each replica, in sending order.
  EXPECT_EQ(plan->GroupsFor(0, 0), (std::vector<int64_t>{0, 4}));
  EXPECT_EQ(plan->GroupsFor(0, 1), (std::vector<int64_t>{1}));
  EXPECT_EQ(plan->GroupsFor(1, 0), (std::vector<int64_t>{2}));
  EXPECT_EQ(plan->GroupsFor(1, 1), (std::vector<int64_t>{3}));
}

TEST(BatchPlanner, PlanSurvivesItsJsonRoundTrip) {
  BatchPlanner p(Options(2, 0, "recompute", 1, 2));
  p.Admit();
  p.OnReady(Ready(0, 0, 4, 1));
  p.OnReady(Ready(1, 0, 3, 2));
  const BatchPlan plan = *p.TryPlan(3, 2);
  const BatchPlan back = BatchPlan::FromJson(plan.ToJson());
  EXPECT_EQ(back.ToJson(), plan.ToJson());
  EXPECT_EQ(back.step, 3);
  EXPECT_TRUE(back.groups[0].recompute);
}

TEST(BatchPlanner, ReadyNoticeRoundTripAndErrors) {
  const ReadyGroup g = Ready(7, 1, 12, 3);
  const ReadyGroup back = ReadyGroup::FromJson(g.ToJson(), 1);
  EXPECT_EQ(back.group_id, 7);
  EXPECT_EQ(back.tokens, 12);
  EXPECT_EQ(back.min_version, 3);
  EXPECT_EQ(back.rewards, g.rewards);
  try {
    BatchPlanner bad(Options(2, 0, "skip"));
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("async.on_stale: unknown 'skip'; known: train, drop, recompute"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace llamarl::controller
