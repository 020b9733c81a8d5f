// Collectives of the mpi backend under mpirun -np 2 and -np 3: every dtype the backend supports, with
// each message sent whole and cut into chunks of 2 elements (max_elements_per_call = 2, which also
// takes the per-root broadcast/reduce paths that AllGather/ReduceScatter use past INT_MAX elements).
// Expected values are worked out from rank numbers: P ranks, T = P(P+1)/2 = sum of (r + 1).
#include "core/communicator.h"
#include "core/mpi_communicator.h"
#include "tests/core/communicator_test_util.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <climits>
#include <cmath>
#include <limits>

namespace llamarl {
namespace {

using namespace llamarl::testing;  // the communicator test helpers

struct Case {
  at::ScalarType dtype;
  int64_t max_elements_per_call;
};

std::string CaseName(const ::testing::TestParamInfo<Case>& info) {
  return std::string(c10::toString(info.param.dtype)) +
         (info.param.max_elements_per_call == INT_MAX ? "_whole" : "_chunked");
}

bool IsFloating(at::ScalarType t) { return at::isFloatingType(t); }

class MpiCollectiveTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    comm_ = CreateMpiCommunicator(MPI_COMM_WORLD, {GetParam().max_elements_per_call});
    rank_ = comm_->Rank();
    size_ = comm_->Size();
    dtype_ = GetParam().dtype;
  }

  at::Tensor Make(const std::vector<double>& values) const { return Values(values, dtype_); }
  double T() const { return size_ * (size_ + 1) / 2.0; }

  std::unique_ptr<Communicator> comm_;
  int rank_ = 0, size_ = 0;
  at::ScalarType dtype_ = at::kFloat;
};

TEST_P(MpiCollectiveTest, AllReduceSum) {
  // Rank r holds (r + 1) * (i + 1); the sum is T * (i + 1).
  at::Tensor t = Make(Generate(5, [&](int64_t i) { return (rank_ + 1.0) * (i + 1); }));
  comm_->AllReduce(t, {ReduceOp::kSum})->Wait(kTestTimeout);
  ExpectValues(t, Generate(5, [&](int64_t i) { return T() * (i + 1); }), "sum");
}

TEST_P(MpiCollectiveTest, AllReduceMaxAndMinTakeEachElementFromADifferentRank) {
  // Rank r holds 3 * ((i + r) mod P) + i: element i's maximum sits on rank (P - 1 - i) mod P.
  auto value = [&](int64_t i) { return 3.0 * ((i + rank_) % size_) + i; };
  at::Tensor mx = Make(Generate(7, value)), mn = Make(Generate(7, value));
  auto max_work = comm_->AllReduce(mx, {ReduceOp::kMax});
  auto min_work = comm_->AllReduce(mn, {ReduceOp::kMin});
  WaitAll({max_work, min_work}, kTestTimeout);
  ExpectValues(mx, Generate(7, [&](int64_t i) { return 3.0 * (size_ - 1) + i; }), "max");
  ExpectValues(mn, Generate(7, [&](int64_t i) { return double(i); }), "min");
}

TEST_P(MpiCollectiveTest, AllReduceAvgOrRejectsIt) {
  at::Tensor t = Make(Generate(5, [&](int64_t i) { return (rank_ + 1.0) * (i + 1); }));
  if (!IsFloating(dtype_)) {
    ExpectThrowsWith([&] { comm_->AllReduce(t, {ReduceOp::kAvg}); }, {"avg over", "sum and divide"});
    return;
  }
  comm_->AllReduce(t, {ReduceOp::kAvg})->Wait(kTestTimeout);
  ExpectValues(t, Generate(5, [&](int64_t i) { return (size_ + 1) / 2.0 * (i + 1); }), "avg");
}

