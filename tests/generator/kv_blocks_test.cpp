// The paged KV cache's block accounting (generator/kv_blocks.h) on hand-worked cases: a GRPO group's
// prompt blocks shared and counted once, copy-on-write of the partial last block by every writer but
// the last holder, the worst case of GroupBlocks reached exactly, Available never promising a block
// twice, everything freed at the end; and the budget arithmetic of generator/kv_budget.h.
#include "generator/kv_blocks.h"

#include "generator/kv_budget.h"
#include "model/llama_config.h"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace llamarl {
namespace {

using Copies = std::vector<std::pair<int64_t, int64_t>>;

std::vector<const BlockTable*> Pointers(const std::vector<BlockTable>& tables) {
  std::vector<const BlockTable*> out;
  for (const BlockTable& t : tables) out.push_back(&t);
  return out;
}

TEST(KvBlocksTest, GroupSharesItsPromptAndCopiesThePartialBlockOnWrite) {
  // 10 blocks of 4 tokens; a prompt of 6 tokens (one full block, one partial), 3 samples of up to
  // 5 new tokens: each holds at most 6 + 5 - 1 = 10 positions (3 blocks).
  KvBlockPool pool(10, 4);
  // ceil(6/4) + 3 * (ceil(10/4) - ceil(6/4)) + (3 - 1) copies = 2 + 3 + 2.
  EXPECT_EQ(pool.GroupBlocks(6, 10, 3), 7);
  std::vector<BlockTable> tables = pool.AllocateShared(6, 10, 3);
  EXPECT_EQ(pool.NumUsed(), 2) << "shared blocks count once";
  EXPECT_EQ(tables[0].blocks, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(tables[2].blocks, tables[0].blocks);
  EXPECT_EQ(pool.RefCount(0), 3);
  EXPECT_EQ(pool.RefCount(1), 3);
  EXPECT_EQ(pool.Available(Pointers(tables)), 10 - 7);

  // Position 6 lies in the shared partial block 1: the first two writers copy it, the last holder
  // writes in place.
  Copies copies;
  EXPECT_EQ(pool.Append(tables[0], copies), 2 * 4 + 2);
  EXPECT_EQ(pool.Append(tables[1], copies), 3 * 4 + 2);
  EXPECT_EQ(pool.Append(tables[2], copies), 1 * 4 + 2);
  EXPECT_EQ(copies, (Copies{{1, 2}, {1, 3}}));
  EXPECT_EQ(tables[0].blocks, (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(tables[2].blocks, (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(pool.RefCount(0), 3);
  EXPECT_EQ(pool.RefCount(1), 1);
  EXPECT_EQ(pool.NumUsed(), 4);
  EXPECT_EQ(pool.Available(Pointers(tables)), 3) << "the group still claims one block per sample";

  // Up to the longest: positions 7 (same block), 8 and 9 (a fresh block each sample).
  copies.clear();
  for (BlockTable& t : tables) {
    while (t.length < t.max_length) pool.Append(t, copies);
  }
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(pool.NumUsed(), 7) << "the worst case of GroupBlocks is reached exactly";
  EXPECT_EQ(pool.PeakUsed(), 7);
  EXPECT_EQ(pool.Slot(tables[0], 9), tables[0].blocks[2] * 4 + 1);
  EXPECT_EQ(pool.Available(Pointers(tables)), 3);

  for (BlockTable& t : tables) pool.Free(t);
  EXPECT_EQ(pool.NumUsed(), 0);
  for (int64_t b = 0; b < 10; ++b) EXPECT_EQ(pool.RefCount(b), 0) << "block " << b;
  EXPECT_EQ(pool.Available({}), 10);
  EXPECT_EQ(pool.PeakUsed(), 7);
  pool.ResetPeak();
  EXPECT_EQ(pool.PeakUsed(), 0);
}

TEST(KvBlocksTest, AFullPromptBlockIsNeverCopied) {
  // A prompt of 8 tokens fills two blocks: position 8 opens a fresh block per sample.
  KvBlockPool pool(6, 4);
  EXPECT_EQ(pool.GroupBlocks(8, 9, 2), 2 + 2 * (3 - 2));
  std::vector<BlockTable> tables = pool.AllocateShared(8, 9, 2);
  Copies copies;
  EXPECT_EQ(pool.Append(tables[0], copies), 2 * 4);
  EXPECT_EQ(pool.Append(tables[1], copies), 3 * 4);
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(pool.RefCount(1), 2);
  EXPECT_EQ(pool.NumUsed(), 4);
  for (BlockTable& t : tables) pool.Free(t);
  EXPECT_EQ(pool.NumUsed(), 0);
}

TEST(KvBlocksTest, ASampleThatLeavesBeforeWritingLetsTheLastHolderWriteInPlace) {
  KvBlockPool pool(8, 4);
  std::vector<BlockTable> tables = pool.AllocateShared(6, 9, 2);
  EXPECT_EQ(pool.Available(Pointers(tables)), 8 - pool.GroupBlocks(6, 9, 2));
  pool.Free(tables[0]);  // finished on its first token: it never wrote
  EXPECT_EQ(pool.RefCount(1), 1);
  EXPECT_EQ(pool.Available({&tables[1]}), 8 - 2 - 1) << "no copy is pending any more";
  Copies copies;
  EXPECT_EQ(pool.Append(tables[1], copies), 1 * 4 + 2);
  EXPECT_TRUE(copies.empty());
  pool.Free(tables[1]);
  EXPECT_EQ(pool.NumUsed(), 0);
}

TEST(KvBlocksTest, BudgetIsWholeBlocksOfEveryLayersKeysAndValues) {
  TinyLlamaOptions o;  // hidden 64 over 4 heads (head_dim 16), 2 kv heads
  o.num_layers = 3;
  const LlamaConfig config = TinyLlamaConfig(o);
  // 2 (k and v) * 2 kv heads * 16 * 2 bytes (bf16); tp 2 halves the kv heads.
  EXPECT_EQ(KvCacheBytesPerTokenPerLayer(config, 1, 2), 128);
  EXPECT_EQ(KvCacheBytesPerTokenPerLayer(config, 2, 2), 64);
  KvCacheConfig kv;
  kv.block_size = 16;
  kv.bytes = 10000;  // blocks of 128 * 3 layers * 16 tokens = 6144 bytes: one fits
  KvCacheSize size = SizeKvCache(config, kv, {1, 2, 0, 0});
  EXPECT_EQ(size.bytes_per_block, 6144);
  EXPECT_EQ(size.num_blocks, 1);
  EXPECT_EQ(size.budget_bytes, 6144);
  kv.bytes = 0;
  kv.fraction = 0.5;  // half of 100,000 bytes left: 8 blocks
  EXPECT_EQ(SizeKvCache(config, kv, {1, 2, 100000, 0}).num_blocks, 8);
  kv.fraction = 0;  // the default: 100 tokens round up to 7 blocks
  EXPECT_EQ(SizeKvCache(config, kv, {1, 2, 0, 100}).num_blocks, 7);
  kv.bytes = 6000;
  try {
    SizeKvCache(config, kv, {1, 2, 0, 0});
    ADD_FAILURE() << "a budget below one block was accepted";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("generator.kv_cache_bytes (6000), holds no block of 16 tokens (6144 bytes "
                                         "over 3 layers); raise generator.kv_cache_bytes to at least 6144"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace llamarl
