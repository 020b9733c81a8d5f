// Point-to-point, batches, barrier, split, timeouts and input errors of the mpi backend under mpirun
// -np 2 and -np 3. Values are worked out from rank numbers. Every test leaves no operation pending,
// so that the next one starts from a clean communicator.
#include "core/communicator.h"
#include "core/mpi_communicator.h"
#include "tests/core/communicator_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>

namespace llamarl {
namespace {

using namespace llamarl::testing;  // the communicator test helpers

class MpiP2PTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm_ = CreateCommunicator("mpi");
    rank_ = comm_->Rank();
    size_ = comm_->Size();
    ASSERT_GE(size_, 2) << "run under mpirun -np 2 or more";
  }
  void TearDown() override { comm_->Barrier()->Wait(kTestTimeout); }

  std::unique_ptr<Communicator> comm_;
  int rank_ = 0, size_ = 0;
};

TEST_F(MpiP2PTest, RegistryBuildsTheMpiBackendOverTheWorld) {
  EXPECT_EQ(comm_->Backend(), "mpi");
  EXPECT_EQ(DefaultCommunicatorName(), "mpi");
  int world_rank = -1, world_size = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  EXPECT_EQ(rank_, world_rank);
  EXPECT_EQ(size_, world_size);
}

TEST_F(MpiP2PTest, RingSendRecv) {
  // Rank r sends 4 values 100r + i to r + 1 and receives from r - 1 (both around the ring).
  const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
  at::Tensor out = Values(Generate(4, [&](int64_t i) { return 100.0 * rank_ + i; }), at::kFloat);
  at::Tensor in = at::zeros({4}, at::kFloat);
  auto recv = comm_->Recv(in, prev);
  auto send = comm_->Send(out, next);
  WaitAll({send, recv}, kTestTimeout);
  EXPECT_TRUE(send->IsCompleted());
  EXPECT_TRUE(recv->IsCompleted());
  ExpectValues(in, Generate(4, [&](int64_t i) { return 100.0 * prev + i; }), "ring");
}

TEST_F(MpiP2PTest, TagsSelectMessagesWhateverTheirOrder) {
  // Rank 0 sends tag 5 then tag 6; rank 1 receives tag 6 first. Same tag: matched in issue order.
  if (rank_ == 0) {
    at::Tensor a = Values({5, 5}, at::kLong), b = Values({6, 6, 6}, at::kLong), c = Values({7}, at::kLong);
    WaitAll({comm_->Send(a, 1, {5}), comm_->Send(b, 1, {6}), comm_->Send(c, 1, {5})}, kTestTimeout);
  } else if (rank_ == 1) {
    at::Tensor six = at::zeros({3}, at::kLong), five_first = at::zeros({2}, at::kLong),
               five_second = at::zeros({1}, at::kLong);
    comm_->Recv(six, 0, {6})->Wait(kTestTimeout);
    auto w1 = comm_->Recv(five_first, 0, {5});
    auto w2 = comm_->Recv(five_second, 0, {5});
    WaitAll({w1, w2}, kTestTimeout);
    ExpectValues(six, {6, 6, 6}, "tag 6");
    ExpectValues(five_first, {5, 5}, "first tag 5");
    ExpectValues(five_second, {7}, "second tag 5");
  }
}

TEST_F(MpiP2PTest, ChunkedMessagesKeepTheirOrder) {
  // 11 bf16 values in chunks of 3 elements: 4 MPI messages per tensor, two tensors on one tag.
  auto chunked = CreateMpiCommunicator(MPI_COMM_WORLD, {3});
  auto first = [](int64_t i) { return double(i); };
  auto second = [](int64_t i) { return 50.0 + i; };
  if (rank_ == 0) {
    at::Tensor a = Values(Generate(11, first), at::kBFloat16), b = Values(Generate(11, second), at::kBFloat16);
    WaitAll({chunked->Send(a, 1), chunked->Send(b, 1)}, kTestTimeout);
  } else if (rank_ == 1) {
    at::Tensor a = at::zeros({11}, at::kBFloat16), b = at::zeros({11}, at::kBFloat16);
    WaitAll({chunked->Recv(a, 0), chunked->Recv(b, 0)}, kTestTimeout);
    ExpectValues(a, Generate(11, first), "first");
    ExpectValues(b, Generate(11, second), "second");
  }
}

