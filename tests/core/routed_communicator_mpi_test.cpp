// RouteByDevice (core/routed_communicator.h) under mpirun -np 2 and -np 3: CPU tensors go to the host
// backend and every other device's to the device backend (seen through the backend that rejects a
// meta tensor), collectives, batches and Split over two mpi worlds, and the errors for a batch that
// mixes devices and for backends whose ranks differ. Values are worked out from rank numbers.
#include "core/check.h"
#include "core/communicator.h"
#include "core/routed_communicator.h"
#include "tests/core/communicator_test_util.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <gtest/gtest.h>

namespace llamarl {
namespace {

using namespace llamarl::testing;  // the communicator test helpers

class RoutedCommunicatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    world_ = RouteByDevice(CreateCommunicator("mpi"), CreateCommunicator("mpi"));
    rank_ = world_->Rank();
    size_ = world_->Size();
    ASSERT_GE(size_, 2) << "run under mpirun -np 2 or more";
  }
  void TearDown() override { world_->Barrier()->Wait(kTestTimeout); }

  std::unique_ptr<Communicator> world_;
  int rank_ = 0, size_ = 0;
};

at::Tensor MetaTensor() { return at::empty({2}, at::TensorOptions().dtype(at::kFloat).device(at::kMeta)); }

TEST_F(RoutedCommunicatorTest, CpuTensorsGoToTheHostBackendAndOthersToTheDeviceBackend) {
  // One-rank communicators of both kinds: the backend that rejects the meta tensor names itself.
  std::unique_ptr<Communicator> self = world_->Split(rank_, 0);
  auto routed = RouteByDevice(CreateCommunicator("local"), self->Split(0, 0));
  EXPECT_EQ(routed->Backend(), "mpi+mpi+local");  // device: a routed one-rank split
  at::Tensor meta = MetaTensor();
  ExpectThrowsWith<llamarl::Error>([&] { routed->AllReduce(meta)->Wait(kTestTimeout); },
                               {"the mpi backend moves CPU tensors", "meta"});
  auto local_device = RouteByDevice(self->Split(0, 0), CreateCommunicator("local"));
  ExpectThrowsWith<llamarl::Error>([&] { local_device->AllReduce(meta)->Wait(kTestTimeout); },
                               {"the local backend moves CPU or CUDA tensors", "meta"});
  at::Tensor cpu = Values({1, 2}, at::kFloat);
  routed->AllReduce(cpu)->Wait(kTestTimeout);
  local_device->AllReduce(cpu)->Wait(kTestTimeout);
  ExpectValues(cpu, {1, 2}, "one-rank all-reduce");
}

TEST_F(RoutedCommunicatorTest, CollectivesBatchesAndSplitWorkOverTheWorld) {
  EXPECT_EQ(world_->Backend(), "mpi+mpi");
  at::Tensor sum = Values({double(rank_), 1}, at::kLong);
  world_->AllReduce(sum)->Wait(kTestTimeout);
  ExpectValues(sum, {double(size_ * (size_ - 1) / 2), double(size_)}, "all-reduce");

  std::vector<at::Tensor> gathered;
  for (int r = 0; r < size_; ++r) gathered.push_back(at::zeros({1}, at::kFloat));
  world_->AllGather(gathered, Values({10.0 * rank_}, at::kFloat))->Wait(kTestTimeout);
  for (int r = 0; r < size_; ++r) ExpectValues(gathered[size_t(r)], {10.0 * r}, "all-gather");

  const int next = (rank_ + 1) % size_, prev = (rank_ + size_ - 1) % size_;
  at::Tensor in = at::zeros({3}, at::kFloat);
  world_->SendRecvBatch({P2POp::Send(Values({1.0 * rank_, 2, 3}, at::kFloat), next), P2POp::Recv(in, prev)})
      ->Wait(kTestTimeout);
  ExpectValues(in, {1.0 * prev, 2, 3}, "ring batch");

  std::unique_ptr<Communicator> half = world_->Split(rank_ % 2, rank_);
  ASSERT_NE(half, nullptr);
  EXPECT_EQ(half->Backend(), "mpi+mpi");
  EXPECT_EQ(half->Size(), (size_ + 1 - rank_ % 2) / 2);
  EXPECT_EQ(world_->Split(rank_ == 0 ? 0 : -1, 0) == nullptr, rank_ != 0);
}

TEST_F(RoutedCommunicatorTest, ABatchMixingDevicesOrBackendsOverDifferentRanksAreErrors) {
  at::Tensor cpu = at::zeros({2}, at::kFloat);
  ExpectThrowsWith<llamarl::Error>(
      [&] { world_->SendRecvBatch({P2POp::Send(cpu, (rank_ + 1) % size_), P2POp::Recv(MetaTensor(), 0)}); },
      {"SendRecvBatch on the mpi+mpi communicator mixes tensors on cpu and meta", "one batch per device"});
  // The device backend's ranks in reverse order.
  std::unique_ptr<Communicator> host = CreateCommunicator("mpi");
  std::unique_ptr<Communicator> reversed = CreateCommunicator("mpi")->Split(0, size_ - rank_);
  if (reversed->Rank() == rank_) return;  // the middle rank of an odd world
  ExpectThrowsWith<llamarl::Error>([&] { RouteByDevice(std::move(host), std::move(reversed)); },
                               {"RouteByDevice: the mpi communicator is rank", "both must span the same ranks"});
}

TEST(CreateJobCommunicatorTest, TheControlBackendAloneWhenItMovesTheTensorsToo) {
  const c10::Device cpu(c10::kCPU);
  EXPECT_EQ(CreateJobCommunicator(cpu, "auto", "comm.backend")->Backend(), "mpi");
  EXPECT_EQ(CreateJobCommunicator(cpu, "mpi", "comm.backend")->Backend(), "mpi");
  ExpectThrowsWith<llamarl::Error>([&] { CreateJobCommunicator(cpu, "local", "comm.backend"); },
                               {"comm.backend is 'local' but the job has"});
}

}  // namespace
}  // namespace llamarl
