// The nccl backend on CUDA tensors: the cases of the mpi suites, with values worked out from rank
// numbers (P ranks, T = P(P+1)/2). CTest runs it as one process (a world of one rank); on a node with
// several GPUs, `mpirun -np N core_communicator_gpu_test` (N <= GPUs) runs the same cases across ranks.
#include "core/communicator.h"
#include "core/mpi.h"
#include "tests/core/communicator_test_util.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <gtest/gtest.h>

namespace llamarl {
namespace {

using namespace llamarl::testing;  // the communicator test helpers

#ifdef LLAMARL_HAVE_NCCL

class NcclTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (c10::cuda::device_count() == 0) return;
    comm_ = CreateCommunicator("nccl").release();
  }
  static void TearDownTestSuite() {
    delete comm_;
    comm_ = nullptr;
  }
  void SetUp() override {
    if (!comm_) GTEST_SKIP() << "no CUDA device visible";
    rank_ = comm_->Rank();
    size_ = comm_->Size();
    device_ = at::Device(at::kCUDA, LocalRank());
    c10::cuda::set_device(device_.index());
  }

  // The backend's rule: the rank among the ranks of this node picks the GPU.
  static c10::DeviceIndex LocalRank() {
    MPI_Comm node;
    int world_rank = 0, local_rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank);
    MPI_Comm_free(&node);
    return c10::DeviceIndex(local_rank);
  }

  at::Tensor Make(const std::vector<double>& values, at::ScalarType dtype) const { return Values(values, dtype, device_); }
  at::TensorOptions On(at::ScalarType dtype) const { return at::TensorOptions().dtype(dtype).device(device_); }
  double T() const { return size_ * (size_ + 1) / 2.0; }

  static Communicator* comm_;
  int rank_ = 0, size_ = 0;
  at::Device device_ = at::Device(at::kCUDA, 0);
};

Communicator* NcclTest::comm_ = nullptr;

TEST_F(NcclTest, IsTheNcclBackendOverTheWorld) {
  EXPECT_EQ(comm_->Backend(), "nccl");
  int world_size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  EXPECT_EQ(size_, world_size);
}

TEST_F(NcclTest, AllReduceEveryOpForEveryDtype) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf, at::kLong, at::kInt, at::kByte}) {
    std::string name = c10::toString(dtype);
    auto value = [&](int64_t i) { return 3.0 * ((i + rank_) % size_) + i; };
    at::Tensor sum = Make(Generate(5, [&](int64_t i) { return (rank_ + 1.0) * (i + 1); }), dtype);
    at::Tensor mx = Make(Generate(5, value), dtype), mn = Make(Generate(5, value), dtype);
    WaitAll({comm_->AllReduce(sum), comm_->AllReduce(mx, {ReduceOp::kMax}), comm_->AllReduce(mn, {ReduceOp::kMin})},
            kTestTimeout);
    ExpectValues(sum, Generate(5, [&](int64_t i) { return T() * (i + 1); }), name + " sum");
    ExpectValues(mx, Generate(5, [&](int64_t i) { return 3.0 * (size_ - 1) + i; }), name + " max");
    ExpectValues(mn, Generate(5, [](int64_t i) { return double(i); }), name + " min");
    at::Tensor avg = Make(Generate(5, [&](int64_t i) { return (rank_ + 1.0) * (i + 1); }), dtype);
    if (at::isFloatingType(dtype)) {
      comm_->AllReduce(avg, {ReduceOp::kAvg})->Wait(kTestTimeout);
      ExpectValues(avg, Generate(5, [&](int64_t i) { return (size_ + 1) / 2.0 * (i + 1); }), name + " avg");
    } else {
      ExpectThrowsWith([&] { comm_->AllReduce(avg, {ReduceOp::kAvg}); }, {"avg over", "sum and divide"});
    }
  }
}

TEST_F(NcclTest, InputsWrittenOnTheCallersStreamAreReducedAfterThoseWrites) {
  c10::cuda::CUDAStreamGuard side(c10::cuda::getStreamFromPool(false, device_.index()));
  at::Tensor t = at::full({1 << 22}, rank_ + 1.0, On(at::kFloat));  // queued on the side stream
  comm_->AllReduce(t)->Wait(kTestTimeout);
  EXPECT_EQ(t.min().item<float>(), T());
  EXPECT_EQ(t.max().item<float>(), T());
}

TEST_F(NcclTest, UnevenAllGatherAndReduceScatter) {
  // AllGather: rank q contributes 2q + 3 values 10q + j. ReduceScatter: rank q's part has q + 2
  // elements, to which rank r contributes (r + 1) * (10q + j + 1).
  for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf, at::kLong, at::kByte}) {
    std::string name = c10::toString(dtype);
    std::vector<at::Tensor> gathered, inputs;
    for (int q = 0; q < size_; ++q) {
      gathered.push_back(at::full({2 * q + 3}, -1, On(dtype)));
      inputs.push_back(Make(Generate(q + 2, [&](int64_t j) { return (rank_ + 1) * (10.0 * q + j + 1); }), dtype));
    }
    at::Tensor mine = Make(Generate(2 * rank_ + 3, [&](int64_t j) { return 10.0 * rank_ + j; }), dtype);
    at::Tensor reduced = at::full({rank_ + 2}, -1, On(dtype));
    WaitAll({comm_->AllGather(gathered, mine), comm_->ReduceScatter(reduced, inputs)}, kTestTimeout);
    for (int q = 0; q < size_; ++q)
      ExpectValues(gathered[q], Generate(2 * q + 3, [&](int64_t j) { return 10.0 * q + j; }), name + " gathered");
    ExpectValues(reduced, Generate(rank_ + 2, [&](int64_t j) { return T() * (10.0 * rank_ + j + 1); }), name + " scattered");
  }
}