TEST_F(MpiP2PTest, SendRecvBatchAllToAllWithADifferentSizePerPair) {
  // Rank r sends r + 2q + 1 values 100r + q to every rank q, itself included.
  auto count = [](int from, int to) { return int64_t(from + 2 * to + 1); };
  std::vector<P2POp> ops;
  std::vector<at::Tensor> received;
  for (int q = 0; q < size_; ++q) {
    received.push_back(at::full({count(q, rank_)}, -1, at::kInt));
    ops.push_back(P2POp::Recv(received.back(), q, 3));
  }
  for (int q = 0; q < size_; ++q)
    ops.push_back(P2POp::Send(at::full({count(rank_, q)}, 100 * rank_ + q, at::kInt), q, 3));
  comm_->SendRecvBatch(ops)->Wait(kTestTimeout);
  for (int q = 0; q < size_; ++q)
    ExpectValues(received[q], std::vector<double>(count(q, rank_), 100.0 * q + rank_), "from " + std::to_string(q));
}

TEST_F(MpiP2PTest, ADroppedSendHandleStillDeliversItsMessage) {
  if (rank_ == 0) {
    comm_->Send(Values({1, 2, 3}, at::kDouble), 1);  // handle dropped: the buffer is parked
  } else if (rank_ == 1) {
    at::Tensor in = at::zeros({3}, at::kDouble);
    comm_->Recv(in, 0)->Wait(kTestTimeout);
    ExpectValues(in, {1, 2, 3}, "dropped send");
  }
}

TEST_F(MpiP2PTest, BarrierHoldsEveryRankUntilTheLastArrives) {
  using Clock = std::chrono::steady_clock;
  comm_->Barrier()->Wait(kTestTimeout);
  auto start = Clock::now();
  if (rank_ == 0) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto barrier = comm_->Barrier();
  barrier->Wait(kTestTimeout);
  EXPECT_TRUE(barrier->IsCompleted());
  EXPECT_GE(Clock::now() - start, std::chrono::milliseconds(250)) << "rank " << rank_ << " left the barrier early";
}

TEST_F(MpiP2PTest, SplitIntoGeneratorAndTrainerGroups) {
  // Rank 0 generates, the others train; key -rank reverses the trainers' order.
  const int color = rank_ == 0 ? 0 : 1;
  auto group = comm_->Split(color, -rank_);
  ASSERT_NE(group, nullptr);
  const int group_size = color == 0 ? 1 : size_ - 1;
  EXPECT_EQ(group->Size(), group_size);
  EXPECT_EQ(group->Rank(), color == 0 ? 0 : size_ - 1 - rank_);
  EXPECT_EQ(group->Backend(), "mpi");

  at::Tensor sum = Values({double(rank_), 1}, at::kLong);
  group->AllReduce(sum)->Wait(kTestTimeout);
  const double trainer_rank_sum = (size_ - 1) * size_ / 2.0;
  ExpectValues(sum, {color == 0 ? 0.0 : trainer_rank_sum, double(group_size)}, "group sum");

  std::vector<at::Tensor> world_ranks;
  for (int q = 0; q < group_size; ++q) world_ranks.push_back(at::zeros({1}, at::kInt));
  group->AllGather(world_ranks, Values({double(rank_)}, at::kInt))->Wait(kTestTimeout);
  for (int q = 0; q < group_size; ++q)  // group rank q is world rank size - 1 - q among trainers
    ExpectValues(world_ranks[q], {color == 0 ? 0.0 : double(size_ - 1 - q)}, "world rank of group rank");
  group->Barrier()->Wait(kTestTimeout);
}