TEST_P(MpiCollectiveTest, AllReduceOfATwoDimensionalAndOfAnEmptyTensor) {
  at::Tensor t = Make(Generate(6, [&](int64_t i) { return double(rank_ == 0 ? i : 0); })).view({2, 3});
  at::Tensor empty = Make({});
  auto w1 = comm_->AllReduce(t);
  auto w2 = comm_->AllReduce(empty);
  WaitAll({w1, w2}, kTestTimeout);
  ExpectValues(t, Generate(6, [](int64_t i) { return double(i); }), "2-d sum");
  EXPECT_EQ(t.sizes().vec(), (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(empty.numel(), 0);
}

// AllGather: rank q contributes 2q + 3 elements valued 10q + j, so every output slot differs in size.
class MpiAllGatherTest : public MpiCollectiveTest {
 protected:
  int64_t Count(int q) const { return 2 * q + 3; }
  std::vector<double> Part(int q) const { return Generate(Count(q), [&](int64_t j) { return 10.0 * q + j; }); }
  at::Tensor Input() const { return Make(Part(rank_)); }
  void ExpectGathered(const std::vector<at::Tensor>& outputs, const std::string& layout) const {
    for (int q = 0; q < size_; ++q) ExpectValues(outputs[q], Part(q), layout + ", outputs[" + std::to_string(q) + "]");
  }
  // One flat tensor and its per-rank views.
  std::vector<at::Tensor> Views(at::Tensor& flat) const {
    int64_t total = 0;
    for (int q = 0; q < size_; ++q) total += Count(q);
    flat = at::zeros({total}, at::TensorOptions().dtype(dtype_));
    std::vector<at::Tensor> views;
    for (int q = 0, offset = 0; q < size_; offset += Count(q), ++q) views.push_back(flat.narrow(0, offset, Count(q)));
    return views;
  }
};

TEST_P(MpiAllGatherTest, UnevenIntoSeparateTensors) {
  std::vector<at::Tensor> outputs;
  for (int q = 0; q < size_; ++q) outputs.push_back(at::full({Count(q)}, -1, at::TensorOptions().dtype(dtype_)));
  comm_->AllGather(outputs, Input())->Wait(kTestTimeout);
  ExpectGathered(outputs, "separate");
}

TEST_P(MpiAllGatherTest, UnevenIntoViewsOfOneBuffer) {
  at::Tensor flat;
  std::vector<at::Tensor> outputs = Views(flat);
  comm_->AllGather(outputs, Input())->Wait(kTestTimeout);
  ExpectGathered(outputs, "views");
}

TEST_P(MpiAllGatherTest, InPlaceWhenTheInputIsThisRanksSlot) {
  at::Tensor flat;
  std::vector<at::Tensor> outputs = Views(flat);
  outputs[rank_].copy_(Input());
  comm_->AllGather(outputs, outputs[rank_])->Wait(kTestTimeout);
  ExpectGathered(outputs, "in place");
}

// ReduceScatter: the part for rank q has q + 2 elements; rank r contributes (r + 1) * (10q + j + 1).
class MpiReduceScatterTest : public MpiCollectiveTest {
 protected:
  int64_t Count(int q) const { return q + 2; }
  double Base(int q, int64_t j) const { return 10.0 * q + j + 1; }
  std::vector<double> Part(int q) const { return Generate(Count(q), [&](int64_t j) { return (rank_ + 1) * Base(q, j); }); }
  std::vector<double> Expected(double factor) const {
    return Generate(Count(rank_), [&](int64_t j) { return factor * Base(rank_, j); });
  }
  std::vector<at::Tensor> SeparateInputs() const {
    std::vector<at::Tensor> inputs;
    for (int q = 0; q < size_; ++q) inputs.push_back(Make(Part(q)));
    return inputs;
  }
  at::Tensor Output() const { return at::full({Count(rank_)}, -1, at::TensorOptions().dtype(dtype_)); }
};

TEST_P(MpiReduceScatterTest, UnevenSumMaxMinFromSeparateTensors) {
  at::Tensor sum = Output(), mx = Output(), mn = Output();
  auto inputs = SeparateInputs();
  auto w1 = comm_->ReduceScatter(sum, inputs, {ReduceOp::kSum});
  auto w2 = comm_->ReduceScatter(mx, inputs, {ReduceOp::kMax});
  auto w3 = comm_->ReduceScatter(mn, inputs, {ReduceOp::kMin});
  WaitAll({w1, w2, w3}, kTestTimeout);
  ExpectValues(sum, Expected(T()), "sum");
  ExpectValues(mx, Expected(size_), "max");
  ExpectValues(mn, Expected(1), "min");
}

TEST_P(MpiReduceScatterTest, FromViewsOfOneBufferAndIntoThisRanksOwnPart) {
  std::vector<at::Tensor> flat_parts;
  for (int q = 0; q < size_; ++q) flat_parts.push_back(Make(Part(q)));
  at::Tensor flat = at::cat(flat_parts);
  std::vector<at::Tensor> inputs;
  for (int q = 0, offset = 0; q < size_; offset += Count(q), ++q) inputs.push_back(flat.narrow(0, offset, Count(q)));
  at::Tensor out = Output();
  comm_->ReduceScatter(out, inputs)->Wait(kTestTimeout);
  ExpectValues(out, Expected(T()), "from views");
  // The output may be this rank's own input part: the result replaces it.
  at::Tensor own = inputs[rank_];
  comm_->ReduceScatter(own, inputs)->Wait(kTestTimeout);
  ExpectValues(own, Expected(T()), "into own part");
}

TEST_P(MpiReduceScatterTest, AvgOrRejectsIt) {
  at::Tensor out = Output();
  auto inputs = SeparateInputs();
  if (!IsFloating(dtype_)) {
    ExpectThrowsWith([&] { comm_->ReduceScatter(out, inputs, {ReduceOp::kAvg}); }, {"avg over"});
    return;
  }
  comm_->ReduceScatter(out, inputs, {ReduceOp::kAvg})->Wait(kTestTimeout);
  ExpectValues(out, Expected((size_ + 1) / 2.0), "avg");
}

TEST_P(MpiCollectiveTest, BroadcastFromTheLastRank) {
  const int root = size_ - 1;
  at::Tensor t = Make(Generate(9, [&](int64_t j) { return rank_ == root ? 7.0 * j + 1 : 0.0; })).view({3, 3});
  comm_->Broadcast(t, {root})->Wait(kTestTimeout);
  ExpectValues(t, Generate(9, [](int64_t j) { return 7.0 * j + 1; }), "broadcast");
}

const std::vector<Case> kCases = [] {
  std::vector<Case> cases;
  for (at::ScalarType t : {at::kFloat, at::kDouble, at::kBFloat16, at::kHalf, at::kLong, at::kInt, at::kByte})
    for (int64_t max_elements : {int64_t(INT_MAX), int64_t(2)}) cases.push_back({t, max_elements});
  return cases;
}();

INSTANTIATE_TEST_SUITE_P(Dtypes, MpiCollectiveTest, ::testing::ValuesIn(kCases), CaseName);
INSTANTIATE_TEST_SUITE_P(Dtypes, MpiAllGatherTest, ::testing::ValuesIn(kCases), CaseName);
INSTANTIATE_TEST_SUITE_P(Dtypes, MpiReduceScatterTest, ::testing::ValuesIn(kCases), CaseName);

class MpiReduceEdgeTest : public ::testing::Test {
 protected:
  std::unique_ptr<Communicator> comm_ = CreateCommunicator("mpi");
};

TEST_F(MpiReduceEdgeTest, Uint8SumWrapsModulo256) {
  at::Tensor t = at::full({4}, 200, at::TensorOptions().dtype(at::kByte));
  comm_->AllReduce(t)->Wait(kTestTimeout);
  ExpectValues(t, std::vector<double>(4, (200 * comm_->Size()) % 256), "uint8 sum");
}

TEST_F(MpiReduceEdgeTest, BoolMaxIsOrAndMinIsAndWhileSumIsRejected) {
  // Element 0 is true only on rank 0, element 1 on every rank, element 2 nowhere.
  const int rank = comm_->Rank();
  std::vector<double> values = {rank == 0 ? 1.0 : 0.0, 1.0, 0.0};
  at::Tensor any = Values(values, at::kBool), all = Values(values, at::kBool);
  WaitAll({comm_->AllReduce(any, {ReduceOp::kMax}), comm_->AllReduce(all, {ReduceOp::kMin})}, kTestTimeout);
  ExpectValues(any, {1, 1, 0}, "or");
  ExpectValues(all, {comm_->Size() == 1 ? 1.0 : 0.0, 1, 0}, "and");
  ExpectThrowsWith([&] { comm_->AllReduce(any, {ReduceOp::kSum}); }, {"sum over bool", "max (logical or)"});
}

TEST_F(MpiReduceEdgeTest, HalfPrecisionMaxPropagatesNan) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  at::Tensor t = at::tensor({comm_->Rank() == 1 ? nan : 1.0f, float(comm_->Rank())}).to(at::kBFloat16);
  comm_->AllReduce(t, {ReduceOp::kMax})->Wait(kTestTimeout);
  at::Tensor f = t.to(at::kFloat);
  EXPECT_TRUE(std::isnan(f[0].item<float>()));
  EXPECT_EQ(f[1].item<float>(), comm_->Size() - 1);
}

}  // namespace
}  // namespace llamarl
