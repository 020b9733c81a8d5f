// The controller's messages between real ranks (mpirun -np 2 and -np 3): rollouts from every other
// rank to rank 0 through the byte channel, commands polled without blocking, and a wait that
// expires naming the rank and what it waited for.
#include "controller/channel.h"
#include "controller/rollout.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <thread>

namespace llamarl::controller {
namespace {

constexpr auto kTimeout = std::chrono::seconds(60);

class ChannelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm_ = CreateCommunicator("mpi");
    ASSERT_GE(comm_->Size(), 2) << "run under mpirun -np 2 or more";
  }
  void TearDown() override { comm_->Barrier()->Wait(kTimeout); }
  std::unique_ptr<Communicator> comm_;
};

RolloutGroup GroupFrom(int rank, int64_t index) {
  RolloutGroup g;
  g.step = index;
  g.group_id = rank * 100 + index;
  g.generator_rank = rank;
  g.prompt = std::vector<int64_t>(size_t(5 + index), rank);
  for (int s = 0; s < 2; ++s) {
    RolloutSample sample;
    sample.response = std::vector<int64_t>(size_t(3 + s * index), 7);
    sample.logprobs = std::vector<float>(sample.response.size(), -1.5f);
    sample.versions = std::vector<int64_t>(sample.response.size(), index);
    sample.reward = double(rank) + 0.5 * s;
    sample.finish_reason = "eos";
    g.samples.push_back(sample);
  }
  return g;
}

TEST_F(ChannelTest, RolloutsFromEveryRankArriveInOrderAndIntact) {
  constexpr int64_t kGroups = 4;
  if (comm_->Rank() != 0) {
    std::vector<PendingSend> sends;
    for (int64_t i = 0; i < kGroups; ++i)
      sends.push_back(SendBytes(*comm_, EncodeRolloutGroup(GroupFrom(comm_->Rank(), i)), 0, kRolloutTag));
    for (auto& s : sends) s.Wait(kTimeout, "rollouts");
    return;
  }
  for (int src = 1; src < comm_->Size(); ++src) {
    for (int64_t i = 0; i < kGroups; ++i) {
      std::vector<uint8_t> bytes = RecvBytes(*comm_, src, kRolloutTag, kTimeout, "a rollout");
      RolloutGroup g = DecodeRolloutGroup(bytes.data(), bytes.size());
      RolloutGroup want = GroupFrom(src, i);
      EXPECT_EQ(g.group_id, want.group_id);
      EXPECT_EQ(g.prompt, want.prompt);
      ASSERT_EQ(g.samples.size(), 2u);
      EXPECT_EQ(g.samples[1].response, want.samples[1].response);
      EXPECT_EQ(g.samples[1].versions, want.samples[1].versions);
      EXPECT_DOUBLE_EQ(g.samples[1].reward, want.samples[1].reward);
    }
  }
}

TEST_F(ChannelTest, CommandsArePolledWithoutBlocking) {
  const int last = comm_->Size() - 1;
  if (comm_->Rank() == 0) {
    // Let the poller find nothing first, then send two commands and an empty message.
    comm_->Barrier()->Wait(kTimeout);
    Command weights{Command::Kind::kWeights, 3, 7, Json()};
    Command start{Command::Kind::kStart, 2, 0, Json{{"cursor", {{"epoch", 1}}}}};
    std::vector<PendingSend> sends;
    sends.push_back(SendBytes(*comm_, weights.Encode(), last, kCommandTag));
    sends.push_back(SendBytes(*comm_, start.Encode(), last, kCommandTag));
    sends.push_back(SendBytes(*comm_, {}, last, kCommandTag));
    for (auto& s : sends) s.Wait(kTimeout, "commands");
  } else if (comm_->Rank() == last) {
    MessagePoller poller(*comm_, 0, kCommandTag);
    EXPECT_FALSE(poller.Poll().has_value());
    comm_->Barrier()->Wait(kTimeout);
    Command a = Command::Decode(poller.Wait(kTimeout, "a command"));
    EXPECT_EQ(a.kind, Command::Kind::kWeights);
    EXPECT_EQ(a.step, 3);
    EXPECT_EQ(a.version, 7);
    Command b = Command::Decode(poller.Wait(kTimeout, "a command"));
    EXPECT_EQ(b.kind, Command::Kind::kStart);
    EXPECT_EQ(b.payload["cursor"]["epoch"], 1);
    EXPECT_TRUE(poller.Wait(kTimeout, "an empty message").empty());
    // Nothing stays posted after the last message: the next test starts from a clean communicator.
  } else {
    comm_->Barrier()->Wait(kTimeout);
  }
}

TEST_F(ChannelTest, ExpiredWaitNamesRankPeerAndPhase) {
  if (comm_->Rank() != 1) return;
  // Nobody sends on this tag: the wait must expire, not hang, and say what it waited for.
  MessagePoller poller(*comm_, 1, kReportTag + 7);
  try {
    poller.Wait(std::chrono::milliseconds(200), "the eval result");
    FAIL() << "no timeout";
  } catch (const CommTimeoutError& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("rank 1 timed out"), std::string::npos) << what;
    EXPECT_NE(what.find("the eval result from rank 1"), std::string::npos) << what;
  }
  // The abandoned header receive is still posted; satisfy it so that nothing stays pending.
  SendBytes(*comm_, {}, 1, kReportTag + 7).Wait(kTimeout, "self message");
  EXPECT_TRUE(poller.Wait(kTimeout, "self message").empty());
}

TEST(CommandWire, UnknownKindIsAnErrorListingTheKnownOnes) {
  std::string text = R"({"kind": "pause"})";
  try {
    Command::Decode(std::vector<uint8_t>(text.begin(), text.end()));
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("unknown kind 'pause'; known: start, weights, admit, route, eval, stop"),
              std::string::npos);
  }
}

}  // namespace
}  // namespace llamarl::controller
