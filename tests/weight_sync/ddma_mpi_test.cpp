// DDMA weight sync under mpirun (-np 2, 3 and 4): for every split of the world into trainers and
// generators (2 -> 2, 3 -> 1, 1 -> 2, ...) and the colocated placement, every generator shard equals
// the matching slice of the trainer's full parameters, bit for bit for f32 -> f32, and equal to a
// reference cast for f32 -> bf16, and for fp8 e4m3 equal to the slices of the kernel's quantisation of
// the full weights (bytes and per-row scales). The references are cut with at::chunk / narrow from the full
// parameters every rank builds from one seed (tests/weight_sync/weight_sync_test_util.h).
#include "core/communicator.h"
#include "tests/core/communicator_test_util.h"
#include "tests/weight_sync/weight_sync_test_util.h"
#include "kernels/fp8.h"
#include "weight_sync/baseline.h"
#include "weight_sync/weight_sync.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace llamarl {
namespace {

using testing::ExpectedFlatShard;
using testing::ExpectedTpShard;
using testing::FullParams;
using testing::kTestTimeout;
using testing::NearEqualRows;
using testing::SyncTestConfig;

enum class Source { kZeroFlat, kRowShard };

struct Case {
  Source source = Source::kZeroFlat;
  at::ScalarType dst_dtype = at::kFloat;
  int64_t bucket_bytes = 4096;  // small: many rounds, buckets split blocks and rows
  bool checksum = false;
  bool vocab_parallel = true;
  bool fp8 = false;  // e4m3 with scales (dst_dtype is then ignored: the shards are Byte)
};

class DdmaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    comm_ = CreateCommunicator(DefaultCommunicatorName());
    rank_ = comm_->Rank();
    size_ = comm_->Size();
    ASSERT_GE(size_, 2) << "run under mpirun -np 2 or more";
    specs_ = LlamaParamSpecs(config_);
    full_ = FullParams(specs_);
  }
  void TearDown() override { comm_->Barrier()->Wait(kTestTimeout); }

  ShardLayout SourceLayout(const Case& c, int ranks) const {
    return c.source == Source::kZeroFlat ? ZeroFlatLayout(specs_, ranks, at::kFloat)
                                         : RowShardLayout(specs_, ranks, at::kFloat);
  }

  std::vector<at::Tensor> SourceBuffers(const Case& c, int src_rank, int ranks) const {
    if (c.source == Source::kZeroFlat) return {ExpectedFlatShard(full_, src_rank, ranks)};
    std::vector<at::Tensor> out;
    for (const auto& t : full_) {
      at::Tensor rows = NearEqualRows(t, src_rank, ranks);
      if (rows.size(0) > 0) out.push_back(rows.contiguous());
    }
    return out;
  }

  // Pushes `version` with the case's layouts and checks every destination shard on this rank.
  void RunAndCheck(const Case& c, const TransferPlacement& placement, int64_t version) {
    const int num_src = int(placement.src_ranks.size()), tp = int(placement.dst_ranks.size());
    const auto encoding = c.fp8 ? TransferEncoding::kFp8E4m3 : TransferEncoding::kPlain;
    ShardLayout dst = TensorParallelLayout(config_, {tp, c.fp8 ? at::kByte : c.dst_dtype, c.vocab_parallel});
    auto plan = cache_.Get(SourceLayout(c, num_src), dst, encoding);
    const int my_src = LayoutRankOf(placement.src_ranks, rank_), my_dst = LayoutRankOf(placement.dst_ranks, rank_);
    std::unique_ptr<WeightReceiver> receiver;
    if (my_dst >= 0) receiver = std::make_unique<WeightReceiver>(plan, my_dst);
    std::vector<at::Tensor> src;
    if (my_src >= 0) src = SourceBuffers(c, my_src, num_src);
    TransferOptions options;
    options.bucket_bytes = c.bucket_bytes;
    options.checksum = c.checksum;
    options.timeout = kTestTimeout;
    EXPECT_EQ(PushWeights(*comm_, *plan, placement, version, src, receiver.get(), options), version);
    if (!receiver) return;
    EXPECT_EQ(receiver->StagedVersion(), version);
    if (c.fp8) return CheckFp8Shards(c, *receiver, tp);
    int applied = 0;
    receiver->ApplyTo([&](const std::string& name, const at::Tensor& shard) {
      const int64_t i = plan->dst().ParamIndex(name);
      at::Tensor expected = ExpectedTpShard(name, full_[size_t(i)], my_dst, tp, c.vocab_parallel).to(c.dst_dtype);
      EXPECT_EQ(shard.sizes(), expected.sizes()) << name;
      EXPECT_TRUE(at::equal(shard, expected)) << name << " on destination rank " << my_dst << " of " << tp;
      ++applied;
    });
    EXPECT_EQ(applied, int(specs_.size()));
    EXPECT_EQ(receiver->HeldVersion(), version);
  }

  // Every shard and its scales equal the slices of the full weights' reference quantisation (bytes,
  // scales, and so the dequantised values, bit for bit): rows that ZeRO shards cut got the scale of the
  // whole row, whichever source rank held its largest value.
  void CheckFp8Shards(const Case& c, WeightReceiver& receiver, int tp) {
    const int64_t version = receiver.StagedVersion();
    int applied = 0;
    receiver.ApplyFp8To([&](const std::string& name, const at::Tensor& shard, const at::Tensor& scales) {
      const at::Tensor& x = full_[size_t(receiver.plan().dst().ParamIndex(name))];
      const kernels::Fp8Tensor ref = testing::ReferenceFp8(x);
      const at::Tensor data = ExpectedTpShard(name, ref.data, receiver.dst_rank(), tp, c.vocab_parallel);
      const at::Tensor ref_scales = testing::ExpectedTpScales(name, x, ref.scales, receiver.dst_rank(), tp, c.vocab_parallel);
      ASSERT_EQ(shard.sizes(), data.sizes()) << name;
      EXPECT_TRUE(at::equal(shard, data)) << name << " on destination rank " << receiver.dst_rank() << " of " << tp;
      EXPECT_TRUE(at::equal(scales, ref_scales)) << name << " on destination rank " << receiver.dst_rank();
      const int64_t rows = x.dim() < 2 ? shard.numel() : shard.size(0);
      EXPECT_TRUE(at::equal(kernels::CastFromFp8E4m3(shard.reshape({rows, -1}), scales, at::kFloat),
                            kernels::CastFromFp8E4m3(data.reshape({rows, -1}), ref_scales, at::kFloat)))
          << name;
      ++applied;
    });
    EXPECT_EQ(applied, int(specs_.size()));
    EXPECT_EQ(receiver.HeldVersion(), version);
  }

  LlamaConfig config_ = SyncTestConfig();
  std::vector<ParamSpec> specs_;
  std::vector<at::Tensor> full_;
  PlanCache cache_;
  std::unique_ptr<Communicator> comm_;
  int rank_ = 0, size_ = 0;
};

