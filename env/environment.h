// Environments for multi-turn and tool-use rollouts: the model speaks, the environment answers with an
// observation (a tool's result), the model speaks again, and the episode ends with a reward.
//
// Life of an episode: the factory Make()s one Environment per episode; Reset(item) starts it from a
// dataset item; Step(turn) is called once per model turn with the turn's text and returns either an
// observation for the model (done = false) or the episode's end with its reward (done = true). The
// turn and token budgets are not the environment's business: env/episode.h applies them.
//
// Errors: a malformed model turn (a broken tool call, a division by zero) is a wrong action, never an
// exception: it gives an observation that says what was wrong, or ends the episode with a reward. A
// tool that hangs or dies ends the episode (EnvStep::info["error"] says why). Exceptions are kept for
// user errors: a bad config, a malformed reference answer in the dataset.
//
// Thread safety: an Environment belongs to one episode and is called by one thread at a time (the
// episode may move between worker threads between turns). EnvironmentFactory::Make may be called from
// many threads at once; what the environments of one factory share (the command environment's
// program) is locked by them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace llamarl::env {

// What an episode starts from: a dataset item.
struct EnvItem {
  int64_t id = 0;      // the dataset item's id (the command environment passes it on)
  std::string prompt;  // the prompt text as the model sees it
  Json answer;         // the reference, for the episode's reward
};

struct EnvStep {
  std::string observation;  // for the model's next turn (done == false)
  double reward = 0;        // the episode's reward (done == true)
  bool done = false;
  Json info = Json::object();  // what the environment understood: the call, its value, an "error"
};

class Environment {
 public:
  virtual ~Environment() = default;
  virtual void Reset(const EnvItem& item) = 0;
  // `turn` is the text of the model's turn (special tokens dropped). Never throws for a malformed turn.
  virtual EnvStep Step(const std::string& turn) = 0;
};

// Optional ability (SFT warm starts, env/episode.h PlayReferenceEpisode): an environment that can write
// the turns of a correct episode, so that a model learns the tool format before RL.
class ReferenceAgent {
 public:
  virtual ~ReferenceAgent() = default;
  // The model turn a correct agent writes next, given the item of the last Reset and the Steps since
  // (the text a model turn decodes to). Throws llamarl::Error when the item holds no reference to
  // write it from.
  virtual std::string ReferenceTurn() = 0;
};

class EnvironmentFactory {
 public:
  virtual ~EnvironmentFactory() = default;
  virtual std::string Name() const = 0;  // the registry name ("calculator")
  virtual std::unique_ptr<Environment> Make() = 0;  // thread-safe
};

// Builds a factory from its config object; `path` names that object in errors ("env.config").
using EnvironmentMaker = std::function<std::unique_ptr<EnvironmentFactory>(const Json& config, const std::string& path)>;

// By name; an unknown name lists the known ones: "unknown environment 'calc'; known: calculator, command".
std::unique_ptr<EnvironmentFactory> MakeEnvironmentFactory(const std::string& name, const Json& config,
                                                           const std::string& path = "env.config");
// Registers an extra environment (at startup); throws when the name is taken.
void RegisterEnvironment(const std::string& name, EnvironmentMaker maker);
std::vector<std::string> EnvironmentNames();  // sorted

}  // namespace llamarl::env
