// Rewards by name. A recipe names its reward as (RewardSpec, below)
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

// A reward named in a config section, the recipe's "reward" (or the calculator environment's
// "env.config.reward"):
//   {"name": "gsm8k", "config": {"correct_score": 1.0}}    ("config" optional)
// The config's schema is the named reward's own, so it is kept as JSON and read by that reward's
// reader; FromJson checks both now by building the reward once, so a bad spec fails when the recipe
// is read and not on a worker, and `path` stays with the spec so that every error names the key as
// the recipe has it ("reward: unknown reward 'gsm9k'; known: ...", "reward.config: unknown key 'x'; known: ...").
struct RewardSpec {
  std::string name;              // registry name
  Json config = Json::object();  // the named reward's own section
  std::string path = "reward";   // where the spec sits, for errors

  // Reads {"name", "config"} at `path`; unknown keys and an unknown name are errors naming the path.
  static RewardSpec FromJson(const Json& j, const std::string& path);
  // The reward `name` with its default config (`llamarl eval --reward NAME`), checked the same way.
  static RewardSpec Named(const std::string& name, const std::string& path);
  // A fresh reward (rewards are not thread-safe: one per thread that scores).
  std::unique_ptr<Reward> Make() const;
  Json ToJson() const;  // {"name", "config"}
};

}  // namespace llamarl::reward
