// The command reward against real child programs (POSIX sh scripts, no Python).
#include "reward/command.h"

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "core/check.h"
#include "tests/test_util.h"

namespace llamarl::reward {
namespace {

// Writes an executable sh script and returns its path.
std::string Script(const std::string& name, const std::string& body) {
  std::string path = testing::MakeTempDir("command") + "/" + name;
  std::ofstream(path) << "#!/bin/sh\n" << body;
  EXPECT_EQ(std::system(("chmod +x " + path).c_str()), 0);
  return path;
}

// Scores 1 when the response line contains the answer string, else 0; `echo` is a shell builtin
// and writes each reply unbuffered. Exits on EOF.
const char* kContainsScorer = R"SH(
while IFS= read -r line; do
  answer=$(printf '%s' "$line" | sed 's/.*"answer":"\([^"]*\)".*/\1/')
  response=$(printf '%s' "$line" | sed 's/.*"response":"\([^"]*\)".*/\1/')
  case "$response" in
    *"$answer"*) echo '{"score": 1, "why": "contains"}' ;;
    *) echo '{"score": 0}' ;;
  esac
done
)SH";

std::vector<RewardItem> Items(int n) {
  std::vector<RewardItem> items;
  for (int i = 0; i < n; ++i) {
    items.push_back({"p", i % 2 ? "the answer is 42" : "no idea", "42"});
  }
  return items;
}

TEST(CommandReward, ScoresThroughARealProgramAndKeepsItRunning) {
  CommandConfig c;
  c.command = {"/bin/sh", Script("contains.sh", kContainsScorer)};
  c.timeout_s = 30;
  CommandReward reward(c);
  RewardResult r = reward.Score(Items(4));
  EXPECT_EQ(r.scores, (std::vector<double>{0, 1, 0, 1}));
  EXPECT_EQ(r.info[1], (Json{{"why", "contains"}}));
  r = reward.Score(Items(3));
  EXPECT_EQ(r.scores, (std::vector<double>{0, 1, 0}));
  EXPECT_EQ(reward.num_starts(), 1);
  EXPECT_TRUE(reward.Score({}).scores.empty());
}

TEST(CommandReward, LargeBatchesDoNotDeadlockOnFullPipes) {
  // The child answers each line at once, so its replies fill the stdout pipe while we still write:
  // only interleaved reading and writing finishes this.
  CommandConfig c;
  c.command = {"/bin/sh", "-c", "while IFS= read -r line; do echo '{\"score\": 0.5}'; done"};
  c.timeout_s = 60;
  CommandReward reward(c);
  std::vector<RewardItem> items(3000, RewardItem{"p", std::string(200, 'x'), "1"});
  RewardResult r = reward.Score(items);
  ASSERT_EQ(r.scores.size(), items.size());
  EXPECT_EQ(r.scores.back(), 0.5);
}

TEST(CommandReward, TimeoutKillsTheProgramAndNamesIt) {
  CommandConfig c;
  c.command = {"/bin/sh", "-c", "read line; sleep 30"};
  c.timeout_s = 0.5;
  CommandReward reward(c);
  auto start = std::chrono::steady_clock::now();
  try {
    reward.Score(Items(2));
    FAIL() << "expected a timeout";
  } catch (const Error& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("reward command '/bin/sh -c read line; sleep 30'"), std::string::npos) << what;
    EXPECT_NE(what.find("answered 0 of 2 items within timeout_s=0.5"), std::string::npos) << what;
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(seconds, 5.0);  // killed, not waited for
}

TEST(CommandReward, MalformedReplyNamesTheLine) {
  CommandConfig c;
  c.command = {"/bin/sh", "-c",
               "read a; echo '{\"score\": 1}'; read b; echo 'score=1'; while read x; do echo '{}'; done"};
  CommandReward reward(c);
  try {
    reward.Score(Items(2));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reply line 2 of the batch (for item 1)"), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("'score=1'"), std::string::npos) << e.what();
  }
  // The program was killed after the protocol error; the next batch starts a fresh one.
  EXPECT_THROW(reward.Score(Items(2)), Error);
  EXPECT_EQ(reward.num_starts(), 2);
}

TEST(CommandReward, DeadProgramIsRestarted) {
  // Answers two items, then exits: every batch of two finds it dead and restarts it.
  CommandConfig c;
  c.command = {"/bin/sh", "-c", "read a; echo '{\"score\": 1}'; read b; echo '{\"score\": 2}'"};
  CommandReward reward(c);
  EXPECT_EQ(reward.Score(Items(2)).scores, (std::vector<double>{1, 2}));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  EXPECT_EQ(reward.Score(Items(2)).scores, (std::vector<double>{1, 2}));
  EXPECT_EQ(reward.num_starts(), 2);
  // Three items: it dies after two, is restarted once (max_restarts: 1), dies again: an error that
  // names the exit status.
  try {
    reward.Score(Items(3));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exited with status 0 before answering all 3 items"),
              std::string::npos)
        << e.what();
  }
}

TEST(CommandReward, MissingProgramAndBadConfig) {
  CommandConfig c;
  c.command = {"/nonexistent/scorer"};
  CommandReward reward(c);
  try {
    reward.Score(Items(1));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/scorer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(CommandConfig::FromJson({{"timeout_s", 5}}, "reward.config"), Error);  // no command
  EXPECT_THROW(CommandConfig::FromJson({{"command", Json::array()}}, "reward.config"), Error);
  EXPECT_THROW(CommandConfig::FromJson({{"command", {"x"}}, {"timeout_s", 0}}, "reward.config"), Error);
}

}  // namespace
}  // namespace llamarl::reward
