// Rewards by name. A recipe names its reward as
//   "reward": {"name": "gsm8k", "config": {"correct_score": 1.0}}
// and an unknown name lists the known ones:
//   unknown reward 'gsm9k'; known: arithmetic, command, countdown, format, gsm8k, weighted
//
// Thread-safety: lookups and registration lock a mutex; register extra rewards at startup.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "reward/reward.h"

namespace llamarl::reward {

// Builds a reward from its config object; `path` names that object in errors ("reward.config").
using RewardFactory = std::function<std::unique_ptr<Reward>(const Json& config, const std::string& path)>;

class RewardRegistry {
 public:
  // The process-wide registry, holding the built-in rewards.
  static RewardRegistry& Global();

  // Throws when `name` is already registered.
  void Register(const std::string& name, RewardFactory factory);
  // Throws for an unknown name, listing the known ones, and for an invalid config.
  std::unique_ptr<Reward> Make(const std::string& name, const Json& config, const std::string& path) const;
  std::vector<std::string> Names() const;  // sorted

 private:
  mutable std::mutex mutex_;
  std::map<std::string, RewardFactory> factories_;
};

// From the global registry.
std::unique_ptr<Reward> MakeReward(const std::string& name, const Json& config,
                                   const std::string& path = "reward.config");
// From a spec {"name": ..., "config": {...}} ("config" optional); `path` names the spec in errors.
std::unique_ptr<Reward> MakeRewardFromSpec(const Json& spec, const std::string& path = "reward");

}  // namespace llamarl::reward