TEST_F(NcclTest, BroadcastFromTheLastRankAndBarrier) {
  const int root = size_ - 1;
  at::Tensor t = Make(Generate(9, [&](int64_t j) { return rank_ == root ? 7.0 * j + 1 : 0.0; }), at::kBFloat16);
  comm_->Broadcast(t, {root})->Wait(kTestTimeout);
  ExpectValues(t, Generate(9, [](int64_t j) { return 7.0 * j + 1; }), "broadcast");
  auto barrier = comm_->Barrier();
  barrier->Wait(kTestTimeout);
  EXPECT_TRUE(barrier->IsCompleted());
}

TEST_F(NcclTest, SendRecvBatchAllToAllWithADifferentSizePerPair) {
  auto count = [](int from, int to) { return int64_t(from + 2 * to + 1); };
  std::vector<P2POp> ops;
  std::vector<at::Tensor> received;
  for (int q = 0; q < size_; ++q) {
    received.push_back(at::full({count(q, rank_)}, -1, On(at::kInt)));
    ops.push_back(P2POp::Recv(received.back(), q));
    ops.push_back(P2POp::Send(at::full({count(rank_, q)}, 100 * rank_ + q, On(at::kInt)), q));
  }
  comm_->SendRecvBatch(ops)->Wait(kTestTimeout);
  for (int q = 0; q < size_; ++q)
    ExpectValues(received[q], std::vector<double>(count(q, rank_), 100.0 * q + rank_), "from " + std::to_string(q));
}

TEST_F(NcclTest, SendAndRecvMatchInIssueOrder) {
  if (size_ < 2) GTEST_SKIP() << "needs two ranks (mpirun -np 2 on a node with two GPUs)";
  if (rank_ == 0) {
    WaitAll({comm_->Send(Make({1, 2}, at::kFloat), 1), comm_->Send(Make({3}, at::kFloat), 1)}, kTestTimeout);
  } else if (rank_ == 1) {
    at::Tensor a = at::zeros({2}, On(at::kFloat)), b = at::zeros({1}, On(at::kFloat));
    WaitAll({comm_->Recv(a, 0), comm_->Recv(b, 0)}, kTestTimeout);
    ExpectValues(a, {1, 2}, "first");
    ExpectValues(b, {3}, "second");
  }
}

TEST_F(NcclTest, SplitIntoGeneratorAndTrainerGroups) {
  const int color = rank_ == 0 ? 0 : 1;
  auto group = comm_->Split(color, rank_);
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->Backend(), "nccl");
  EXPECT_EQ(group->Size(), color == 0 ? 1 : size_ - 1);
  at::Tensor sum = Make({double(rank_)}, at::kLong);
  group->AllReduce(sum)->Wait(kTestTimeout);
  ExpectValues(sum, {color == 0 ? 0.0 : (size_ - 1) * size_ / 2.0}, "group sum");
  EXPECT_EQ(comm_->Split(rank_ == 0 ? -1 : 0, 0) == nullptr, rank_ == 0);
}

TEST_F(NcclTest, InvalidArgumentsAreRejected) {
  at::Tensor cpu = at::zeros({2});
  ExpectThrowsWith([&] { comm_->AllReduce(cpu); }, {"moves tensors on cuda:", "got one on cpu", "mpi backend"});
  at::Tensor shorts = at::zeros({2}, On(at::kShort));
  ExpectThrowsWith([&] { comm_->AllReduce(shorts); }, {"dtype Short is not supported by the nccl backend"});
  at::Tensor transposed = at::zeros({2, 3}, On(at::kFloat)).t();
  ExpectThrowsWith([&] { comm_->Broadcast(transposed); }, {"must be contiguous"});
  at::Tensor t = at::zeros({2}, On(at::kFloat));
  ExpectThrowsWith([&] { comm_->Send(t, size_); }, {"peer rank " + std::to_string(size_) + " is out of range"});
  ExpectThrowsWith([&] { comm_->Broadcast(t, {-1}); }, {"root rank -1 is out of range"});
  std::vector<at::Tensor> too_many(size_ + 1, t);
  ExpectThrowsWith([&] { comm_->AllGather(too_many, t); }, {"outputs (one per rank), got " + std::to_string(size_ + 1)});
  at::Tensor flags = at::zeros({2}, On(at::kBool));
  ExpectThrowsWith([&] { comm_->AllReduce(flags); }, {"sum over bool"});
}

// Every rank waits for a message that nobody sends: each Wait times out and aborts its own
// communicator (a separate one, so that the suite's communicator stays usable).
TEST_F(NcclTest, ATimeoutAbortsTheCommunicator) {
  auto doomed = CreateCommunicator("nccl");
  at::Tensor t = at::zeros({4}, On(at::kFloat));
  auto work = doomed->Recv(t, (rank_ + 1) % size_);
  ExpectThrowsWith<CommTimeoutError>([&] { work->Wait(std::chrono::milliseconds(200)); },
                                     {"Recv from rank", "timed out after 200 ms", "aborted"});
  ExpectThrowsWith([&] { doomed->AllReduce(t); }, {"the NCCL communicator was aborted"});
}

#else

TEST(NcclTest, NeedsABuildWithNccl) {
  GTEST_SKIP() << "built without NCCL (LLAMARL_NCCL=OFF): the nccl backend is absent";
}

#endif  // LLAMARL_HAVE_NCCL

}  // namespace
}  // namespace llamarl
