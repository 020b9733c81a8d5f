// command: scores from an external program, for checkers that are not worth writing in C++ (unit
// tests of generated code, a judge model behind a script).
//
// Protocol: the program is started once and kept running. For each item we write one JSON line
//   {"prompt": "...", "response": "...", "answer": <the reference as given>}
// to its stdin, and it answers, in order, one JSON line per item on stdout:
//   {"score": 0.5}            (other keys are kept as the item's info)
// It must flush stdout after each line (awk: fflush(); Python: print(..., flush=True)), exit on EOF
// of stdin, and write anything else to stderr.
//
// Failures: a batch not answered within timeout_s kills the program (its whole process group) and
// throws naming the command and the timeout; a reply that is not {"score": number} kills it and
// throws naming the reply's line; a program that exits is restarted at the next batch, and within a
// batch up to max_restarts times before the error is raised.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "reward/reward.h"
#include "reward/subprocess.h"

namespace llamarl::reward {

struct CommandConfig {
  std::vector<std::string> command;  // required; argv, e.g. ["python3", "judge.py"]
  double timeout_s = 60.0;           // per batch
  int max_restarts = 1;              // restarts of a program that exited mid-batch, per batch

  static CommandConfig FromJson(const Json& j, const std::string& path);
};

class CommandReward : public Reward {
 public:
  explicit CommandReward(CommandConfig config);
  std::string Name() const override { return "command"; }
  RewardResult Score(const std::vector<RewardItem>& items) override;

  // How many times the program was started (1 after the first batch when nothing went wrong).
  int num_starts() const { return num_starts_; }

 private:
  // One attempt; returns false when the program exited before answering everything.
  bool TryScore(const std::string& input, size_t num_items, RewardResult* result);
  RewardResult ParseReplies(const std::vector<std::string>& lines, size_t num_items);
  std::string Describe() const;

  CommandConfig config_;
  std::unique_ptr<ChildProcess> child_;
  int num_starts_ = 0;
};

}  // namespace llamarl::reward
