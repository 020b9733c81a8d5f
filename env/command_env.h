// command: an environment written as a user's program, spoken to over JSON lines like the command
// reward (reward/command.h), through reward/subprocess.h: started with posix_spawnp (no shell) in its
// own process group, killed as a group and reaped on timeout.
//
// Protocol: the program is started once and shared by every episode of the factory (episodes are
// told apart by "episode"). For each model turn we write one line
//   {"episode": 12, "turn": 0, "item": 7, "prompt": "...", "answer": <the reference>, "action": "<turn text>"}
// and it answers with one line
//   {"observation": "text for the model", "done": false}   or   {"done": true, "reward": 1.0}
// (other keys are kept as the step's info). It must flush stdout after each line and exit on EOF.
//
// Failures end the episode, never the run: a reply not within timeout_s kills the program's process
// group (reaped; restarted at the next call) and ends the episode with timeout_reward and
// info.error = "timeout"; a reply that is not such an object, or a program that exited, ends it with
// error_reward and the reason in info.error (the program is restarted for the next call).
//
// Thread safety: calls to the shared program are serialised by a mutex (one line in flight).
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "env/environment.h"

namespace llamarl::reward {
class ChildProcess;
}

namespace llamarl::env {

struct CommandEnvConfig {
  std::vector<std::string> command;  // required; argv, e.g. ["python3", "env.py"]
  double timeout_s = 10.0;           // per turn
  double timeout_reward = 0.0;       // the reward of an episode whose tool timed out
  double error_reward = 0.0;         // ... whose tool gave a malformed reply or exited

  static CommandEnvConfig FromJson(const Json& j, const std::string& path);
};

class CommandEnvFactory : public EnvironmentFactory {
 public:
  explicit CommandEnvFactory(CommandEnvConfig config);
  ~CommandEnvFactory() override;
  std::string Name() const override { return "command"; }
  std::unique_ptr<Environment> Make() override;

  // One turn of episode `episode` through the shared program (what the environments call).
  EnvStep Call(const Json& request);
  int num_starts() const;  // programs started so far
  pid_t last_pid() const;  // the latest program's pid (-1 before the first call), for tests

 private:
  CommandEnvConfig config_;
  mutable std::mutex mutex_;
  std::unique_ptr<reward::ChildProcess> child_;
  int num_starts_ = 0;
  pid_t last_pid_ = -1;
  int64_t next_episode_ = 0;
};

std::unique_ptr<EnvironmentFactory> MakeCommandEnvFactory(const CommandEnvConfig& config);

}  // namespace llamarl::env
