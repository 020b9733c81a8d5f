// BatchPlanner against hand-worked schedules: the admission cap of (lag + 1) batches of live groups,
// admissions to the least busy replica, full batches in completion order, each async.on_stale
// choice counted (drops give their admission back), DAPO's dynamic sampling (filtered groups give
// their admission back at once, the per-step bound), longest-first routing to the least loaded
// trainer rank; in order (async.deterministic): batches in admission order whatever the completion
// order, admissions in turn, and the finished groups a checkpoint keeps restored in a new planner.
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

BatchPlannerOptions Sampling(int64_t per_step, int64_t lag, int64_t max_gen_batches, int64_t total = INT64_MAX) {
  BatchPlannerOptions o = Options(per_step, lag, "train", 1, 1, total);
  o.dynamic_sampling = true;
  o.max_gen_batches = max_gen_batches;
  return o;
}

ReadyGroup WithRewards(int64_t id, std::vector<double> rewards, int64_t min_version = 0) {
  ReadyGroup g = Ready(id, 0, 4, min_version);
  g.rewards = std::move(rewards);
  return g;
}

// The replacement of a filtered group is admitted while the controller still waits for the batch
// (the earlier attempt only admitted after the next weight push, so a step whose batch lost a group
// never filled).
TEST(BatchPlanner, FilteredGroupGivesItsAdmissionBackAtOnce) {
  BatchPlanner p(Sampling(/*per_step=*/2, /*lag=*/0, /*max_gen_batches=*/3, /*total=*/4));
  ASSERT_EQ(p.Admit().size(), 2u);
  p.OnReady(WithRewards(0, {1, 1, 1}));
  p.OnReady(WithRewards(1, {0, 1, 0}));
  EXPECT_FALSE(p.TryPlan(0, 0).has_value()) << "one group with signal is not a batch of two";
  EXPECT_EQ(p.Live(), 1) << "the filtered group is no longer live";
  EXPECT_EQ(p.TotalFiltered(), 1);
  const std::vector<Admission> replacement = p.Admit();
  ASSERT_EQ(replacement.size(), 1u) << "its admission is given back before any push";
  EXPECT_EQ(replacement[0].index, 2);
  p.OnReady(WithRewards(2, {0, 0, 0.5}));
  const std::optional<BatchPlan> plan = p.TryPlan(0, 0);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{1, 2}));
  ASSERT_EQ(plan->filtered.size(), 1u);
  EXPECT_EQ(plan->filtered[0].group_id, 0);
  EXPECT_TRUE(plan->dropped.empty());
  // The run's 4 groups are still all trained: the cap on admissions grows by the filtered group.
  EXPECT_EQ(p.Admit().size(), 2u);
  EXPECT_TRUE(p.Admit().empty());
}

TEST(BatchPlanner, FilterComesBeforeOnStaleAndEveryPlannedGroupHasSignal) {
  BatchPlannerOptions o = Sampling(2, 1, 5);
  o.on_stale = "drop";
  BatchPlanner p(o);
  p.Admit();
  p.OnReady(WithRewards(0, {1, 1}, /*min_version=*/0));  // stale at version 5 and without signal
  p.OnReady(WithRewards(1, {1, 0}, 0));                  // stale: dropped
  p.OnReady(WithRewards(2, {0, 1}, 5));
  p.OnReady(WithRewards(3, {0.25, 0.25}, 5));
  EXPECT_FALSE(p.TryPlan(0, 5).has_value());
  EXPECT_EQ(p.TotalFiltered(), 2);
  EXPECT_EQ(p.TotalDropped(), 1);
  EXPECT_EQ(p.Admit().size(), 3u) << "each discarded group's admission comes back";
  p.OnReady(WithRewards(4, {1, 0}, 5));
  const BatchPlan plan = *p.TryPlan(0, 5);
  EXPECT_EQ(Ids(plan), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(plan.filtered.size(), 2u);
  EXPECT_EQ(plan.dropped.size(), 1u);
  const BatchPlan back = BatchPlan::FromJson(plan.ToJson());
  EXPECT_EQ(back.ToJson(), plan.ToJson());
  ASSERT_EQ(back.filtered.size(), 2u);
  EXPECT_EQ(back.filtered[1].group_id, 3);
}

TEST(BatchPlanner, TooManyFilteredGroupsInOneStepNameTheKey) {
  BatchPlanner p(Sampling(/*per_step=*/2, 0, /*max_gen_batches=*/2));  // at most 2 filtered a step
  p.Admit();
  p.OnReady(WithRewards(0, {0, 0}));
  p.OnReady(WithRewards(1, {0, 0}));
  EXPECT_FALSE(p.TryPlan(0, 0).has_value()) << "2 filtered groups are within the bound";
  p.Admit();
  p.OnReady(WithRewards(2, {1, 0}));
  p.OnReady(WithRewards(3, {1, 1}));
  try {
    p.TryPlan(0, 0);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("RL step 0: 3 finished groups had rewards all equal"), std::string::npos) << what;
    EXPECT_NE(what.find("algorithm.dapo.max_gen_batches (2) allows"), std::string::npos) << what;
  }
}

