// Block accounting of the paged KV cache: which fixed-size blocks each sequence's positions live in,
// which blocks are free, and how many blocks the running sequences may still claim. The tensors
// themselves are in KvCache (kv_cache.h); this class owns no tensor and touches no device.
//
// A sequence's positions [0, length) live in blocks[p / block_size] at offset p % block_size. The n
// samples of a GRPO group start from one prefilled prompt: they share its blocks (reference counts).
// Writes only ever go to position `length`, so a full shared block is never written again; the
// prompt's last, partial block is copied on the first write of a sample that still shares it
// (copy-on-write), except by its last holder, which writes in place.
//
// Admission never over-commits: a group is admitted only if the blocks it may ever need fit in the
// free blocks that the running sequences may not still claim (Available), so a running sequence
// never finds the cache full and nothing has to be preempted. A group of n samples with a prompt of
// P positions, each holding at most M positions (prompt + max_new_tokens - 1), block size B, needs at
// most  ceil(P / B) + n * (ceil(M / B) - ceil(P / B)) + (P % B != 0 && M > P ? n - 1 : 0)  blocks.
//
// Thread safety: none (the engine's thread).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace llamarl {

struct BlockTable {
  std::vector<int64_t> blocks;  // block ids, one per block_size positions
  int64_t length = 0;           // positions written
  int64_t max_length = 0;       // positions it may ever hold (prompt + max_new_tokens - 1)
};

class KvBlockPool {
 public:
  KvBlockPool(int64_t num_blocks, int64_t block_size);

  int64_t block_size() const { return block_size_; }
  int64_t num_blocks() const { return int64_t(ref_counts_.size()); }
  int64_t NumUsed() const { return num_blocks() - int64_t(free_.size()); }
  int64_t PeakUsed() const { return peak_used_; }
  void ResetPeak() { peak_used_ = NumUsed(); }
  int64_t RefCount(int64_t block) const { return ref_counts_[size_t(block)]; }

  // The most blocks a group may ever hold (the formula above).
  int64_t GroupBlocks(int64_t prompt_len, int64_t max_length, int64_t num_samples) const;
  // Free blocks minus what `running` may still claim (their growth and pending copies).
  int64_t Available(const std::vector<const BlockTable*>& running) const;

  // `num_samples` tables sharing fresh blocks for positions [0, prompt_len) (length = prompt_len).
  // The caller checked GroupBlocks against Available.
  std::vector<BlockTable> AllocateShared(int64_t prompt_len, int64_t max_length, int64_t num_samples);
  // Makes position t.length writable and returns its cache slot (block * block_size + offset),
  // advancing t.length: appends a fresh block at a block boundary, or replaces a shared last block by
  // a copy, recorded in `copies` as (from, to) for the caller to copy before writing.
  int64_t Append(BlockTable& t, std::vector<std::pair<int64_t, int64_t>>& copies);
  // Drops the table's references; blocks nobody holds return to the free list.
  void Free(BlockTable& t);

  // Cache slot of position `p` of `t` (p < t.length).
  int64_t Slot(const BlockTable& t, int64_t p) const {
    return t.blocks[size_t(p / block_size_)] * block_size_ + p % block_size_;
  }

 private:
  int64_t Take();
  int64_t BlocksFor(int64_t positions) const { return (positions + block_size_ - 1) / block_size_; }

  int64_t block_size_;
  std::vector<int64_t> ref_counts_;
  std::vector<int64_t> free_;  // a stack: the most recently freed block is reused first
  int64_t peak_used_ = 0;
};

}  // namespace llamarl