TEST_F(MpiP2PTest, NegativeColorTakesNoPart) {
  auto group = comm_->Split(rank_ == 0 ? -1 : 7, rank_);
  if (rank_ == 0) {
    EXPECT_EQ(group, nullptr);
    return;
  }
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->Size(), size_ - 1);
  EXPECT_EQ(group->Rank(), rank_ - 1);
}

TEST_F(MpiP2PTest, UnmatchedRecvTimesOutAndIsWithdrawn) {
  // Rank 1 waits 50 ms for a message rank 0 has not sent. The receive is withdrawn, so the message
  // that rank 0 sends afterwards on the same tag goes to the next receive.
  if (rank_ == 1) {
    at::Tensor lost = at::zeros({2}, at::kFloat);
    auto work = comm_->Recv(lost, 0, {77});
    ExpectThrowsWith<CommTimeoutError>([&] { work->Wait(std::chrono::milliseconds(50)); },
                                       {"Recv from rank 0", "tag 77", "on rank 1 of", "timed out after 50 ms"});
    EXPECT_TRUE(work->IsCompleted());
    ExpectThrowsWith<CommTimeoutError>([&] { work->Wait(); }, {"timed out"});
  }
  comm_->Barrier()->Wait(kTestTimeout);
  if (rank_ == 0) comm_->Send(Values({42, 43}, at::kFloat), 1, {77})->Wait(kTestTimeout);
  if (rank_ == 1) {
    at::Tensor next = at::zeros({2}, at::kFloat);
    comm_->Recv(next, 0, {77})->Wait(kTestTimeout);
    ExpectValues(next, {42, 43}, "message after the withdrawn receive");
  }
}

TEST_F(MpiP2PTest, CollectiveTimesOutWhileARankIsLateAndCompletesWhenItArrives) {
  if (rank_ != 0) std::this_thread::sleep_for(std::chrono::milliseconds(400));
  at::Tensor t = at::ones({3}, at::kFloat);
  auto work = comm_->AllReduce(t);
  if (rank_ == 0) {
    ExpectThrowsWith<CommTimeoutError>([&] { work->Wait(std::chrono::milliseconds(20)); },
                                       {"AllReduce sum of 3 elements", "on rank 0 of", "timed out after 20 ms"});
  }
  work->Wait(kTestTimeout);
  ExpectValues(t, std::vector<double>(3, size_), "late sum");
}

TEST_F(MpiP2PTest, MessageOfTheWrongSizeIsAnErrorOnTheReceiver) {
  if (rank_ == 0) {
    WaitAll({comm_->Send(Values({1, 2, 3}, at::kFloat), 1, {1}), comm_->Send(Values({1, 2, 3}, at::kFloat), 1, {2})},
            kTestTimeout);
  } else if (rank_ == 1) {
    at::Tensor longer = at::zeros({4}, at::kFloat), shorter = at::zeros({2}, at::kFloat);
    auto w1 = comm_->Recv(longer, 0, {1});
    ExpectThrowsWith([&] { w1->Wait(kTestTimeout); }, {"Recv from rank 0 (tag 1)", "expected a message of 4 elements, got 3"});
    auto w2 = comm_->Recv(shorter, 0, {2});
    ExpectThrowsWith([&] { w2->Wait(kTestTimeout); }, {"Recv from rank 0 (tag 2)", "failed: MPI_ERR_TRUNCATE"});
  }
}

