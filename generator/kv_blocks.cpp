#include "generator/kv_blocks.h"

#include "core/check.h"

#include <algorithm>
#include <map>

namespace llamarl {

KvBlockPool::KvBlockPool(int64_t num_blocks, int64_t block_size) : block_size_(block_size) {
  LLAMARL_CHECK(num_blocks >= 1 && block_size >= 1, "KV cache: need at least one block of at least one token, got ",
                num_blocks, " blocks of ", block_size, " tokens");
  ref_counts_.assign(size_t(num_blocks), 0);
  // Block 0 on top of the stack: a fresh pool hands out blocks in increasing order.
  for (int64_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

int64_t KvBlockPool::GroupBlocks(int64_t prompt_len, int64_t max_length, int64_t num_samples) const {
  const int64_t prompt = BlocksFor(prompt_len);
  // Samples that never write (max_length == prompt_len) copy nothing.
  const int64_t copies = prompt_len % block_size_ != 0 && max_length > prompt_len ? num_samples - 1 : 0;
  return prompt + num_samples * (BlocksFor(max_length) - prompt) + copies;
}

int64_t KvBlockPool::Available(const std::vector<const BlockTable*>& running) const {
  int64_t claimed = 0;
  std::map<int64_t, int64_t> writers;  // shared partial last block -> tables that will write into it
  for (const BlockTable* t : running) {
    claimed += BlocksFor(t->max_length) - int64_t(t->blocks.size());
    if (t->length % block_size_ != 0 && t->length < t->max_length && RefCount(t->blocks.back()) > 1) {
      ++writers[t->blocks.back()];
    }
  }
  // Every writer but the last holder copies the block.
  for (const auto& [block, n] : writers) claimed += n == RefCount(block) ? n - 1 : n;
  return int64_t(free_.size()) - claimed;
}

int64_t KvBlockPool::Take() {
  LLAMARL_ASSERT(!free_.empty(), "KV cache: no free block; admission must reserve what sequences grow into");
  const int64_t b = free_.back();
  free_.pop_back();
  ref_counts_[size_t(b)] = 1;
  peak_used_ = std::max(peak_used_, NumUsed());
  return b;
}

std::vector<BlockTable> KvBlockPool::AllocateShared(int64_t prompt_len, int64_t max_length, int64_t num_samples) {
  LLAMARL_ASSERT(prompt_len >= 1 && prompt_len <= max_length && num_samples >= 1, "prompt ", prompt_len,
                 ", max_length ", max_length, ", samples ", num_samples);
  BlockTable shared;
  shared.length = prompt_len;
  shared.max_length = max_length;
  for (int64_t i = 0; i < BlocksFor(prompt_len); ++i) {
    shared.blocks.push_back(Take());
    ref_counts_[size_t(shared.blocks.back())] = num_samples;
  }
  return std::vector<BlockTable>(size_t(num_samples), shared);
}

int64_t KvBlockPool::Append(BlockTable& t, std::vector<std::pair<int64_t, int64_t>>& copies) {
  const int64_t p = t.length;
  LLAMARL_ASSERT(p < t.max_length, "KV cache: position ", p, " beyond the table's ", t.max_length);
  if (p % block_size_ == 0) {
    t.blocks.push_back(Take());
  } else if (RefCount(t.blocks.back()) > 1) {
    const int64_t shared = t.blocks.back();
    --ref_counts_[size_t(shared)];
    t.blocks.back() = Take();
    copies.emplace_back(shared, t.blocks.back());
  }
  ++t.length;
  return Slot(t, p);
}

void KvBlockPool::Free(BlockTable& t) {
  for (int64_t b : t.blocks) {
    LLAMARL_ASSERT(ref_counts_[size_t(b)] > 0, "KV cache: block ", b, " freed more often than held");
    if (--ref_counts_[size_t(b)] == 0) free_.push_back(b);
  }
  t.blocks.clear();
  t.length = 0;
}

}  // namespace llamarl