TEST(BatchPlanner, WithoutDynamicSamplingGroupsWithoutSignalAreTrained) {
  BatchPlanner p(Options(2, 0));
  p.Admit();
  p.OnReady(WithRewards(0, {1, 1}));
  p.OnReady(WithRewards(1, {0, 0}));
  ASSERT_TRUE(p.TryPlan(0, 0).has_value());
  EXPECT_EQ(p.TotalFiltered(), 0);
}

BatchPlannerOptions InOrder(int64_t per_step, int64_t lag, int replicas, int64_t first_index,
                            const std::string& on_stale = "train", int64_t total = INT64_MAX) {
  BatchPlannerOptions o = Options(per_step, lag, on_stale, replicas, 1, total);
  o.in_order = true;
  o.first_index = first_index;
  return o;
}

TEST(BatchPlanner, InOrderBatchesFollowAdmissionsNotCompletions) {
  BatchPlanner p(InOrder(/*per_step=*/2, /*lag=*/1, /*replicas=*/2, /*first_index=*/10));
  const std::vector<Admission> a = p.Admit();
  ASSERT_EQ(a.size(), 4u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].index, 10 + int64_t(i)) << "the run's indices start at first_index";
    EXPECT_EQ(a[i].replica, int(a[i].index % 2)) << "in turn, not by load";
  }
  // Groups 13, 12 and 11 finish first: step 0 still needs group 10, so nothing is planned.
  p.OnReady(Ready(13, 1, 9, 0));
  p.OnReady(Ready(12, 0, 9, 0));
  p.OnReady(Ready(11, 1, 9, 0));
  EXPECT_FALSE(p.TryPlan(0, 0).has_value()) << "a completion-order planner would take 13 and 12";
  p.OnReady(Ready(10, 0, 9, 0));
  std::optional<BatchPlan> plan = p.TryPlan(0, 0);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{10, 11}));
  plan = p.TryPlan(1, 1);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{12, 13}));
}

TEST(BatchPlanner, InOrderDropsAStaleGroupWhenTheScanReachesIt) {
  BatchPlanner p(InOrder(2, 0, 1, 0, "drop"));
  ASSERT_EQ(p.Admit().size(), 2u);
  p.OnReady(Ready(1, 0, 4, 5));
  EXPECT_FALSE(p.TryPlan(0, 5).has_value());
  EXPECT_EQ(p.TotalDropped(), 0) << "group 0 has not finished: the scan stops there";
  p.OnReady(Ready(0, 0, 4, 3));  // older than version 5 - lag 0
  EXPECT_FALSE(p.TryPlan(0, 5).has_value());
  EXPECT_EQ(p.TotalDropped(), 1) << "dropped when the scan reached it";
  const std::vector<Admission> again = p.Admit();
  ASSERT_EQ(again.size(), 1u) << "its admission is given back";
  EXPECT_EQ(again[0].index, 2);
  p.OnReady(Ready(2, 0, 4, 5));
  std::optional<BatchPlan> plan = p.TryPlan(0, 5);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{1, 2}));
  ASSERT_EQ(plan->dropped.size(), 1u);
  EXPECT_EQ(plan->dropped[0].group_id, 0);
}

TEST(BatchPlanner, InOrderCheckpointRestoresTheFinishedLiveGroups) {
  // Lag 1, 2 per step: after step 0 is planned and step 2 admitted, step 1's groups (2, 3) have
  // finished and step 2's (4, 5) are generating: the checkpoint keeps 2 and 3, and admissions resume at 4.
  BatchPlanner p(InOrder(2, 1, 1, 0));
  p.Admit();
  for (int64_t id = 0; id < 4; ++id) p.OnReady(Ready(id, 0, 5 + id, 0));
  ASSERT_TRUE(p.TryPlan(0, 0).has_value());
  ASSERT_EQ(p.Admit().size(), 2u);
  EXPECT_EQ(p.NextIndex(), 6);
  p.OnReady(Ready(5, 0, 1, 1));  // one of the new admissions finished already: not kept
  const std::vector<ReadyGroup> kept = p.FinishedBefore(p.NextIndex() - 2);
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[0].group_id, 2);
  EXPECT_EQ(kept[1].group_id, 3);

  BatchPlanner q(InOrder(2, 1, 1, /*first_index=*/4));
  q.Restore(kept);
  EXPECT_EQ(q.Live(), 2);
  const std::vector<Admission> a = q.Admit();
  ASSERT_EQ(a.size(), 2u) << "the same admissions as the uninterrupted planner's";
  EXPECT_EQ(a[0].index, 4);
  EXPECT_EQ(a[1].index, 5);
  q.OnReady(Ready(5, 0, 1, 1));
  q.OnReady(Ready(3, 0, 8, 0));
  q.OnReady(Ready(2, 0, 7, 0));
  std::optional<BatchPlan> plan = q.TryPlan(1, 1);
  ASSERT_TRUE(plan.has_value());
  EXPECT_EQ(Ids(*plan), (std::vector<int64_t>{2, 3}));
  EXPECT_FALSE(q.TryPlan(2, 2).has_value()) << "group 4 is still generating";
}

}  // namespace
}  // namespace llamarl::controller
