// One multi-turn episode as the generating side drives it: the recipe's "env" section, the rendering
// of an observation into the tokens appended after the model's turn, and the turn and token budgets.
//
//   "env": {"name": "calculator", "config": {...}, "max_turns": 4, "max_turn_tokens": 32,
//           "max_tokens": 256, "observation_format": "chatml", "num_workers": 4}
//
// Token sequence of an episode (what the engine holds and the trainer sees after the prompt):
//   turn 0 (model) | observation 0 (template + tool text) | turn 1 (model) | ... | last turn (model)
// Observation tokens are rendered here, once, and appended: earlier turns are never re-tokenized.
// With a chat format the observation is what the template writes between the model's turn and the
// next assistant turn: the end of the model's turn when it did not end with its end-of-turn token,
// the tool message (chatml: role "tool", wrapped in <tool_response> inside a user turn; llama3: role
// "ipython"), and the next generation prompt. The tool's text is encoded with split_special_tokens, so
// a tool cannot inject template tokens; the template's own text is encoded with them.
//
// Thread safety: an Episode is driven by one thread at a time; ObservationRenderer is immutable.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "env/environment.h"
#include "model/chat_template.h"
#include "model/tokenizer.h"

namespace llamarl::env {

struct EpisodeConfig {
  std::string name;               // the environment (registry name); "" = single-turn rollouts
  Json config = Json::object();   // the environment's own section
  int64_t max_turns = 4;          // model turns per episode
  int64_t max_turn_tokens = 0;    // tokens per model turn; 0 = rollout.max_new_tokens
  int64_t max_tokens = 0;         // all tokens after the prompt (model + observations); 0 = the engine's room
  std::string observation_format = "plain";  // "plain", "chatml" or "llama3"
  std::string observation_prefix = "\n<tool_response>";  // plain: around the tool's text
  std::string observation_suffix = "</tool_response>\n";
  double truncated_reward = 0.0;  // the reward of an episode cut by a budget before it ended
  int num_workers = 4;            // threads running environment steps off the decode loop

  bool enabled() const { return !name.empty(); }
  static EpisodeConfig FromJson(const Json& j, const std::string& path);
};

class ObservationRenderer {
 public:
  // `end_of_turn_id`: the token that ends the model's turn (its EOS), when it has one.
  ObservationRenderer(const EpisodeConfig& config, const Tokenizer& tokenizer, std::optional<int64_t> end_of_turn_id);
  // The tokens appended after a model turn; `turn_ended` = the turn's last token was end_of_turn_id.
  std::vector<int64_t> Render(const std::string& observation, bool turn_ended) const;

 private:
  Tokenizer tokenizer_;
  // Template text around the tool's text: before (after a turn that ended with its token / after one
  // that did not) and after.
  std::string before_ended_, before_open_, after_;
};

// Why an episode ended.
enum class EpisodeEnd { kRunning, kEnv, kMaxTurns, kMaxTokens, kLength, kToolError };
const char* EpisodeEndName(EpisodeEnd end);  // "running", "env", "max_turns", "max_tokens", "length", "tool_error"

// The driver of one episode: the environment, its budgets and its tally.
class Episode {
 public:
  Episode(std::unique_ptr<Environment> environment, const EpisodeConfig& config, const EnvItem& item);

  struct Turn {
    std::vector<int64_t> observation;  // tokens to append (empty when done)
    bool done = false;
  };
  // After a model turn of `num_tokens` tokens (`text` decoded without special tokens, `ended` = it
  // ended with its end-of-turn token). `room` is how many more tokens the sequence may hold after
  // this turn (the engine's remaining positions); the observation and at least one model token must
  // fit in it and in max_tokens. Timed: tool_seconds() grows by the environment's time.
  Turn OnModelTurn(int64_t num_tokens, const std::string& text, bool ended, int64_t room,
                   const ObservationRenderer& renderer);
  // The sequence was cut by the engine (its length) in the middle of a turn.
  void Truncate();

  bool done() const { return end_ != EpisodeEnd::kRunning; }
  EpisodeEnd end() const { return end_; }
  double reward() const { return reward_; }
  int64_t turns() const { return turns_; }
  int64_t tokens() const { return tokens_; }  // model + observation tokens so far
  double tool_seconds() const { return tool_seconds_; }
  double tool_step_max_seconds() const { return tool_step_max_seconds_; }  // the slowest environment step
  const Json& info() const { return info_; }  // the last step's info

 private:
  std::unique_ptr<Environment> env_;
  EpisodeConfig config_;
  EpisodeEnd end_ = EpisodeEnd::kRunning;
  double reward_ = 0;
  int64_t turns_ = 0, tokens_ = 0;
  double tool_seconds_ = 0, tool_step_max_seconds_ = 0;
  Json info_ = Json::object();
};

// A reference episode (SFT warm starts): the environment's ReferenceAgent writes every model turn,
// the environment answers, and the tokens after the prompt are laid out as a rollout holds them:
// each turn encoded on its own, observations rendered by `renderer`, `end_of_turn_id` after the last
// turn. loss_mask: 1 for the agent's tokens (trained), 0 for observation and template tokens.
struct ReferenceEpisode {
  std::vector<int64_t> tokens;
  std::vector<uint8_t> loss_mask;
  double reward = 0;
  int64_t turns = 0;
};
// Throws llamarl::Error when the environment is no ReferenceAgent, or when the episode does not end
// by the environment within the config's turn and token budgets.
ReferenceEpisode PlayReferenceEpisode(EnvironmentFactory& factory, const EpisodeConfig& config, const EnvItem& item,
                                      const Tokenizer& tokenizer, const ObservationRenderer& renderer,
                                      int64_t end_of_turn_id);

}  // namespace llamarl::env
