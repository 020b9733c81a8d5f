#include "env/command_env.h"

#include "core/check.h"
#include "core/logging.h"
#include "reward/subprocess.h"

namespace llamarl::env {
namespace {

std::string Clip(const std::string& s) { return s.size() > 200 ? s.substr(0, 200) + "..." : s; }

class CommandEnv : public Environment {
 public:
  CommandEnv(CommandEnvFactory* factory, int64_t episode) : factory_(factory), episode_(episode) {}

  void Reset(const EnvItem& item) override {
    item_ = item;
    turn_ = 0;
  }

  EnvStep Step(const std::string& turn) override {
    Json request{{"episode", episode_}, {"turn", turn_++}, {"item", item_.id}, {"prompt", item_.prompt},
                 {"answer", item_.answer}, {"action", turn}};
    return factory_->Call(request);
  }

 private:
  CommandEnvFactory* factory_;  // outlives its environments
  int64_t episode_;
  int64_t turn_ = 0;
  EnvItem item_;
};

std::string Describe(const std::vector<std::string>& argv) {
  std::string text;
  for (const std::string& a : argv) text += (text.empty() ? "" : " ") + a;
  return "env command '" + text + "'";
}

}  // namespace

CommandEnvConfig CommandEnvConfig::FromJson(const Json& j, const std::string& path) {
  CommandEnvConfig c;
  ConfigReader r(j, path);
  r.Require("command", &c.command, "program and arguments, e.g. [\"python3\", \"env.py\"]");
  r.Read("timeout_s", &c.timeout_s, Range::Positive(), "seconds the program may take to answer one turn");
  r.Read("timeout_reward", &c.timeout_reward, {}, "reward of an episode whose tool timed out");
  r.Read("error_reward", &c.error_reward, {}, "reward of an episode whose tool replied badly or exited");
  r.Finish();
  LLAMARL_CHECK(!c.command.empty() && !c.command[0].empty(), r.PathOf("command"),
                ": expected a non-empty list [program, args...], got ", DescribeJson(j["command"]));
  return c;
}

CommandEnvFactory::CommandEnvFactory(CommandEnvConfig config) : config_(std::move(config)) {}
CommandEnvFactory::~CommandEnvFactory() = default;

std::unique_ptr<Environment> CommandEnvFactory::Make() {
  std::lock_guard<std::mutex> lock(mutex_);
  return std::make_unique<CommandEnv>(this, next_episode_++);
}

int CommandEnvFactory::num_starts() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return num_starts_;
}

pid_t CommandEnvFactory::last_pid() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return last_pid_;
}

EnvStep CommandEnvFactory::Call(const Json& request) {
  std::lock_guard<std::mutex> lock(mutex_);
  EnvStep step;
  step.done = true;
  step.reward = config_.error_reward;
  if (child_ && !child_->Running()) {
    LogWarning(Describe(config_.command), " ", child_->StatusDescription(), "; restarting it");
    child_.reset();
  }
  if (!child_) {
    child_ = std::make_unique<reward::ChildProcess>(config_.command);  // throws when it cannot start
    ++num_starts_;
    last_pid_ = child_->pid();
  }
  const std::string line = request.dump(-1, ' ', false, Json::error_handler_t::replace) + "\n";
  reward::ChildProcess::Exchange ex = child_->WriteAndReadLines(line, 1, config_.timeout_s);
  if (ex.timed_out || ex.lines.empty()) {
    const bool timed_out = ex.timed_out;
    child_->Kill();  // the whole process group, reaped
    const std::string status = child_->StatusDescription();
    child_.reset();
    step.reward = timed_out ? config_.timeout_reward : config_.error_reward;
    step.info = Json{{"error", timed_out ? "timeout" : "exited"},
                     {"detail", Describe(config_.command) + (timed_out ? " did not answer within timeout_s=" +
                                                                             std::to_string(config_.timeout_s) + " s"
                                                                       : " closed its stdout") +
                                    "; " + status}};
    return step;
  }
  Json reply = Json::parse(ex.lines[0], nullptr, /*allow_exceptions=*/false);
  const bool done = reply.is_object() && reply.value("done", false) == true;
  const bool ok = reply.is_object() && (!reply.contains("done") || reply["done"].is_boolean()) &&
                  (done ? reply.contains("reward") && reply["reward"].is_number()
                        : reply.contains("observation") && reply["observation"].is_string());
  if (!ok) {
    child_.reset();  // out of step with our turns now
    step.info = Json{{"error", "malformed reply"},
                     {"detail", Describe(config_.command) + " replied '" + Clip(ex.lines[0]) +
                                    "'; expected {\"observation\": \"...\", \"done\": false} or "
                                    "{\"done\": true, \"reward\": 1.0}"}};
    return step;
  }
  step.done = done;
  step.reward = done ? reply["reward"].get<double>() : 0.0;
  if (!done) step.observation = reply["observation"].get<std::string>();
  for (const char* key : {"observation", "done", "reward"}) reply.erase(key);
  step.info = std::move(reply);
  return step;
}

std::unique_ptr<EnvironmentFactory> MakeCommandEnvFactory(const CommandEnvConfig& config) {
  return std::make_unique<CommandEnvFactory>(config);
}

}  // namespace llamarl::env
