// Host offload round trip: tensors are emptied while offloaded and come back bit for bit, in place
// (the same tensor objects, so modules and optimizers holding them stay valid).
#include "tests/core/communicator_test_util.h"
#include "trainer/host_offload.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace llamarl {
namespace {

using testing::ExpectThrowsWith;

TEST(HostOffloadTest, RoundTripIsBitExactAndKeepsTheTensorObjects) {
  std::vector<at::Tensor> state{at::randn({4, 5}), at::randn({7}).to(at::kBFloat16), at::arange(6).view({2, 3})};
  std::vector<at::Tensor> before;
  for (const auto& t : state) before.push_back(t.clone());
  at::Tensor alias = state[0];  // e.g. the module's own handle on the parameter
  HostOffload offload;
  offload.Offload(state);
  EXPECT_TRUE(offload.offloaded());
  EXPECT_EQ(offload.HostBytes(), 20 * 4 + 7 * 2 + 6 * 8);
  for (const auto& t : state) EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(alias.numel(), 0) << "the memory of every handle is released";
  ExpectThrowsWith([&] { offload.Offload(state); }, {"already offloaded"});
  offload.Restore(state);
  EXPECT_FALSE(offload.offloaded());
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(state[i].sizes(), before[i].sizes());
    EXPECT_EQ(state[i].scalar_type(), before[i].scalar_type());
    EXPECT_TRUE(at::equal(state[i], before[i]));
  }
  EXPECT_TRUE(at::equal(alias, before[0]));
}

// A tensor already in host memory is not copied: the storage itself is kept and handed back, so a
// CPU run's colocated offload holds the state once, not twice.
TEST(HostOffloadTest, HostTensorsKeepTheirStorageInsteadOfACopy) {
  std::vector<at::Tensor> state{at::randn({64, 8}), at::randn({16}).to(at::kBFloat16)};
  std::vector<const void*> storage;
  for (const auto& t : state) storage.push_back(t.data_ptr());
  const at::Tensor expected = state[0].clone();
  HostOffload offload;
  offload.Offload(state);
  EXPECT_EQ(offload.HostBytes(), 64 * 8 * 4 + 16 * 2);
  for (const auto& t : state) EXPECT_EQ(t.numel(), 0);
  offload.Restore(state);
  for (size_t i = 0; i < state.size(); ++i) EXPECT_EQ(state[i].data_ptr(), storage[i]) << "tensor " << i << " was copied";
  EXPECT_TRUE(at::equal(state[0], expected));
}

TEST(HostOffloadTest, RestoreRejectsAnotherList) {
  std::vector<at::Tensor> state{at::ones({3})};
  HostOffload offload;
  ExpectThrowsWith([&] { offload.Restore(state); }, {"nothing is offloaded"});
  offload.Offload(state);
  std::vector<at::Tensor> other{at::ones({3})};
  ExpectThrowsWith([&] { offload.Restore(other); }, {"tensor 0 is not the one that was offloaded"});
  std::vector<at::Tensor> two{state[0], other[0]};
  ExpectThrowsWith([&] { offload.Restore(two); }, {"1 tensors were offloaded but 2 are restored"});
  offload.Restore(state);
  EXPECT_TRUE(at::equal(state[0], at::ones({3})));
}

}  // namespace
}  // namespace llamarl
