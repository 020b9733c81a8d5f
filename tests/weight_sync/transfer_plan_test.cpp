// Layouts, plans and their validation, the single-process (colocated, local backend) execution,
// versions and host offload. Layout geometry is checked against references cut with at::chunk /
// narrow from full parameters (tests/weight_sync/weight_sync_test_util.h).
#include "core/communicator.h"
#include "model/llama_config.h"
#include "tests/core/communicator_test_util.h"
#include "tests/weight_sync/weight_sync_test_util.h"
#include "weight_sync/weight_sync.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace llamarl {
namespace {

using testing::ExpectedFlatShard;
using testing::ExpectedTpShard;
using testing::ExpectThrowsWith;
using testing::FullParams;
using testing::SyncTestConfig;

at::Tensor RegionOf(const std::vector<at::Tensor>& buffers, const Region& g) {
  at::Tensor flat = buffers[size_t(g.buffer)].view(-1);
  return flat.as_strided({g.Rows(), g.Cols()}, {g.stride, 1}, g.offset);
}

at::Tensor ParamRect(const at::Tensor& full, const ParamSpec& p, const Region& g) {
  return full.reshape({p.Rows(), p.Cols()}).narrow(0, g.row_begin, g.Rows()).narrow(1, g.col_begin, g.Cols());
}

TEST(ShardLayoutTest, ParamSpecsComeFromTheMetaModuleAndCountEveryParameter) {
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  int64_t total = 0;
  for (const auto& p : specs) total += p.Numel();
  EXPECT_EQ(total, config.NumParameters());
  EXPECT_EQ(specs.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(specs.front().shape, (std::vector<int64_t>{250, 96}));
  EXPECT_EQ(specs.back().name, "lm_head.weight");
  // 405B is described without allocating anything.
  int64_t big = 0;
  for (const auto& p : LlamaParamSpecs(LlamaPresetConfig("405b"))) big += p.Numel();
  EXPECT_EQ(big, LlamaPresetConfig("405b").NumParameters());
}

TEST(ShardLayoutTest, ZeroFlatRegionsAreTheFlatShardsOfTheParameters) {
  const auto specs = LlamaParamSpecs(SyncTestConfig());
  const auto full = FullParams(specs);
  for (int ranks : {1, 3, 7}) {
    ShardLayout layout = ZeroFlatLayout(specs, ranks, at::kFloat);
    int64_t covered = 0;
    for (int r = 0; r < ranks; ++r) {
      std::vector<at::Tensor> shard{ExpectedFlatShard(full, r, ranks)};
      ASSERT_EQ(layout.RankNumel(r), shard[0].numel());
      for (const Region& g : layout.Rank(r).regions) {
        EXPECT_TRUE(at::equal(RegionOf(shard, g), ParamRect(full[size_t(g.param)], specs[size_t(g.param)], g)))
            << specs[size_t(g.param)].name << " on rank " << r << " of " << ranks;
        covered += g.Numel();
      }
    }
    EXPECT_EQ(covered, SyncTestConfig().NumParameters());
  }
}

TEST(ShardLayoutTest, TensorParallelShardsFollowTheMegatronSplits) {
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  const auto full = FullParams(specs);
  for (int tp : {1, 2, 3, 4}) {
    ShardLayout layout = TensorParallelLayout(config, {tp, at::kFloat});
    for (int r = 0; r < tp; ++r) {
      const RankShards& shards = layout.Rank(r);
      ASSERT_EQ(shards.buffers.size(), specs.size());
      for (size_t i = 0; i < shards.buffers.size(); ++i) {
        const Region& g = shards.regions[i];
        at::Tensor expected = ExpectedTpShard(shards.buffers[i].name, full[size_t(g.param)], r, tp);
        EXPECT_EQ(shards.buffers[i].shape, expected.sizes().vec()) << shards.buffers[i].name;
        std::vector<at::Tensor> buffers(shards.buffers.size());
        buffers[i] = expected.clone();  // own storage: RegionOf addresses it from element 0
        EXPECT_TRUE(at::equal(RegionOf(buffers, g), ParamRect(full[size_t(g.param)], specs[size_t(g.param)], g)));
      }
    }
  }
}

TEST(ShardLayoutTest, TensorParallelRejectsDegreesThatSplitAKvHead) {
  LlamaConfig config = SyncTestConfig();
  ExpectThrowsWith([&] { TensorParallelLayout(config, {5}); },
                   {"generator.tp_size (5) must divide num_attention_heads (24)"});
  config.num_key_value_heads = 6;
  config.num_attention_heads = 24;
  ExpectThrowsWith([&] { TensorParallelLayout(config, {4}); },
                   {"generator.tp_size (4) must divide num_key_value_heads (6)"});
  ExpectThrowsWith([&] { TensorParallelLayout(config, {0}); }, {"tp_size must be >= 1, got 0"});
}

TEST(TransferPlanTest, RowParallelSplitsAreStridedBlocksNotPerRowEntries) {
  const LlamaConfig config = SyncTestConfig();
  auto plan = TransferPlan::Build(ZeroFlatLayout(LlamaParamSpecs(config), 2, at::kFloat),
                                  TensorParallelLayout(config, {2, at::kBFloat16}));
  size_t blocks = 0;
  for (const auto& pair : plan->pairs()) blocks += pair.blocks.size();
  // Each parameter meets at most 3 rectangles per flat shard; 2 shards x 2 TP ranks.
  EXPECT_LE(blocks, 4 * 3 * plan->src().params().size());
  // Replicated norms reach both TP ranks: the destination holds more than the model.
  int64_t norms = 0;
  for (const auto& p : plan->src().params())
    if (testing::EndsWith(p.name, "norm.weight")) norms += p.Numel();
  EXPECT_EQ(plan->DstNumel(), config.NumParameters() + norms);
  EXPECT_EQ(plan->DstBytes(), 2 * plan->DstNumel());
}

TEST(TransferPlanTest, MismatchedLayoutsAreRejectedBeforeAnyByteMoves) {
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  LlamaConfig wider = config;
  wider.intermediate_size = 288;
  ExpectThrowsWith([&] { TransferPlan::Build(ZeroFlatLayout(specs, 2, at::kFloat), TensorParallelLayout(wider, {2})); },
                   {"model.layers.0.mlp.gate_proj.weight", "[192, 96]", "[288, 96]", "same model config"});
  ExpectThrowsWith([&] { TransferPlan::Build(ZeroFlatLayout(specs, 2, at::kInt), TensorParallelLayout(config, {2})); },
                   {"cannot convert Int to BFloat16"});
  // A hand-made source that misses the last row of the final norm.
  ShardLayout gap("gappy", specs, 1, at::kFloat);
  for (size_t i = 0; i < specs.size(); ++i) {
    const int64_t rows = specs[i].name == "model.norm.weight" ? specs[i].Rows() - 1 : specs[i].Rows();
    int64_t b = gap.AddBuffer(0, {specs[i].name, {rows, specs[i].Cols()}});
    gap.AddRegion(0, {int64_t(i), 0, rows, 0, specs[i].Cols(), b, 0, specs[i].Cols()});
  }
  ExpectThrowsWith([&] { TransferPlan::Build(gap, TensorParallelLayout(config, {1})); },
                   {"covers 95 of the 96 elements of 'model.norm.weight'"});
  // Two source ranks both holding the whole model.
  ShardLayout twice("replicated", specs, 2, at::kFloat);
  for (int r = 0; r < 2; ++r)
    for (size_t i = 0; i < specs.size(); ++i) {
      int64_t b = twice.AddBuffer(r, {specs[i].name, specs[i].shape});
      twice.AddRegion(r, {int64_t(i), 0, specs[i].Rows(), 0, specs[i].Cols(), b, 0, specs[i].Cols()});
    }
  ExpectThrowsWith([&] { TransferPlan::Build(twice, TensorParallelLayout(config, {1})); },
                   {"holds elements of 'model.embed_tokens.weight' twice (ranks 0 and 1)"});
  ExpectThrowsWith([&] { gap.AddRegion(0, {0, 0, 251, 0, 96, 0, 0, 96}); },
                   {"outside 'model.embed_tokens.weight' viewed as [250, 96]"});
}

TEST(TransferPlanTest, CacheBuildsOncePerLayoutPair) {
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  PlanCache cache;
  auto a = cache.Get(ZeroFlatLayout(specs, 2, at::kFloat), TensorParallelLayout(config, {2}));
  auto b = cache.Get(ZeroFlatLayout(specs, 2, at::kFloat), TensorParallelLayout(config, {2}));
  auto c = cache.Get(ZeroFlatLayout(specs, 3, at::kFloat), TensorParallelLayout(config, {2}));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a->Id(), c->Id());
  EXPECT_EQ(cache.size(), 2u);
}

TEST(LocalTransferTest, SingleRankColocatedPushCastsToBf16AndStampsTheVersion) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = SyncTestConfig();
  const auto specs = LlamaParamSpecs(config);
  const auto full = FullParams(specs);
  auto plan = TransferPlan::Build(ZeroFlatLayout(specs, 1, at::kFloat), TensorParallelLayout(config, {1}));
  WeightReceiver receiver(plan, 0);
  EXPECT_EQ(receiver.HeldVersion(), -1);
  EXPECT_EQ(PushWeights(*comm, *plan, TransferPlacement::Colocated(1), 3, {ExpectedFlatShard(full, 0, 1)}, &receiver),
            3);
  EXPECT_EQ(receiver.HeldVersion(), -1) << "a push only stages; the generator applies between decode steps";
  std::vector<std::string> names;
  receiver.ApplyTo([&](const std::string& name, const at::Tensor& shard) {
    names.push_back(name);
    EXPECT_TRUE(at::equal(shard, full[names.size() - 1].to(at::kBFloat16))) << name;
  });
  EXPECT_EQ(names.size(), specs.size());
  EXPECT_EQ(receiver.HeldVersion(), 3);
}