TEST_F(DdmaTest, EverySplitPlacementBitExactFromZeroFlatShards) {
  for (int generators = 1; generators < size_; ++generators)
    RunAndCheck({Source::kZeroFlat, at::kFloat}, TransferPlacement::Split(size_, generators), generators);
}

TEST_F(DdmaTest, EverySplitPlacementBitExactFromRowShards) {
  for (int generators = 1; generators < size_; ++generators)
    RunAndCheck({Source::kRowShard, at::kFloat}, TransferPlacement::Split(size_, generators), 7);
}

TEST_F(DdmaTest, Bf16ConversionOnTheSenderMatchesAReferenceCast) {
  Case c{Source::kZeroFlat, at::kBFloat16};
  for (int generators = 1; generators < size_; ++generators)
    RunAndCheck(c, TransferPlacement::Split(size_, generators), 1);
}

TEST_F(DdmaTest, Fp8ShardsAndScalesEqualTheFullWeightsQuantisationInEveryPlacement) {
  Case c{Source::kZeroFlat, at::kFloat, /*bucket_bytes=*/1001};  // buckets end mid-row everywhere
  c.fp8 = true;
  for (int generators = 1; generators < size_; ++generators)
    RunAndCheck(c, TransferPlacement::Split(size_, generators), generators);
  c.source = Source::kRowShard;
  c.vocab_parallel = false;
  c.checksum = true;
  RunAndCheck(c, TransferPlacement::Split(size_, size_ / 2), 8);
  c.source = Source::kZeroFlat;
  RunAndCheck(c, TransferPlacement::Colocated(size_), 9);
}

TEST_F(DdmaTest, ChecksummedLargeBucketsAndReplicatedVocab) {
  Case c{Source::kZeroFlat, at::kBFloat16, int64_t(1) << 20, /*checksum=*/true, /*vocab_parallel=*/false};
  RunAndCheck(c, TransferPlacement::Split(size_, size_ / 2), 2);
  c.bucket_bytes = 2 * 2047;  // an odd element count: buckets end mid-row everywhere
  RunAndCheck(c, TransferPlacement::Split(size_, 1), 3);
}

TEST_F(DdmaTest, ColocatedPlacementMixesLocalCopiesAndMessages) {
  // Rank r is trainer shard r and TP rank r: its own bytes are copied in process, the rest is sent.
  RunAndCheck({Source::kZeroFlat, at::kBFloat16}, TransferPlacement::Colocated(size_), 4);
  // A reversed destination order: every rank but the middle one (odd sizes) sends all it holds away.
  TransferPlacement reversed = TransferPlacement::Colocated(size_);
  std::reverse(reversed.dst_ranks.begin(), reversed.dst_ranks.end());
  RunAndCheck({Source::kRowShard, at::kFloat}, reversed, 5);
}

