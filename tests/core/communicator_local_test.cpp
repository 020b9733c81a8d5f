// The single-rank `local` backend, the backend registry and WaitAll. Point-to-point to oneself is
// matched in issue order within a tag; collectives over one rank are identities.
#include "core/check.h"
#include "core/communicator.h"
#include "core/launcher.h"
#include "tests/core/communicator_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <type_traits>

namespace llamarl {
namespace {

using namespace llamarl::testing;  // the communicator test helpers

class LocalCommunicatorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> comm_ = CreateCommunicator("local");
};

TEST(CommunicatorRegistryTest, KnowsTheBuiltinBackendsAndListsThemForAnUnknownName) {
  auto names = CommunicatorNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "local"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "mpi"), names.end());
  ExpectThrowsWith<Error>([] { CreateCommunicator("gloo"); },
                          {"unknown communicator backend 'gloo'; known: ", "local", "mpi"});
}

TEST(CommunicatorRegistryTest, ARegisteredFactoryIsFoundByName) {
  int calls = 0;
  RegisterCommunicator("test-local", [&calls] {
    ++calls;
    return CreateCommunicator("local");
  });
  auto comm = CreateCommunicator("test-local");
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(comm->Backend(), "local");
  auto names = CommunicatorNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "test-local"), names.end());
}

TEST(CommunicatorRegistryTest, DefaultIsMpiOnlyWhenTheLauncherStartedSeveralRanks) {
  ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", nullptr), pmi("PMI_SIZE", nullptr), pmix("PMIX_SIZE", nullptr);
  EXPECT_EQ(DefaultCommunicatorName(), "local");
  {
    ScopedEnv one("OMPI_COMM_WORLD_SIZE", "1");
    EXPECT_EQ(DefaultCommunicatorName(), "local");
  }
  {
    ScopedEnv four("OMPI_COMM_WORLD_SIZE", "4");
    EXPECT_EQ(DefaultCommunicatorName(), "mpi");
  }
  ScopedEnv slurm("PMI_SIZE", "2");
  EXPECT_EQ(DefaultCommunicatorName(), "mpi");
}

TEST(LauncherTest, WorldSizeAndRankComeFromTheFirstLauncherVariableSet) {
  ScopedEnv ompi("OMPI_COMM_WORLD_SIZE", nullptr), pmi("PMI_SIZE", nullptr), pmix("PMIX_SIZE", nullptr);
  ScopedEnv ompi_rank("OMPI_COMM_WORLD_RANK", nullptr), pmi_rank("PMI_RANK", nullptr), pmix_rank("PMIX_RANK", nullptr);
  EXPECT_EQ(LauncherWorldSize(), 1);  // no launcher
  EXPECT_EQ(LauncherWorldRank(), 0);
  {
    ScopedEnv size("PMIX_SIZE", "8"), rank("PMIX_RANK", "5");
    EXPECT_EQ(LauncherWorldSize(), 8);
    EXPECT_EQ(LauncherWorldRank(), 5);
    ScopedEnv hydra("PMI_SIZE", "3"), hydra_rank("PMI_RANK", "2");  // MPICH's before PMIx's
    EXPECT_EQ(LauncherWorldSize(), 3);
    EXPECT_EQ(LauncherWorldRank(), 2);
  }
  ScopedEnv size("OMPI_COMM_WORLD_SIZE", "4"), rank("OMPI_COMM_WORLD_RANK", "3");
  EXPECT_EQ(LauncherWorldSize(), 4);
  EXPECT_EQ(LauncherWorldRank(), 3);
  ScopedEnv bad("OMPI_COMM_WORLD_SIZE", "4x"), bad_rank("OMPI_COMM_WORLD_RANK", "-1");
  EXPECT_EQ(LauncherWorldSize(), 1);  // not a number: as if no launcher
  EXPECT_EQ(LauncherWorldRank(), 0);
}

