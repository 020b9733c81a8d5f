// The reward interface: scores a batch of (prompt, response, reference) items.
//
// A reward is built once from its Config (see registry.h) and then called once per batch of
// rollouts. Scores are plain doubles; `info` carries, per item, what the reward understood of the
// response (the parsed answer, the evaluated expression, why it failed) for logs and debugging.
//
// Thread-safety: a Reward is not thread-safe (the `command` reward owns a child process); give each
// thread its own instance.
#pragma once

#include <string>
#include <vector>

#include "core/config.h"

namespace llamarl::reward {

struct RewardItem {
  std::string prompt;    // the prompt text as the model saw it
  std::string response;  // the generated text, without the prompt
  // The reference: GSM8K's answer string, an integer, or task metadata such as
  // {"numbers": [3, 7, 25], "target": 28}; each reward documents what it accepts.
  Json answer;
};

struct RewardResult {
  std::vector<double> scores;  // one per item, in input order
  std::vector<Json> info;      // one per item (an object; may be empty)
};

class Reward {
 public:
  virtual ~Reward() = default;
  // The registry name ("gsm8k"), for logs and metrics.
  virtual std::string Name() const = 0;
  // Scores every item; throws llamarl::Error when an item's reference is malformed (a user error in
  // the dataset), never for a malformed response (that scores as wrong).
  virtual RewardResult Score(const std::vector<RewardItem>& items) = 0;
};

}  // namespace llamarl::reward
