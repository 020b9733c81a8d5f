#include "env/episode.h"

#include <algorithm>
#include <chrono>

#include "core/check.h"

namespace llamarl::env {
namespace {

// Markers that no template rewrites (neither trims nor escapes them).
constexpr const char* kTurnMarker = "@@llamarl-assistant-turn@@";
constexpr const char* kObservationMarker = "@@llamarl-observation@@";

}  // namespace

EpisodeConfig EpisodeConfig::FromJson(const Json& j, const std::string& path) {
  EpisodeConfig c;
  ConfigReader r(j, path);
  r.Require("name", &c.name, std::vector<std::string>{}, "the environment: calculator, command, or a registered one");
  if (r.Has("config")) c.config = r.Raw("config");
  r.Read("max_turns", &c.max_turns, Range::AtLeast(1), "model turns per episode");
  r.Read("max_turn_tokens", &c.max_turn_tokens, Range::AtLeast(0), "tokens per model turn (0 = rollout.max_new_tokens)");
  r.Read("max_tokens", &c.max_tokens, Range::AtLeast(0),
         "tokens after the prompt, model and observations together (0 = what the engine holds)");
  r.Read("observation_format", &c.observation_format, {"plain", "chatml", "llama3"},
         "how observations are rendered: plain text between observation_prefix and observation_suffix, or "
         "the chat template's tool message");
  r.Read("observation_prefix", &c.observation_prefix, {}, "plain: text before the tool's output");
  r.Read("observation_suffix", &c.observation_suffix, {}, "plain: text after it");
  r.Read("truncated_reward", &c.truncated_reward, {}, "reward of an episode cut by a budget");
  r.Read("num_workers", &c.num_workers, Range::Closed(1, 256), "threads running environment steps");
  r.Finish();
  return c;
}

ObservationRenderer::ObservationRenderer(const EpisodeConfig& config, const Tokenizer& tokenizer,
                                         std::optional<int64_t> end_of_turn_id)
    : tokenizer_(tokenizer) {
  if (config.observation_format == "plain") {
    before_ended_ = before_open_ = config.observation_prefix;
    after_ = config.observation_suffix;
    return;
  }
  const ChatFormat format = ParseChatFormat(config.observation_format);
  const std::string tool_role = format == ChatFormat::kLlama3 ? "ipython" : "tool";
  // Everything the template writes after the model's turn (its end, the tool message, the next
  // generation prompt), taken from one rendering: an assistant turn that is not the last renders as
  // it does in a real conversation (Qwen's template adds an empty <think> block to a last one).
  const std::vector<ChatMessage> messages{{"user", "Q"}, {"assistant", kTurnMarker}, {tool_role, kObservationMarker}};
  const std::string full = ApplyChatTemplate(format, messages, true);
  const size_t turn = full.find(kTurnMarker);
  LLAMARL_ASSERT(turn != std::string::npos, "the assistant's content is missing from the rendered template");
  const std::string after_turn = full.substr(turn + std::string(kTurnMarker).size());
  const size_t o = after_turn.find(kObservationMarker);
  LLAMARL_ASSERT(o != std::string::npos, "the tool message's content is missing from the rendered template");
  before_ended_ = before_open_ = after_turn.substr(0, o);
  after_ = after_turn.substr(o + std::string(kObservationMarker).size());
  if (end_of_turn_id) {  // the model wrote the template's end of turn itself
    const std::string eos_text = tokenizer.Decode({*end_of_turn_id});
    if (!eos_text.empty() && before_open_.compare(0, eos_text.size(), eos_text) == 0) {
      before_ended_ = before_open_.substr(eos_text.size());
    }
  }
}

std::vector<int64_t> ObservationRenderer::Render(const std::string& observation, bool turn_ended) const {
  std::vector<int64_t> out = tokenizer_.Encode(turn_ended ? before_ended_ : before_open_);
  EncodeOptions untrusted;
  untrusted.split_special_tokens = true;
  for (const std::vector<int64_t>& part : {tokenizer_.Encode(observation, untrusted), tokenizer_.Encode(after_)}) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

const char* EpisodeEndName(EpisodeEnd end) {
  switch (end) {
    case EpisodeEnd::kRunning: return "running";
    case EpisodeEnd::kEnv: return "env";
    case EpisodeEnd::kMaxTurns: return "max_turns";
    case EpisodeEnd::kMaxTokens: return "max_tokens";
    case EpisodeEnd::kLength: return "length";
    case EpisodeEnd::kToolError: return "tool_error";
  }
  return "unknown";
}

Episode::Episode(std::unique_ptr<Environment> environment, const EpisodeConfig& config, const EnvItem& item)
    : env_(std::move(environment)), config_(config) {
  env_->Reset(item);
}

Episode::Turn Episode::OnModelTurn(int64_t num_tokens, const std::string& text, bool ended, int64_t room,
                                   const ObservationRenderer& renderer) {
  LLAMARL_ASSERT(!done(), "OnModelTurn on an episode that ended (", EpisodeEndName(end_), ")");
  tokens_ += num_tokens;
  ++turns_;
  const auto start = std::chrono::steady_clock::now();
  EnvStep step = env_->Step(text);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  tool_seconds_ += seconds;
  tool_step_max_seconds_ = std::max(tool_step_max_seconds_, seconds);
  info_ = std::move(step.info);
  if (step.done) {
    end_ = info_.is_object() && info_.contains("error") ? EpisodeEnd::kToolError : EpisodeEnd::kEnv;
    reward_ = step.reward;
    return {{}, true};
  }
  if (turns_ >= config_.max_turns) {
    end_ = EpisodeEnd::kMaxTurns;
    reward_ = config_.truncated_reward;
    return {{}, true};
  }
  std::vector<int64_t> observation = renderer.Render(step.observation, ended);
  int64_t limit = room;
  if (config_.max_tokens > 0) limit = std::min(limit, config_.max_tokens - tokens_);
  if (int64_t(observation.size()) + 1 > limit) {  // the observation and one model token must fit
    end_ = EpisodeEnd::kMaxTokens;
    reward_ = config_.truncated_reward;
    return {{}, true};
  }
  tokens_ += int64_t(observation.size());
  return {std::move(observation), false};
}

void Episode::Truncate() {
  if (done()) return;
  end_ = EpisodeEnd::kLength;
  reward_ = config_.truncated_reward;
}

ReferenceEpisode PlayReferenceEpisode(EnvironmentFactory& factory, const EpisodeConfig& config, const EnvItem& item,
                                      const Tokenizer& tokenizer, const ObservationRenderer& renderer,
                                      int64_t end_of_turn_id) {
  std::unique_ptr<Environment> environment = factory.Make();
  auto* agent = dynamic_cast<ReferenceAgent*>(environment.get());
  LLAMARL_CHECK(agent != nullptr, "environment '", factory.Name(), "' cannot write reference episodes for an SFT ",
                "warm start (it is no env::ReferenceAgent); set sft.steps to 0");
  Episode episode(std::move(environment), config, item);
  ReferenceEpisode out;
  auto append = [&out](const std::vector<int64_t>& tokens, uint8_t trained) {
    out.tokens.insert(out.tokens.end(), tokens.begin(), tokens.end());
    out.loss_mask.insert(out.loss_mask.end(), tokens.size(), trained);
  };
  constexpr int64_t kUnbounded = int64_t(1) << 40;  // the engine's room is not known here; max_tokens applies
  while (!episode.done()) {
    const std::string text = agent->ReferenceTurn();
    const std::vector<int64_t> turn = tokenizer.Encode(text);
    // A call turn ends at its stop string (not at the end-of-turn token), as in a rollout.
    Episode::Turn next = episode.OnModelTurn(int64_t(turn.size()), text, /*ended=*/false, kUnbounded, renderer);
    append(turn, 1);
    if (next.done) append({end_of_turn_id}, 1);
    append(next.observation, 0);
  }
  LLAMARL_CHECK(episode.end() == EpisodeEnd::kEnv, "the reference episode of item ", item.id, " ended by ",
                EpisodeEndName(episode.end()), " after ", episode.turns(), " turns and ", episode.tokens(),
                " tokens; raise env.max_turns (", config.max_turns, ") or env.max_tokens (", config.max_tokens, ")");
  out.reward = episode.reward();
  out.turns = episode.turns();
  return out;
}

}  // namespace llamarl::env
