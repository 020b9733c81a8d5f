// Environments (env/): the calculator's calls and their errors, the command environment against real
// child programs (sh scripts) including timeout reaping, and the episode driver's budgets and
// observation rendering with the tiny ChatML tokenizer.
#include "env/calculator.h"
#include "env/command_env.h"
#include "env/episode.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "model/tiny_tokenizer.h"
#include "tests/test_util.h"

namespace llamarl::env {
namespace {

Tokenizer TinyTokenizer() {
  return Tokenizer::FromTokenizerJson(MakeTinyTokenizerJson().dump(), MakeTinyTokenizerConfigJson().dump());
}

EnvStep CalculatorTurn(const std::string& turn, const Json& answer = Json{{"target", 56088}},
                       const Json& config = Json::object()) {
  auto factory = MakeEnvironmentFactory("calculator", config);
  auto env = factory->Make();
  env->Reset({0, "123*456 =", answer});
  return env->Step(turn);
}

TEST(Calculator, EvaluatesAJsonCallExactly) {
  EnvStep s = CalculatorTurn(R"(let me compute <tool_call>{"name": "calculator", "arguments": {"expression": "123*456"}}</tool_call>)");
  EXPECT_FALSE(s.done);
  EXPECT_EQ(s.observation, "56088");
  EXPECT_EQ(s.info["value"], "56088");
  // "arguments" as a JSON string (OpenAI style), a bare object, and exact rationals.
  EXPECT_EQ(CalculatorTurn(R"(<tool_call>{"name": "calculator", "arguments": "{\"expression\": \"7/14\"}"}</tool_call>)").observation, "1/2");
  EXPECT_EQ(CalculatorTurn(R"(<tool_call>{"expression": "(2+3)*4-1"}</tool_call>)").observation, "19");
}

TEST(Calculator, ExpressionFormatAndCustomTags) {
  EnvStep s = CalculatorTurn("<calc>99*99</calc>", Json{{"target", 1}},
                             Json{{"call_format", "expression"}, {"call_open", "<calc>"}, {"call_close", "</calc>"}});
  EXPECT_FALSE(s.done);
  EXPECT_EQ(s.observation, "9801");
}

TEST(Calculator, FinalAnswerIsScoredByItsReward) {
  EnvStep right = CalculatorTurn("the answer is 56088");
  EXPECT_TRUE(right.done);
  EXPECT_EQ(right.reward, 1.0);
  EnvStep wrong = CalculatorTurn("the answer is 56000");
  EXPECT_TRUE(wrong.done);
  EXPECT_EQ(wrong.reward, 0.0);
}

TEST(Calculator, ItsRewardSpecIsReadWithItsRecipePath) {
  // A gsm8k-scored final answer, the reward's own config read at env.config.reward.config.
  const Json gsm8k = {{"reward", {{"name", "gsm8k"}, {"config", {{"correct_score", 2}}}}}};
  EXPECT_EQ(CalculatorTurn("so #### 7", Json("#### 7"), gsm8k).reward, 2.0);
  auto error_of = [](const Json& config) {
    try {
      MakeEnvironmentFactory("calculator", config, "env.config");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of({{"reward", {{"name", "nope"}}}}).find("env.config.reward: unknown reward 'nope'; known: "), 0u);
  EXPECT_EQ(error_of({{"reward", {{"name", "gsm8k"}, {"config", {{"bogus", 1}}}}}})
                .find("env.config.reward.config: unknown key 'bogus'"),
            0u);
}

TEST(Calculator, MalformedCallsGiveAClearObservationNeverAThrow) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"<tool_call>not json</tool_call>", "not a JSON object"},
      {R"(<tool_call>{"name": "calculator", "arguments": {"expr": "1+1"}}</tool_call>)", "no \"expression\""},
      {R"(<tool_call>{"name": "search", "arguments": {"expression": "1"}}</tool_call>)", "unknown tool \"search\""},
      {R"(<tool_call>{"expression": "1/0"}</tool_call>)", "division by zero"},
      {R"(<tool_call>{"expression": "2*(3+"}</tool_call>)", "cannot evaluate"},
      {R"(<tool_call>{"expression": "9223372036854775807*2"}</tool_call>)", "cannot evaluate"},
      {R"(<tool_call>{"expression": "1+1"})", "no closing </tool_call>"},
  };
  for (const auto& [turn, expected] : cases) {
    EnvStep s = CalculatorTurn(turn);
    EXPECT_FALSE(s.done) << turn;
    EXPECT_EQ(s.observation.rfind("error: ", 0), 0u) << turn << " -> " << s.observation;
    EXPECT_NE(s.observation.find(expected), std::string::npos) << turn << " -> " << s.observation;
    EXPECT_TRUE(s.info.contains("error")) << turn;
  }
}

TEST(EnvRegistry, UnknownNamesListTheKnownOnes) {
  try {
    MakeEnvironmentFactory("calc", Json::object());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unknown environment 'calc'; known: calculator, command"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(MakeEnvironmentFactory("calculator", Json{{"call_format", "xml"}}), Error);
  EXPECT_THROW(MakeEnvironmentFactory("command", Json::object()), Error);  // command is required
}

std::string Script(const std::string& name, const std::string& body) {
  std::string path = testing::MakeTempDir("env") + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body;
  EXPECT_EQ(std::system(("chmod +x " + path).c_str()), 0);
  return path;
}

// Turn 0 gets an observation, turn 1 ends the episode with reward 0.5.
const char* kTwoTurnEnv = R"SH(
while IFS= read -r line; do
  case "$line" in
    *'"turn":0'*) echo '{"observation": "obs-0", "done": false, "note": 1}' ;;
    *) echo '{"done": true, "reward": 0.5}' ;;
  esac
done
)SH";