TEST(ReduceOpNameTest, NamesEveryOp) {
  EXPECT_STREQ(ReduceOpName(ReduceOp::kSum), "sum");
  EXPECT_STREQ(ReduceOpName(ReduceOp::kAvg), "avg");
  EXPECT_STREQ(ReduceOpName(ReduceOp::kMax), "max");
  EXPECT_STREQ(ReduceOpName(ReduceOp::kMin), "min");
}

TEST_F(LocalCommunicatorTest, IsOneRank) {
  EXPECT_EQ(comm_->Rank(), 0);
  EXPECT_EQ(comm_->Size(), 1);
  EXPECT_EQ(comm_->Backend(), "local");
}

TEST_F(LocalCommunicatorTest, SendsAreReceivedInIssueOrderWithinATagAndCopiedWhenSent) {
  at::Tensor a = Values({1, 2}, at::kFloat), b = Values({3, 4}, at::kFloat), c = Values({9}, at::kLong);
  comm_->Send(a, 0)->Wait();
  comm_->Send(b, 0)->Wait();
  comm_->Send(c, 0, {1})->Wait();
  a.fill_(-1);  // the message was taken when sent
  at::Tensor got_c = at::zeros({1}, at::kLong), first = at::zeros({2}, at::kFloat), second = at::zeros({2}, at::kFloat);
  comm_->Recv(got_c, 0, {1})->Wait();
  comm_->Recv(first, 0)->Wait();
  comm_->Recv(second, 0)->Wait();
  ExpectValues(got_c, {9}, "tag 1");
  ExpectValues(first, {1, 2}, "first on tag 0");
  ExpectValues(second, {3, 4}, "second on tag 0");
}

TEST_F(LocalCommunicatorTest, ARecvPostedFirstCompletesWhenItsSendArrives) {
  at::Tensor in = at::zeros({2, 2}, at::kDouble);
  auto recv = comm_->Recv(in, 0, {4});
  EXPECT_FALSE(recv->IsCompleted());
  comm_->Send(Values({1, 2, 3, 4}, at::kDouble).view({2, 2}), 0, {4})->Wait();
  EXPECT_TRUE(recv->IsCompleted());
  recv->Wait();
  ExpectValues(in, {1, 2, 3, 4}, "late send");
}

TEST_F(LocalCommunicatorTest, AnUnmatchedRecvFailsInsteadOfHanging) {
  at::Tensor in = at::zeros({1}, at::kFloat);
  auto recv = comm_->Recv(in, 0);
  ExpectThrowsWith([&] { recv->Wait(std::chrono::milliseconds(10)); }, {"never matched by a Send"});
}

TEST_F(LocalCommunicatorTest, MismatchedMessagesAndPeersAreErrors) {
  comm_->Send(Values({1, 2}, at::kFloat), 0)->Wait();
  at::Tensor wrong = at::zeros({3}, at::kFloat);
  ExpectThrowsWith([&] { comm_->Recv(wrong, 0); }, {"receiving 3 elements of Float, sent 2 elements of Float"});
  ExpectThrowsWith([&] { comm_->Send(wrong, 1); }, {"Send: peer rank 1 is out of range", "expected 0 <= peer < 1"});
  ExpectThrowsWith([&] { comm_->Recv(wrong, -1); }, {"Recv: peer rank -1 is out of range", "expected 0 <= peer < 1"});
}

TEST_F(LocalCommunicatorTest, CollectivesOverOneRankAreIdentities) {
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAvg, ReduceOp::kMax, ReduceOp::kMin}) {
    at::Tensor t = Values({1, -2, 3}, at::kFloat);
    comm_->AllReduce(t, {op})->Wait();
    ExpectValues(t, {1, -2, 3}, ReduceOpName(op));
  }
  std::vector<at::Tensor> outputs = {at::zeros({3}, at::kInt)};
  comm_->AllGather(outputs, Values({4, 5, 6}, at::kInt))->Wait();
  ExpectValues(outputs[0], {4, 5, 6}, "all-gather");
  at::Tensor out = at::zeros({2}, at::kInt);
  comm_->ReduceScatter(out, {Values({7, 8}, at::kInt)})->Wait();
  ExpectValues(out, {7, 8}, "reduce-scatter");
  at::Tensor b = Values({9}, at::kInt);
  comm_->Broadcast(b, {0})->Wait();
  ExpectValues(b, {9}, "broadcast");
  EXPECT_TRUE(comm_->Barrier()->IsCompleted());
}

