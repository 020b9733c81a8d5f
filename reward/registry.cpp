#include "reward/registry.h"

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
  if (!factory) {
    std::string known;
    for (const std::string& n : Names()) known += (known.empty() ? "" : ", ") + n;
    LLAMARL_FAIL("unknown reward '", name, "'; known: ", known);
  }
  // The factory runs unlocked: `weighted` builds its terms through this registry.
  return factory(config, path);
}

std::unique_ptr<Reward> MakeReward(const std::string& name, const Json& config, const std::string& path) {
  return RewardRegistry::Global().Make(name, config, path);
}

std::unique_ptr<Reward> MakeRewardFromSpec(const Json& spec, const std::string& path) {
  ConfigReader r(spec, path);
  std::string name;
  r.Require("name", &name, std::vector<std::string>{}, "registry name of the reward");
  const Json& config = r.Raw("config");
  r.Finish();
  return MakeReward(name, config, r.PathOf("config"));
}

}  // namespace llamarl::reward
