#include "controller/batch_planner.h"

#include <algorithm>
#include <numeric>
#include <utility>

#include "core/check.h"

namespace llamarl::controller {

Json ReadyGroup::ToJson() const {
  return {{"kind", "ready"}, {"group_id", group_id}, {"tokens", tokens}, {"min_version", min_version},
          {"rewards", rewards}};
}

ReadyGroup ReadyGroup::FromJson(const Json& j, int replica) {
  ReadyGroup g;
  g.group_id = j.at("group_id").get<int64_t>();
  g.replica = replica;
  g.tokens = j.at("tokens").get<int64_t>();
  g.min_version = j.at("min_version").get<int64_t>();
  g.rewards = j.at("rewards").get<std::vector<double>>();
  return g;
}

bool GroupHasSignal(const std::vector<double>& rewards) {
  for (double r : rewards)
    if (r != rewards.front()) return true;
  return false;
}

std::vector<int64_t> BatchPlan::GroupsFor(int trainer, int replica) const {
  std::vector<int64_t> ids;
  for (const RoutedGroup& g : groups)
    if (g.trainer == trainer && g.replica == replica) ids.push_back(g.group_id);
  return ids;
}

Json BatchPlan::ToJson() const {
  Json routed = Json::array();
  for (const RoutedGroup& g : groups)
    routed.push_back({g.group_id, g.replica, g.trainer, g.tokens, int(g.stale), int(g.recompute)});
  const auto ids = [](const std::vector<ReadyGroup>& groups) {
    Json out = Json::array();
    for (const ReadyGroup& g : groups) out.push_back({g.group_id, g.replica});
    return out;
  };
  return {{"step", step}, {"groups", routed}, {"dropped", ids(dropped)}, {"filtered", ids(filtered)},
          {"stale_trained", stale_trained},
          {"stale_recomputed", stale_recomputed}, {"trainer_tokens", trainer_tokens}};
}

BatchPlan BatchPlan::FromJson(const Json& j) {
  BatchPlan p;
  p.step = j.at("step").get<int64_t>();
  for (const Json& g : j.at("groups")) {
    p.groups.push_back(RoutedGroup{g[0].get<int64_t>(), g[1].get<int>(), g[2].get<int>(), g[3].get<int64_t>(),
                                   g[4].get<int>() != 0, g[5].get<int>() != 0});
  }
  for (const char* key : {"dropped", "filtered"}) {
    for (const Json& g : j.at(key)) {
      ReadyGroup r;
      r.group_id = g[0].get<int64_t>();
      r.replica = g[1].get<int>();
      (std::string(key) == "dropped" ? p.dropped : p.filtered).push_back(r);
    }
  }
  p.stale_trained = j.at("stale_trained").get<int64_t>();
  p.stale_recomputed = j.at("stale_recomputed").get<int64_t>();
  p.trainer_tokens = j.at("trainer_tokens").get<std::vector<int64_t>>();
  return p;
}

BatchPlanner::BatchPlanner(BatchPlannerOptions options) : options_(std::move(options)) {
  LLAMARL_CHECK(options_.groups_per_step >= 1 && options_.max_policy_lag >= 0 && options_.num_replicas >= 1 &&
                    options_.num_trainers >= 1,
                "batch planner: groups_per_step (", options_.groups_per_step, ") , replicas (",
                options_.num_replicas, ") and trainers (", options_.num_trainers,
                ") must be >= 1 and max_policy_lag (", options_.max_policy_lag, ") >= 0");
  LLAMARL_CHECK(options_.on_stale == "train" || options_.on_stale == "drop" || options_.on_stale == "recompute",
                "async.on_stale: unknown '", options_.on_stale, "'; known: train, drop, recompute");
  LLAMARL_CHECK(options_.max_gen_batches >= 1, "algorithm.dapo.max_gen_batches (", options_.max_gen_batches,
                ") must be >= 1");
  generating_.assign(size_t(options_.num_replicas), 0);
}

std::vector<Admission> BatchPlanner::Admit() {
  const int64_t cap = (options_.max_policy_lag + 1) * options_.groups_per_step;
  std::vector<Admission> out;
  // A dropped or filtered group gives its admission back, so the run still trains total_groups groups.
  while (Live() < cap && restored_ + admitted_ - dropped_ - filtered_ < options_.total_groups) {
    const int replica =
        options_.in_order ? int((options_.first_index + admitted_) % options_.num_replicas)
                          : int(std::min_element(generating_.begin(), generating_.end()) - generating_.begin());
    const int64_t index = options_.first_index + admitted_++;
    out.push_back(Admission{replica, index});
    ++generating_[size_t(replica)];
    if (options_.in_order) order_.push_back(index);
  }
  return out;
}

void BatchPlanner::Restore(const std::vector<ReadyGroup>& groups) {
  LLAMARL_CHECK(admitted_ == 0 && restored_ == 0, "batch planner: Restore after admissions");
  std::vector<int64_t> ids;
  for (const ReadyGroup& g : groups) {
    LLAMARL_CHECK(g.group_id < options_.first_index && g.replica >= 0 && g.replica < options_.num_replicas,
                  "batch planner: restored group ", g.group_id, " (replica ", g.replica,
                  ") must have been admitted before index ", options_.first_index);
    ++generating_[size_t(g.replica)];
    ids.push_back(g.group_id);
  }
  std::sort(ids.begin(), ids.end());
  if (options_.in_order) order_.insert(order_.begin(), ids.begin(), ids.end());
  restored_ = int64_t(groups.size());
}

std::vector<ReadyGroup> BatchPlanner::FinishedBefore(int64_t index) const {
  std::vector<ReadyGroup> out;
  for (const ReadyGroup& g : ready_)
    if (g.group_id < index) out.push_back(g);
  std::sort(out.begin(), out.end(), [](const ReadyGroup& a, const ReadyGroup& b) { return a.group_id < b.group_id; });
  return out;
}

void BatchPlanner::OnReady(ReadyGroup group) {
  LLAMARL_ASSERT(group.replica >= 0 && group.replica < options_.num_replicas && generating_[size_t(group.replica)] > 0,
                 "ready notice of group ", group.group_id, " from replica ", group.replica,
                 " which has no group generating");
  --generating_[size_t(group.replica)];
  ready_.push_back(std::move(group));
}

bool BatchPlanner::IsStale(const ReadyGroup& group, int64_t trainer_version) const {
  return group.tokens > 0 && group.min_version < trainer_version - options_.max_policy_lag;
}

BatchPlanner::Decision BatchPlanner::Decide(const ReadyGroup& group, int64_t trainer_version) const {
  if (options_.dynamic_sampling && !GroupHasSignal(group.rewards)) return Decision::kFilter;
  if (!IsStale(group, trainer_version) || options_.on_stale == "train") return Decision::kTrain;
  return options_.on_stale == "drop" ? Decision::kDrop : Decision::kRecompute;
}

void BatchPlanner::CheckFilteredBound(int64_t step) const {
  const int64_t allowed = (options_.max_gen_batches - 1) * options_.groups_per_step;
  LLAMARL_CHECK(int64_t(filtered_pending_.size()) <= allowed, "RL step ", step, ": ", filtered_pending_.size(),
                " finished groups had rewards all equal (no signal) and were discarded, more than the ", allowed,
                " that algorithm.dapo.max_gen_batches (", options_.max_gen_batches, ") allows per step ((",
                options_.max_gen_batches, " - 1) x rollout.prompts_per_step ", options_.groups_per_step,
                "); the task is too easy or too hard for the policy: raise algorithm.dapo.max_gen_batches or ",
                "set algorithm.dapo.dynamic_sampling to false");
}

void BatchPlanner::Discard(Decision d, ReadyGroup group) {
  ++(d == Decision::kDrop ? dropped_ : filtered_);
  (d == Decision::kDrop ? dropped_pending_ : filtered_pending_).push_back(std::move(group));
}

BatchPlan BatchPlanner::StartPlan(int64_t step) {
  BatchPlan plan;
  plan.step = step;
  plan.dropped = std::move(dropped_pending_);
  dropped_pending_.clear();
  plan.filtered = std::move(filtered_pending_);
  filtered_pending_.clear();
  return plan;
}

void BatchPlanner::AddToPlan(const ReadyGroup& g, int64_t trainer_version, BatchPlan* plan) const {
  RoutedGroup r{g.group_id, g.replica, 0, g.tokens, IsStale(g, trainer_version), false};
  r.recompute = Decide(g, trainer_version) == Decision::kRecompute;
  plan->stale_trained += r.stale && !r.recompute;
  plan->stale_recomputed += r.recompute;
  plan->groups.push_back(r);
}

std::optional<BatchPlan> BatchPlanner::TryPlan(int64_t step, int64_t trainer_version) {
  if (options_.in_order) return TryPlanInOrder(step, trainer_version);
  // Versions only grow, so a group stale now stays stale, and a group's rewards never change: either
  // is discarded at once and its admission given back, even while the batch is not complete yet.
  for (auto it = ready_.begin(); it != ready_.end();) {
    const Decision d = Decide(*it, trainer_version);
    if (d != Decision::kDrop && d != Decision::kFilter) {
      ++it;
      continue;
    }
    Discard(d, std::move(*it));
    it = ready_.erase(it);
  }
  CheckFilteredBound(step);
  if (int64_t(ready_.size()) < options_.groups_per_step) return std::nullopt;
  BatchPlan plan = StartPlan(step);
  for (int64_t i = 0; i < options_.groups_per_step; ++i) {
    AddToPlan(ready_.front(), trainer_version, &plan);
    ready_.pop_front();
  }
  consumed_ += options_.groups_per_step;
  Route(&plan);
  return plan;
}

std::optional<BatchPlan> BatchPlanner::TryPlanInOrder(int64_t step, int64_t trainer_version) {
  // Scan the live groups in admission order up to the first that has not finished. A stale group
  // met on the way is dropped at once (its admission given back): any later call for this step
  // would scan past it too, so when it is dropped does not change the plan. The kept groups are
  // taken only once groups_per_step of them are known, so the plan does not depend on when it is asked.
  auto ready_at = [&](int64_t id) {
    return std::find_if(ready_.begin(), ready_.end(), [&](const ReadyGroup& g) { return g.group_id == id; });
  };
  size_t scanned = 0;  // the groups kept so far: order_[0, scanned)
  while (scanned < order_.size() && int64_t(scanned) < options_.groups_per_step) {
    auto it = ready_at(order_[scanned]);
    if (it == ready_.end()) break;
    const Decision d = Decide(*it, trainer_version);
    if (d == Decision::kDrop || d == Decision::kFilter) {
      Discard(d, std::move(*it));
      ready_.erase(it);
      order_.erase(order_.begin() + std::ptrdiff_t(scanned));
      continue;
    }
    ++scanned;
  }
  CheckFilteredBound(step);
  if (int64_t(scanned) < options_.groups_per_step) return std::nullopt;
  BatchPlan plan = StartPlan(step);
  for (size_t i = 0; i < scanned; ++i) {
    auto it = ready_at(order_.front());
    order_.pop_front();
    AddToPlan(*it, trainer_version, &plan);
    ++consumed_;
    ready_.erase(it);
  }
  Route(&plan);
  return plan;
}

void BatchPlanner::Route(BatchPlan* plan) const {
  std::vector<size_t> order(plan->groups.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return plan->groups[a].tokens > plan->groups[b].tokens; });
  plan->trainer_tokens.assign(size_t(options_.num_trainers), 0);
  // Every rank gets a group first (groups_per_step >= num_trainers), then the least loaded the next.
  std::vector<int64_t> count(size_t(options_.num_trainers), 0);
  for (size_t i : order) {
    int best = 0;
    for (int t = 1; t < options_.num_trainers; ++t) {
      const auto key = [&](int x) { return std::make_pair(count[size_t(x)] > 0, plan->trainer_tokens[size_t(x)]); };
      if (key(t) < key(best)) best = t;
    }
    plan->groups[i].trainer = best;
    plan->trainer_tokens[size_t(best)] += plan->groups[i].tokens;
    ++count[size_t(best)];
  }
}

}  // namespace llamarl::controller