TEST_F(LocalCommunicatorTest, CollectivesRejectAWrongNumberOfTensorsOrRoot) {
  std::vector<at::Tensor> two = {at::zeros({1}), at::zeros({1})};
  ExpectThrowsWith([&] { comm_->AllGather(two, at::zeros({1})); }, {"AllGather: expected 1 outputs (one per rank)", "got 2"});
  at::Tensor out = at::zeros({1});
  ExpectThrowsWith([&] { comm_->ReduceScatter(out, two); }, {"ReduceScatter: expected 1 inputs (one per rank)", "got 2"});
  ExpectThrowsWith([&] { comm_->Broadcast(out, {1}); }, {"Broadcast: root rank 1 is out of range", "expected 0 <= root < 1"});
}

TEST_F(LocalCommunicatorTest, ABatchExchangesWithItselfWhateverTheOrderOfItsOps) {
  at::Tensor in = at::zeros({3}, at::kByte);
  comm_->SendRecvBatch({P2POp::Recv(in, 0, 2), P2POp::Send(Values({7, 8, 9}, at::kByte), 0, 2)})->Wait();
  ExpectValues(in, {7, 8, 9}, "self exchange");
}

TEST_F(LocalCommunicatorTest, SplitGivesOneRankOrNothing) {
  EXPECT_EQ(comm_->Split(-1, 0), nullptr);
  auto group = comm_->Split(3, 5);
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->Size(), 1);
  EXPECT_EQ(group->Backend(), "local");
}

// A Work that records whether it was waited for; for testing WaitAll itself.
class RecordingWork final : public Work {
 public:
  explicit RecordingWork(std::string error) : error_(std::move(error)) {}
  bool IsCompleted() override { return waited_; }
  void Wait(std::chrono::milliseconds) override {
    waited_ = true;
    if (!error_.empty()) throw Error(error_);
  }
  bool waited() const { return waited_; }

 private:
  std::string error_;
  bool waited_ = false;
};

// One exception root: a broken invariant and a peer's timeout are llamarl::Errors that a narrower
// catch can still tell apart, so a catch site needs no second family.
TEST(ErrorFamilyTest, InternalErrorsAndTimeoutsAreErrorsAndKeepTheirType) {
  static_assert(std::is_base_of_v<Error, InternalError> && std::is_base_of_v<Error, CommTimeoutError>);
  ExpectThrowsWith<Error>([] { LLAMARL_ASSERT(1 + 1 == 3, "arithmetic broke: ", 2); },
                          {"internal error at", "communicator_local_test.cpp", "1 + 1 == 3", "arithmetic broke: 2"});
  ExpectThrowsWith<InternalError>([] { LLAMARL_ASSERT(false, "invariant"); }, {"invariant"});
  ExpectThrowsWith<Error>([] { throw CommTimeoutError("rank 0 timed out waiting for rank 1"); }, {"timed out"});
  try {
    LLAMARL_CHECK(false, "a user's error");
  } catch (const InternalError&) {
    ADD_FAILURE() << "LLAMARL_CHECK threw an InternalError";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "a user's error");
  }
}

TEST(WaitAllTest, WaitsForEveryWorkThenRethrowsTheFirstError) {
  auto ok = std::make_shared<RecordingWork>(""), first = std::make_shared<RecordingWork>("first failure"),
       second = std::make_shared<RecordingWork>("second failure"), last = std::make_shared<RecordingWork>("");
  ExpectThrowsWith<Error>([&] { WaitAll({ok, first, nullptr, second, last}); }, {"first failure"});
  EXPECT_TRUE(ok->waited());
  EXPECT_TRUE(second->waited());
  EXPECT_TRUE(last->waited());
  WaitAll({ok, last});  // no error
}

}  // namespace
}  // namespace llamarl