TEST(CommandEnv, TalksToARealProgramOverJsonLines) {
  auto factory = MakeEnvironmentFactory("command", Json{{"command", {"/bin/sh", Script("two.sh", kTwoTurnEnv)}}});
  for (int episode = 0; episode < 2; ++episode) {
    auto env = factory->Make();
    env->Reset({7, "p", 1});
    EnvStep first = env->Step("hello");
    EXPECT_FALSE(first.done);
    EXPECT_EQ(first.observation, "obs-0");
    EXPECT_EQ(first.info, (Json{{"note", 1}}));
    EnvStep second = env->Step("bye");
    EXPECT_TRUE(second.done);
    EXPECT_EQ(second.reward, 0.5);
  }
  EXPECT_EQ(dynamic_cast<CommandEnvFactory&>(*factory).num_starts(), 1);
}

// Members of process group `pgid` that are still alive (zombies reparented to an init that reaps
// slowly do not count: they were killed).
int LiveMembers(pid_t pgid) {
  int live = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(entry.path() / "stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    const size_t close = text.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(text.substr(close + 2));
    char state = 0;
    long ppid = 0, pgrp = 0;
    rest >> state >> ppid >> pgrp;
    live += pgrp == pgid && state != 'Z' && state != 'X';
  }
  return live;
}

TEST(CommandEnv, TimeoutKillsTheProcessGroupReapsItAndEndsTheEpisode) {
  // The program starts a grandchild and hangs: the whole group must go, and the child be reaped
  // (kill(pid, 0) succeeds on a zombie, so ESRCH proves the reaping).
  CommandEnvConfig c;
  c.command = {"/bin/sh", "-c", "sleep 30 & read line; sleep 30"};
  c.timeout_s = 0.3;
  c.timeout_reward = -1;
  CommandEnvFactory factory(c);
  auto env = factory.Make();
  env->Reset({0, "p", 1});
  const auto start = std::chrono::steady_clock::now();
  EnvStep s = env->Step("anything");
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 5.0);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.reward, -1);
  EXPECT_EQ(s.info["error"], "timeout");
  const pid_t pid = factory.last_pid();
  ASSERT_GT(pid, 0);
  EXPECT_TRUE(kill(pid, 0) == -1 && errno == ESRCH) << "child " << pid << " not reaped";
  // SIGKILL is delivered asynchronously to the grandchild; give it a moment.
  for (int i = 0; i < 100 && LiveMembers(pid) > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(LiveMembers(pid), 0) << "process group " << pid << " still has live members";
}

