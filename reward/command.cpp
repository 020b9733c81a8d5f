#include "reward/command.h"

#include <chrono>
#include <thread>

#include "core/check.h"
#include "core/logging.h"

namespace llamarl::reward {

CommandConfig CommandConfig::FromJson(const Json& j, const std::string& path) {
  CommandConfig c;
  ConfigReader r(j, path);
  r.Require("command", &c.command, "program and arguments, e.g. [\"python3\", \"judge.py\"]");
  r.Read("timeout_s", &c.timeout_s, Range::Positive(), "seconds the program may take per batch");
  r.Read("max_restarts", &c.max_restarts, Range::AtLeast(0),
         "restarts of a program that exits mid-batch before the batch fails");
  r.Finish();
  LLAMARL_CHECK(!c.command.empty() && !c.command[0].empty(), r.PathOf("command"),
                ": expected a non-empty list [program, args...], got ", DescribeJson(j["command"]));
  return c;
}

CommandReward::CommandReward(CommandConfig config) : config_(std::move(config)) {}

std::string CommandReward::Describe() const {
  std::string text;
  for (const std::string& a : config_.command) text += (text.empty() ? "" : " ") + a;
  return "reward command '" + text + "'";
}

RewardResult CommandReward::Score(const std::vector<RewardItem>& items) {
  if (items.empty()) return {};
  std::string input;
  for (const RewardItem& item : items) {
    input += Json{{"prompt", item.prompt}, {"response", item.response}, {"answer", item.answer}}.dump(
                 -1, ' ', false, Json::error_handler_t::replace) +
             "\n";
  }
  RewardResult result;
  for (int attempt = 0;; ++attempt) {
    if (TryScore(input, items.size(), &result)) return result;
    std::string status = child_ ? child_->StatusDescription() : "not started";
    child_.reset();
    if (attempt < config_.max_restarts) LogWarning(Describe(), " ", status, " mid-batch; restarting it");
    LLAMARL_CHECK(attempt < config_.max_restarts, Describe(), " ", status, " before answering all ",
                  items.size(), " items of the batch (after ", attempt,
                  " restarts); run it by hand on one input line to see its error");
  }
}

bool CommandReward::TryScore(const std::string& input, size_t num_items, RewardResult* result) {
  if (child_ && !child_->Running()) {
    LogWarning(Describe(), " ", child_->StatusDescription(), " since the last batch; restarting it");
    child_.reset();
  }
  if (!child_) {
    child_ = std::make_unique<ChildProcess>(config_.command);
    ++num_starts_;
  }
  ChildProcess::Exchange ex = child_->WriteAndReadLines(input, num_items, config_.timeout_s);
  if (ex.timed_out) {
    child_.reset();  // kills the process group
    LLAMARL_FAIL(Describe(), " answered ", ex.lines.size(), " of ", num_items,
                 " items within timeout_s=", config_.timeout_s,
                 " s; killed it. Raise reward.config.timeout_s, or make the program ",
                 "answer one line per input line and flush stdout after each");
  }
  if (ex.lines.size() < num_items) {
    // Closed stdout: it exited (or is exiting); reap it so that its status can be reported.
    for (int i = 0; i < 100 && child_->Running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return false;
  }
  try {
    *result = ParseReplies(ex.lines, num_items);
  } catch (...) {
    child_.reset();  // its replies are out of step with our items now
    throw;
  }
  return true;
}

RewardResult CommandReward::ParseReplies(const std::vector<std::string>& lines, size_t num_items) {
  LLAMARL_CHECK(lines.size() == num_items, Describe(), " answered ", lines.size(), " lines for ", num_items,
                " items; expected exactly one {\"score\": x} line per input line");
  RewardResult result;
  for (size_t i = 0; i < lines.size(); ++i) {
    Json reply = Json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    bool ok = reply.is_object() && reply.contains("score") && reply["score"].is_number();
    LLAMARL_CHECK(ok, Describe(), ": reply line ", i + 1, " of the batch (for item ", i,
                  ") is not a JSON object with a numeric \"score\": '",
                  lines[i].size() > 200 ? lines[i].substr(0, 200) + "..." : lines[i],
                  "'; expected e.g. {\"score\": 1.0}");
    result.scores.push_back(reply["score"].get<double>());
    reply.erase("score");
    result.info.push_back(std::move(reply));
  }
  return result;
}

}  // namespace llamarl::reward