TEST(LocalTransferTest, BadBuffersAndPlacementsNameTheValue) {
  auto comm = CreateCommunicator("local");
  const LlamaConfig config = SyncTestConfig();
  auto plan = TransferPlan::Build(ZeroFlatLayout(LlamaParamSpecs(config), 1, at::kFloat),
                                  TensorParallelLayout(config, {1}));
  TransferBuffers buffers{{at::zeros({10}, at::kFloat)}, AllocateBuffers(plan->dst(), 0), {}};
  ExpectThrowsWith([&] { ExecuteTransfer(*comm, *plan, TransferPlacement::Colocated(1), buffers); },
                   {"source buffer 0 ('flat_shard')", "Float tensor of", "got Float with 10 elements"});
  ExpectThrowsWith([&] { ExecuteTransfer(*comm, *plan, TransferPlacement{{0, 1}, {0}}, buffers); },
                   {"2 source ranks given but the source layout (zero_flat) has 1"});
  ExpectThrowsWith([&] { TransferPlacement::Split(4, 4); }, {"num_generators (4) must lie in [1, world size 4)"});
  TransferOptions options;
  options.bucket_bytes = 1;
  buffers.src = {at::zeros({config.NumParameters()}, at::kFloat)};
  ExpectThrowsWith([&] { ExecuteTransfer(*comm, *plan, TransferPlacement::Colocated(1), buffers, options); },
                   {"bucket_bytes (1) must hold at least one element of BFloat16 (2 bytes)"});
}

}  // namespace
}  // namespace llamarl