TEST_F(MpiP2PTest, InvalidArgumentsAreRejectedBeforeAnythingIsSent) {
  at::Tensor t = at::zeros({2, 3}, at::kFloat);
  ExpectThrowsWith([&] { comm_->Send(t, size_); }, {"Send to rank " + std::to_string(size_), "out of range", "0 <= peer < "});
  ExpectThrowsWith([&] { comm_->Recv(t, -1); }, {"Recv from rank -1", "out of range"});
  ExpectThrowsWith([&] { comm_->Send(t, 0, {-3}); }, {"tag -3 is out of range", "MPI_TAG_UB"});
  ExpectThrowsWith([&] { comm_->Send(at::zeros({2}, at::kShort), 0); },
                   {"dtype Short is not supported", "float32, float64, bfloat16, float16, int64, int32, uint8, bool"});
  at::Tensor complex = at::zeros({2}, at::kComplexFloat);
  ExpectThrowsWith([&] { comm_->AllReduce(complex); }, {"ComplexFloat is not supported"});
  at::Tensor transposed = t.t();
  ExpectThrowsWith([&] { comm_->AllReduce(transposed); }, {"must be contiguous", ".contiguous()"});
  at::Tensor meta = at::empty({2}, at::TensorOptions().device(at::kMeta));
  ExpectThrowsWith([&] { comm_->Broadcast(meta); }, {"moves CPU tensors", "meta", "nccl backend"});
  ExpectThrowsWith([&] { comm_->Broadcast(t, {size_}); }, {"root rank " + std::to_string(size_) + " is out of range"});
  ExpectThrowsWith([] { CreateMpiCommunicator(MPI_COMM_WORLD, {0}); },
                   {"max_elements_per_call (0) must be in [1, 2147483647]"});
  std::vector<P2POp> batch = {P2POp::Send(t, 0), P2POp::Recv(t, size_ + 4)};
  ExpectThrowsWith([&] { comm_->SendRecvBatch(batch); }, {"SendRecvBatch of 2 ops", "op 1", "peer rank"});
}

TEST_F(MpiP2PTest, MismatchedGatherAndScatterTensorsAreRejected) {
  at::Tensor input = at::zeros({2}, at::kFloat);
  std::vector<at::Tensor> too_few(size_ - 1, at::zeros({2}, at::kFloat));
  ExpectThrowsWith([&] { comm_->AllGather(too_few, input); }, {"expected " + std::to_string(size_) + " outputs (one per rank)"});
  std::vector<at::Tensor> wrong_slot(size_, at::zeros({2}, at::kFloat));
  wrong_slot[rank_] = at::zeros({5}, at::kFloat);
  ExpectThrowsWith([&] { comm_->AllGather(wrong_slot, input); }, {"this rank's slot) holds 5 elements", "input has 2"});
  std::vector<at::Tensor> mixed(size_, at::zeros({2}, at::kFloat));
  mixed[size_ - 1] = at::zeros({2}, at::kDouble);
  ExpectThrowsWith([&] { comm_->AllGather(mixed, input); }, {"dtype Double differs from Float"});
  ExpectThrowsWith([&] { comm_->ReduceScatter(input, too_few); }, {"inputs (one per rank)"});
  std::vector<at::Tensor> wrong_part(size_, at::zeros({3}, at::kFloat));
  ExpectThrowsWith([&] { comm_->ReduceScatter(input, wrong_part); }, {"this rank's part) holds 3 elements", "output has 2"});
}

// 2^31 + 5 bytes from rank 0 to rank 1: more than one MPI call can carry. Needs 4.3 GB of memory, so
// it runs only when LLAMARL_TEST_LARGE_MESSAGES=1.
TEST_F(MpiP2PTest, MessageLongerThanIntMaxElements) {
  if (!std::getenv("LLAMARL_TEST_LARGE_MESSAGES")) GTEST_SKIP() << "set LLAMARL_TEST_LARGE_MESSAGES=1 to run";
  const int64_t n = (int64_t(1) << 31) + 5;
  if (rank_ == 0) {
    at::Tensor big = at::empty({n}, at::kByte);
    uint8_t* p = big.data_ptr<uint8_t>();
    for (int64_t i = 0; i < n; ++i) p[i] = uint8_t(i % 251);
    comm_->Send(big, 1)->Wait(kTestTimeout);
  } else if (rank_ == 1) {
    at::Tensor big = at::zeros({n}, at::kByte);
    comm_->Recv(big, 0)->Wait(kTestTimeout);
    const uint8_t* p = big.data_ptr<uint8_t>();
    for (int64_t i : {int64_t(0), int64_t(250), int64_t(INT_MAX) - 1, int64_t(INT_MAX), n - 1})
      EXPECT_EQ(p[i], i % 251) << "byte " << i;
  }
}

}  // namespace
}  // namespace llamarl
