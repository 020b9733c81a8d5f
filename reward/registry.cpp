#include "reward/registry.h"

#include <algorithm>

#include "core/check.h"
#include "reward/arithmetic.h"
#include "reward/command.h"
#include "reward/countdown.h"
#include "reward/format.h"
#include "reward/gsm8k.h"
#include "reward/weighted.h"

namespace llamarl::reward {
namespace {

// Wraps `Type(Config::FromJson(config, path))` as a factory.
template <typename Type, typename Config>
RewardFactory Factory() {
  return [](const Json& config, const std::string& path) -> std::unique_ptr<Reward> {
    return std::make_unique<Type>(Config::FromJson(config, path));
  };
}

std::string Joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

std::string KnownRewards() { return Joined(RewardRegistry::Global().Names()); }

void RegisterBuiltins(RewardRegistry* registry) {
  registry->Register("gsm8k", Factory<Gsm8kReward, Gsm8kConfig>());
  registry->Register("arithmetic", Factory<ArithmeticReward, ArithmeticConfig>());
  registry->Register("countdown", Factory<CountdownReward, CountdownConfig>());
  registry->Register("format", Factory<FormatReward, FormatConfig>());
  registry->Register("command", Factory<CommandReward, CommandConfig>());
  registry->Register("weighted", [](const Json& config, const std::string& path) -> std::unique_ptr<Reward> {
    return WeightedReward::FromJson(config, path);
  });
}

}  // namespace

RewardRegistry& RewardRegistry::Global() {
  static RewardRegistry* registry = [] {
    auto* r = new RewardRegistry();  // never destroyed: rewards may be built during static teardown
    RegisterBuiltins(r);
    return r;
  }();
  return *registry;
}

void RewardRegistry::Register(const std::string& name, RewardFactory factory) {
  std::lock_guard<std::mutex> lock(mutex_);
  LLAMARL_CHECK(!name.empty(), "cannot register a reward with an empty name");
  LLAMARL_CHECK(factories_.count(name) == 0, "reward '", name, "' is already registered; pick another name");
  factories_[name] = std::move(factory);
}

std::vector<std::string> RewardRegistry::Names() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::vector<std::string> names;
  for (const auto& entry : factories_) names.push_back(entry.first);
  return names;
}

std::unique_ptr<Reward> RewardRegistry::Make(const std::string& name, const Json& config,
                                             const std::string& path) const {
  RewardFactory factory;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = factories_.find(name);
    if (it != factories_.end()) factory = it->second;
  }
  if (!factory) LLAMARL_FAIL("unknown reward '", name, "'; known: ", Joined(Names()));
  // The factory runs unlocked: `weighted` builds its terms through this registry.
  return factory(config, path);
}

std::unique_ptr<Reward> MakeReward(const std::string& name, const Json& config, const std::string& path) {
  return RewardRegistry::Global().Make(name, config, path);
}

RewardSpec RewardSpec::FromJson(const Json& j, const std::string& path) {
  LLAMARL_CHECK(!j.is_null(), path, ": missing; name a reward, e.g. {\"name\": \"arithmetic\"}; known: ", KnownRewards());
  RewardSpec spec;
  spec.path = path;
  ConfigReader r(j, path);
  r.Require("name", &spec.name, std::vector<std::string>{}, "registry name of the reward");
  if (const Json& config = r.Raw("config"); !config.is_null()) spec.config = config;
  r.Finish();
  spec.Make();  // an unknown name or a bad config fails now
  return spec;
}

RewardSpec RewardSpec::Named(const std::string& name, const std::string& path) {
  RewardSpec spec;
  spec.name = name;
  spec.path = path;
  spec.Make();
  return spec;
}

std::unique_ptr<Reward> RewardSpec::Make() const {
  const std::vector<std::string> known = RewardRegistry::Global().Names();
  LLAMARL_CHECK(std::find(known.begin(), known.end(), name) != known.end(), path, ": unknown reward '", name,
                "'; known: ", KnownRewards());
  return MakeReward(name, config, path + ".config");
}

Json RewardSpec::ToJson() const { return Json{{"name", name}, {"config", config}}; }

}  // namespace llamarl::reward