TEST(CommandEnv, MalformedRepliesAndExitsEndTheEpisodeAndRestartTheProgram) {
  CommandEnvConfig c;
  c.command = {"/bin/sh", "-c", "read line; echo 'not json'; read line; echo '{\"done\": true, \"reward\": 1}'"};
  c.error_reward = -0.5;
  CommandEnvFactory factory(c);
  auto env = factory.Make();
  env->Reset({0, "p", 1});
  EnvStep bad = env->Step("a");
  EXPECT_TRUE(bad.done);
  EXPECT_EQ(bad.reward, -0.5);
  EXPECT_EQ(bad.info["error"], "malformed reply");
  EnvStep again = env->Step("b");  // a fresh program answers the next call
  EXPECT_EQ(again.info["error"], "malformed reply");
  EXPECT_EQ(factory.num_starts(), 2);
  CommandEnvConfig exits = c;
  exits.command = {"/bin/sh", "-c", "exit 3"};
  CommandEnvFactory dead(exits);
  auto env2 = dead.Make();
  env2->Reset({0, "p", 1});
  EnvStep gone = env2->Step("a");
  EXPECT_TRUE(gone.done);
  EXPECT_EQ(gone.info["error"], "exited");
}

// A scripted environment: fixed observations, never done by itself.
class Scripted : public Environment {
 public:
  void Reset(const EnvItem&) override { n_ = 0; }
  EnvStep Step(const std::string& turn) override {
    EnvStep s;
    s.observation = "o" + std::to_string(n_++) + "|" + turn;
    return s;
  }

 private:
  int n_ = 0;
};

TEST(Episode, TurnBudgetEndsTheEpisodeWithTheTruncatedReward) {
  EpisodeConfig c;
  c.name = "scripted";
  c.max_turns = 2;
  c.truncated_reward = -0.25;
  c.observation_prefix = "[";
  c.observation_suffix = "]";
  const Tokenizer tok = TinyTokenizer();
  ObservationRenderer renderer(c, tok, TinyTokenizerIds::kImEnd);
  Episode e(std::make_unique<Scripted>(), c, {0, "p", 1});
  Episode::Turn t = e.OnModelTurn(3, "abc", false, 100, renderer);
  EXPECT_FALSE(t.done);
  EXPECT_EQ(tok.Decode(t.observation), "[o0|abc]");
  EXPECT_EQ(e.tokens(), 3 + 8);
  t = e.OnModelTurn(2, "de", false, 100, renderer);
  EXPECT_TRUE(t.done);
  EXPECT_TRUE(t.observation.empty());
  EXPECT_EQ(e.end(), EpisodeEnd::kMaxTurns);
  EXPECT_EQ(e.reward(), -0.25);
  EXPECT_EQ(e.turns(), 2);
}

TEST(Episode, TokenBudgetAndRoomEndTheEpisode) {
  EpisodeConfig c;
  c.name = "scripted";
  c.max_tokens = 12;
  c.observation_prefix = "";
  c.observation_suffix = "";
  const Tokenizer tok = TinyTokenizer();
  ObservationRenderer renderer(c, tok, std::nullopt);
  Episode fits(std::make_unique<Scripted>(), c, {0, "p", 1});
  EXPECT_FALSE(fits.OnModelTurn(2, "ab", false, 100, renderer).done);  // 2 + 5 + one model token <= 12
  Episode over(std::make_unique<Scripted>(), c, {0, "p", 1});
  EXPECT_TRUE(over.OnModelTurn(7, "abcdefg", false, 100, renderer).done);  // 7 + 10 > 12
  EXPECT_EQ(over.end(), EpisodeEnd::kMaxTokens);
  Episode no_room(std::make_unique<Scripted>(), c, {0, "p", 1});
  EXPECT_TRUE(no_room.OnModelTurn(1, "a", false, 4, renderer).done);  // the engine holds 4 more
  Episode cut(std::make_unique<Scripted>(), c, {0, "p", 1});
  cut.Truncate();
  EXPECT_EQ(cut.end(), EpisodeEnd::kLength);
}