TEST_F(DdmaTest, VersionsAdvanceAndOnlyTheNewestStagedPushIsApplied) {
  TransferPlacement placement = TransferPlacement::Split(size_, 1);
  auto plan = cache_.Get(ZeroFlatLayout(specs_, size_ - 1, at::kFloat), TensorParallelLayout(config_, {1}));
  EXPECT_EQ(cache_.Get(ZeroFlatLayout(specs_, size_ - 1, at::kFloat), TensorParallelLayout(config_, {1})), plan);
  const int my_src = LayoutRankOf(placement.src_ranks, rank_);
  std::unique_ptr<WeightReceiver> receiver;
  if (rank_ == 0) receiver = std::make_unique<WeightReceiver>(plan, 0);
  std::vector<at::Tensor> src;
  if (my_src >= 0) src = {ExpectedFlatShard(full_, my_src, size_ - 1)};
  TransferOptions options;
  options.timeout = kTestTimeout;
  for (int64_t version : {10, 11}) {
    // The trainer's step between pushes: version 11's weights are version 10's plus one.
    if (version == 11 && my_src >= 0) src[0].add_(1.0);
    PushWeights(*comm_, *plan, placement, version, src, receiver.get(), options);
  }
  if (!receiver) return;
  EXPECT_EQ(receiver->HeldVersion(), -1);
  EXPECT_EQ(receiver->StagedVersion(), 11);
  receiver->ApplyTo([&](const std::string& name, const at::Tensor& shard) {
    at::Tensor expected = (full_[size_t(plan->dst().ParamIndex(name))] + 1.0).to(at::kBFloat16);
    EXPECT_TRUE(at::equal(shard, expected)) << name;
  });
  EXPECT_EQ(receiver->HeldVersion(), 11);
  EXPECT_EQ(receiver->StagedVersion(), -1);
  int calls = 0;
  EXPECT_EQ(receiver->ApplyTo([&](const std::string&, const at::Tensor&) { ++calls; }), 11);
  EXPECT_EQ(calls, 0) << "nothing new was staged";
}

TEST_F(DdmaTest, KeptStagingIsReusedAcrossPushesAndResizedForAnotherPlan) {
  TransferOptions options;
  options.timeout = kTestTimeout;
  options.bucket_bytes = 3000;
  options.staging = std::make_shared<TransferStaging>();
  const int generators = size_ / 2;
  for (int num_src : {size_ - generators, size_ - 1}) {  // the second plan has other streams and sizes
    TransferPlacement placement = TransferPlacement::Split(size_, size_ - num_src);
    auto plan = cache_.Get(ZeroFlatLayout(specs_, num_src, at::kFloat),
                           TensorParallelLayout(config_, {size_ - num_src, at::kBFloat16}));
    const int my_src = LayoutRankOf(placement.src_ranks, rank_), my_dst = LayoutRankOf(placement.dst_ranks, rank_);
    std::vector<const void*> first_wire;
    for (double shift : {0.0, 3.0}) {
      TransferBuffers buffers;
      if (my_src >= 0) buffers.src = {ExpectedFlatShard(full_, my_src, num_src).add(shift)};
      if (my_dst >= 0) buffers.dst = AllocateBuffers(plan->dst(), my_dst);
      ExecuteTransfer(*comm_, *plan, placement, buffers, options);
      // The second push of a plan reuses the very buffers of the first (no new allocation).
      std::vector<const void*> wire;
      for (const auto& t : options.staging->wire[0]) wire.push_back(t.data_ptr());
      if (shift == 0.0) first_wire = wire;
      else EXPECT_EQ(wire, first_wire);
      if (my_dst < 0) continue;
      const auto& specs = plan->dst().Rank(my_dst).buffers;
      for (size_t i = 0; i < specs.size(); ++i) {
        const at::Tensor& full = full_[size_t(plan->dst().ParamIndex(specs[i].name))];
        at::Tensor expected = ExpectedTpShard(specs[i].name, full + shift, my_dst, size_ - num_src).to(at::kBFloat16);
        EXPECT_TRUE(at::equal(buffers.dst[i], expected)) << specs[i].name << " with " << num_src << " sources";
      }
    }
  }
}

TEST_F(DdmaTest, GatherBroadcastBaselineDeliversTheSameShards) {
  const int generators = size_ / 2;
  TransferPlacement placement = TransferPlacement::Split(size_, generators);
  auto plan = cache_.Get(ZeroFlatLayout(specs_, size_ - generators, at::kFloat),
                         TensorParallelLayout(config_, {generators, at::kBFloat16}));
  GatherBroadcastSync baseline(*comm_, plan, placement);
  const int my_src = LayoutRankOf(placement.src_ranks, rank_), my_dst = LayoutRankOf(placement.dst_ranks, rank_);
  TransferBuffers buffers;
  if (my_src >= 0) buffers.src = {ExpectedFlatShard(full_, my_src, size_ - generators)};
  if (my_dst >= 0) buffers.dst = AllocateBuffers(plan->dst(), my_dst);
  baseline.Run(buffers, kTestTimeout);
  if (my_dst < 0) return;
  const auto& specs = plan->dst().Rank(my_dst).buffers;
  for (size_t i = 0; i < specs.size(); ++i) {
    const int64_t p = plan->dst().ParamIndex(specs[i].name);
    at::Tensor expected = ExpectedTpShard(specs[i].name, full_[size_t(p)], my_dst, generators).to(at::kBFloat16);
    EXPECT_TRUE(at::equal(buffers.dst[i], expected)) << specs[i].name;
  }
}

}  // namespace
}  // namespace llamarl
