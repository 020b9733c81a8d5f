// The environments by name (env/environment.h): calculator and command built in.
#include "core/check.h"
#include "env/calculator.h"
#include "env/command_env.h"
#include "env/environment.h"

#include <map>
#include <mutex>

namespace llamarl::env {
namespace {

struct Registry {
  std::mutex mutex;
  std::map<std::string, EnvironmentMaker> makers;
};

Registry& Global() {
  static Registry* registry = [] {
    auto* r = new Registry();  // never destroyed, like the reward registry
    r->makers["calculator"] = [](const Json& config, const std::string& path) -> std::unique_ptr<EnvironmentFactory> {
      return MakeCalculatorFactory(CalculatorConfig::FromJson(config, path));
    };
    r->makers["command"] = [](const Json& config, const std::string& path) -> std::unique_ptr<EnvironmentFactory> {
      return MakeCommandEnvFactory(CommandEnvConfig::FromJson(config, path));
    };
    return r;
  }();
  return *registry;
}

}  // namespace

std::vector<std::string> EnvironmentNames() {
  Registry& r = Global();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& entry : r.makers) names.push_back(entry.first);
  return names;
}

void RegisterEnvironment(const std::string& name, EnvironmentMaker maker) {
  Registry& r = Global();
  std::lock_guard<std::mutex> lock(r.mutex);
  LLAMARL_CHECK(!name.empty(), "cannot register an environment with an empty name");
  LLAMARL_CHECK(r.makers.count(name) == 0, "environment '", name, "' is already registered; pick another name");
  r.makers[name] = std::move(maker);
}

std::unique_ptr<EnvironmentFactory> MakeEnvironmentFactory(const std::string& name, const Json& config,
                                                           const std::string& path) {
  EnvironmentMaker maker;
  {
    Registry& r = Global();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.makers.find(name);
    if (it != r.makers.end()) maker = it->second;
  }
  if (!maker) {
    std::string known;
    for (const std::string& n : EnvironmentNames()) known += (known.empty() ? "" : ", ") + n;
    LLAMARL_FAIL("unknown environment '", name, "'; known: ", known);
  }
  return maker(config, path);
}

}  // namespace llamarl::env
