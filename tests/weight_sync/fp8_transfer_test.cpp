// fp8 e4m3 weight sync in one process: which plans are accepted, which rows the source ranks must
// agree on (the rows ZeRO shards cut, derived here from the flat split independently of the plan
// code), and a colocated push whose shards and scales equal the kernel's quantisation of the full
// weights (tests/weight_sync/weight_sync_test_util.h: ReferenceFp8).
#include "core/communicator.h"
#include "kernels/fp8.h"
#include "model/llama_config.h"
#include "tests/core/communicator_test_util.h"
#include "tests/weight_sync/weight_sync_test_util.h"
#include "weight_sync/baseline.h"
#include "weight_sync/fp8_scales.h"
#include "weight_sync/weight_sync.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <limits>
#include <set>
#include <tuple>

namespace llamarl {
namespace {

using testing::ExpectedFlatShard;
using testing::ExpectThrowsWith;
using testing::FullParams;
using testing::ReferenceFp8;
using testing::SyncTestConfig;

constexpr auto kFp8 = TransferEncoding::kFp8E4m3;

TEST(Fp8PlanTest, UnsupportedCombinationsAreRejectedNamingTheValue) {
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  ExpectThrowsWith([&] { TransferPlan::Build(ZeroFlatLayout(specs, 2, at::kFloat), TensorParallelLayout(config, {2}), kFp8); },
                   {"destination layout's dtype must be Byte, got BFloat16", "at::kByte"});
  ExpectThrowsWith(
      [&] { TransferPlan::Build(ZeroFlatLayout(specs, 2, at::kInt), TensorParallelLayout(config, {2, at::kByte}), kFp8); },
      {"fp8 e4m3 needs Float, BFloat16 or Half source weights, got Int"});
  // A flat destination buffer holds many parameters: one scale vector per buffer cannot describe it.
  ExpectThrowsWith([&] { TransferPlan::Build(ZeroFlatLayout(specs, 1, at::kFloat), ZeroFlatLayout(specs, 2, at::kByte), kFp8); },
                   {"buffer 'flat_shard' of rank 0 of layout zero_flat holds", "one parameter region per buffer"});
  // Without fp8, a Float -> Byte plan is no cast at all.
  ExpectThrowsWith([&] { TransferPlan::Build(ZeroFlatLayout(specs, 1, at::kFloat), TensorParallelLayout(config, {1, at::kByte})); },
                   {"cannot convert Float to Byte", "kFp8E4m3"});
}

TEST(Fp8PlanTest, SourceRanksShareExactlyTheRowsTheirFlatShardsCut) {
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  const int64_t total = config.NumParameters();
  for (int ranks : {2, 3, 5}) {
    auto plan = TransferPlan::Build(ZeroFlatLayout(specs, ranks, at::kFloat), TensorParallelLayout(config, {2, at::kByte}), kFp8);
    // Expected: for each boundary between shard r - 1 and r, the row (or 1-D parameter) it falls inside.
    std::set<std::tuple<int, int, int64_t, int64_t>> expected;
    for (int r = 1; r < ranks; ++r) {
      const int64_t boundary = r * (total / ranks) + std::min<int64_t>(r, total % ranks);
      int64_t start = 0;
      for (size_t p = 0; p < specs.size(); start += specs[p].Numel(), ++p) {
        const int64_t local = boundary - start;
        if (local <= 0 || local >= specs[p].Numel()) continue;
        const int64_t cols = specs[p].shape.size() < 2 ? specs[p].Numel() : specs[p].Cols();
        if (local % cols != 0) expected.insert({r - 1, r, int64_t(p), local / cols});
      }
    }
    std::set<std::tuple<int, int, int64_t, int64_t>> got;
    for (const AmaxShare& share : plan->amax_shares())
      for (const auto& [param, group] : share.groups) got.insert({share.src_rank_a, share.src_rank_b, param, group});
    EXPECT_EQ(got, expected) << ranks << " ranks";
    EXPECT_FALSE(got.empty());
    // Each destination scale is carried by exactly one block.
    for (int d = 0; d < 2; ++d) {
      int64_t carried = 0, needed = 0;
      for (const auto& pair : plan->pairs()) carried += pair.dst_rank == d ? pair.num_scales : 0;
      for (const auto& s : AllocateScaleBuffers(*plan, d)) needed += s.numel();
      EXPECT_EQ(carried, needed) << "destination rank " << d;
    }
  }
  // Row shards never cut a row; 1-D parameters still need their holders to agree.
  auto rows = TransferPlan::Build(RowShardLayout(specs, 2, at::kFloat), TensorParallelLayout(config, {1, at::kByte}), kFp8);
  for (const AmaxShare& share : rows->amax_shares())
    for (const auto& [param, group] : share.groups) EXPECT_EQ(specs[size_t(param)].shape.size(), 1u) << specs[size_t(param)].name;
}

TEST(Fp8LocalTransferTest, ColocatedPushEqualsTheQuantisationOfTheFullWeights) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  const auto full = FullParams(specs);
  auto plan = TransferPlan::Build(ZeroFlatLayout(specs, 1, at::kFloat), TensorParallelLayout(config, {1, at::kByte}), kFp8);
  WeightReceiver receiver(plan, 0);
  EXPECT_EQ(PushWeights(*comm, *plan, TransferPlacement::Colocated(1), 4, {ExpectedFlatShard(full, 0, 1)}, &receiver), 4);
  ExpectThrowsWith([&] { receiver.ApplyTo([](const std::string&, const at::Tensor&) {}); }, {"fp8_e4m3", "ApplyFp8To"});
  size_t applied = 0;
  receiver.ApplyFp8To([&](const std::string& name, const at::Tensor& shard, const at::Tensor& scales) {
    const at::Tensor& x = full[applied++];
    kernels::Fp8Tensor ref = ReferenceFp8(x);
    EXPECT_TRUE(at::equal(shard, ref.data)) << name;
    EXPECT_TRUE(at::equal(scales, ref.scales)) << name;
    // And the bytes are a faithful e4m3 code of the weights: within half an e4m3 step of each value.
    at::Tensor deq = kernels::CastFromFp8E4m3(shard.reshape({x.size(0), -1}), scales, at::kFloat).view(x.sizes());
    at::Tensor row_scale = x.dim() < 2 ? scales : scales.view({-1, 1});
    at::Tensor bound = at::maximum(x.abs() * (1.0 / 16), row_scale * (1.0 / 1024)) * 1.001;  // + float rounding
    EXPECT_TRUE((deq - x).abs().le(bound).all().item<bool>()) << name;
  });
  EXPECT_EQ(applied, specs.size());
  EXPECT_EQ(receiver.HeldVersion(), 4);
}

TEST(Fp8LocalTransferTest, BadScaleBuffersNonFiniteWeightsAndPlainOnlyPathsAreErrors) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  auto plan = TransferPlan::Build(ZeroFlatLayout(specs, 1, at::kFloat), TensorParallelLayout(config, {1, at::kByte}), kFp8);
  const auto placement = TransferPlacement::Colocated(1);
  TransferBuffers buffers{{ExpectedFlatShard(FullParams(specs), 0, 1)}, AllocateBuffers(plan->dst(), 0), {}};
  ExpectThrowsWith([&] { ExecuteTransfer(*comm, *plan, placement, buffers); },
                   {"expects " + std::to_string(specs.size()) + " scale buffers (one per buffer), got 0"});
  buffers.dst_scales = AllocateScaleBuffers(*plan, 0);
  buffers.dst_scales[0] = at::zeros({3}, at::kFloat);
  ExpectThrowsWith([&] { ExecuteTransfer(*comm, *plan, placement, buffers); },
                   {"scale buffer 0 ('model.embed_tokens.weight')", "float32 [250] tensor, got Float [3]"});
  buffers.dst_scales = AllocateScaleBuffers(*plan, 0);
  buffers.src[0].narrow(0, specs[0].Numel() + 5, 1).fill_(std::numeric_limits<float>::infinity());  // in specs[1]
  ExpectThrowsWith([&] { ExecuteTransfer(*comm, *plan, placement, buffers); },
                   {"parameter '" + specs[1].name + "' holds non-finite values on source rank 0"});
  auto plain = TransferPlan::Build(ZeroFlatLayout(specs, 1, at::kFloat), TensorParallelLayout(config, {1}));
  ExpectThrowsWith([&] { AllocateScaleBuffers(*plain, 0); }, {"the plan's encoding is plain"});
  ExpectThrowsWith([&] { WeightReceiver(plain, 0).ApplyFp8To({}); }, {"has no scales; use ApplyTo"});
  ExpectThrowsWith([&] { GatherBroadcastSync(*comm, plan, placement); }, {"the plan is fp8_e4m3", "kPlain"});
}

}  // namespace
}  // namespace llamarl