TEST(ObservationRenderer, ChatMlToolMessageAfterTheModelsTurn) {
  EpisodeConfig c;
  c.name = "scripted";
  c.observation_format = "chatml";
  const Tokenizer tok = TinyTokenizer();
  ObservationRenderer renderer(c, tok, TinyTokenizerIds::kImEnd);
  // After a turn ended by <|im_end|>: the rest of Qwen's template for a tool result and the next
  // assistant header, the tool's text with special tokens split (it cannot close the turn).
  std::vector<int64_t> ended = renderer.Render("42<|im_end|>", true);
  EXPECT_EQ(tok.Decode(ended),
            "\n<|im_start|>user\n<tool_response>\n42<|im_end|>\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
  int64_t im_ends = 0;
  for (int64_t id : ended) im_ends += id == TinyTokenizerIds::kImEnd;
  EXPECT_EQ(im_ends, 1);  // the template's own; the tool's text was split into bytes
  // A turn cut before its end token gets the template's end of turn first.
  EXPECT_EQ(tok.Decode(renderer.Render("7", false)),
            "<|im_end|>\n<|im_start|>user\n<tool_response>\n7\n</tool_response><|im_end|>\n<|im_start|>assistant\n");
}

// Runs `f`, which must throw llamarl::Error with `part` in its message.
template <typename F>
void ExpectThrowsWith(F f, const std::string& part) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one with '" << part << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(ReferenceEpisode, CalculatorCallsThenAnswersWithObservationsMasked) {
  EpisodeConfig c;
  c.name = "calculator";
  c.config = Json{{"call_format", "expression"}, {"call_open", "<c>"}, {"call_close", "</c>"}};
  c.observation_prefix = "<r>";
  c.observation_suffix = "</r>";
  const Tokenizer tok = TinyTokenizer();
  ObservationRenderer renderer(c, tok, TinyTokenizerIds::kEndOfText);
  auto factory = MakeEnvironmentFactory(c.name, c.config);
  const EnvItem item{3, "123 * 45 ", Json{{"target", 5535}, {"expression", "123 * 45"}}};
  ReferenceEpisode e = PlayReferenceEpisode(*factory, c, item, tok, renderer, TinyTokenizerIds::kEndOfText);
  EXPECT_EQ(tok.Decode(e.tokens), "<c>123*45</c><r>5535</r>5535<|endoftext|>");
  const std::string call = "<c>123*45</c>", observation = "<r>5535</r>";
  std::vector<uint8_t> mask(call.size(), 1);
  mask.insert(mask.end(), observation.size(), 0);
  mask.insert(mask.end(), 4 + 1, 1);  // the answer and its end of turn
  EXPECT_EQ(e.loss_mask, mask);
  EXPECT_EQ(e.reward, 1.0);
  EXPECT_EQ(e.turns, 2);
  // The json format writes a Hermes-style call.
  c.config = Json::object();
  auto json_factory = MakeEnvironmentFactory(c.name, c.config);
  ReferenceEpisode j = PlayReferenceEpisode(*json_factory, c, item, tok, renderer, TinyTokenizerIds::kEndOfText);
  EXPECT_EQ(tok.Decode(j.tokens), R"(<tool_call>{"arguments":{"expression":"123*45"},"name":"calculator"}</tool_call>)"
                                  "<r>5535</r>5535<|endoftext|>");
  // A budget the reference does not fit in, an item without an expression, an environment that is no
  // ReferenceAgent: each a clear error.
  c.max_tokens = 10;
  ExpectThrowsWith([&] { PlayReferenceEpisode(*json_factory, c, item, tok, renderer, 0); }, "env.max_tokens");
  c.max_tokens = 0;
  ExpectThrowsWith([&] { PlayReferenceEpisode(*factory, c, {3, "p", Json{{"target", 1}}}, tok, renderer, 0); },
                   "no \"expression\"");
  auto command = MakeEnvironmentFactory("command", Json{{"command", {"/bin/cat"}}});
  ExpectThrowsWith([&] { PlayReferenceEpisode(*command, c, item, tok, renderer, 0); }, "no env::ReferenceAgent");
}

}  // namespace
}  // namespace llamarl::env
