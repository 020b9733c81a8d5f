// The byte-level BPE model: a vocabulary of byte-level strings and ranked merges. LibTorch-free.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace llamarl::tokenizer_internal {

struct BpeOptions {
  // Llama 3's tokenizer.json sets it: a word that is itself in the vocabulary is one token, whatever
  // the merges would have produced.
  bool ignore_merges = false;
  // Id emitted for a character missing from the vocabulary (dropped when unset); fuse_unk joins a
  // run of such characters into one unk.
  std::optional<int64_t> unk_id;
  bool fuse_unk = false;
  // Where errors say the vocabulary came from ("tokenizer.json: model", "vocab.bpe").
  std::string source = "BPE";
};

class BpeModel {
 public:
  // `merges` are (left, right) pairs in rank order (rank = index). Every merge's parts and their
  // concatenation must be in `vocab`; errors name the merge's line and the missing string.
  BpeModel(std::unordered_map<std::string, int64_t> vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options);

  // Appends the ids of one pre-tokenized word, given in the byte-level alphabet. Characters that are
  // not in the vocabulary become unk_id, or are dropped without one, as in HF's BPE (with the
  // byte-level alphabet in the vocabulary this cannot happen).
  // Thread-safe: the word cache is guarded by a mutex; everything else is immutable after construction.
  void EncodeWord(std::string_view word, std::vector<int64_t>* ids) const;

  const std::unordered_map<std::string, int64_t>& vocab() const { return vocab_; }
  // The string of each id (index = id); "" for ids the vocabulary does not use.
  const std::vector<std::string>& id_to_token() const { return id_to_token_; }

 private:
  struct Merge {
    int32_t rank;
    int64_t merged_id;
  };
  static uint64_t PairKey(int64_t left, int64_t right) {
    return (static_cast<uint64_t>(left) << 32) | static_cast<uint64_t>(right);
  }
  std::vector<int64_t> MergeWord(std::string_view word) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  BpeOptions options_;

  // Cache of word -> ids. Bounded: once full it stops growing (HF does the same), which keeps memory
  // flat on adversarial input while common words stay fast.
  // How far ids may run past the number of vocabulary entries.
  static constexpr int64_t kMaxIdGap = int64_t{1} << 20;
  static constexpr size_t kMaxCacheEntries = 1 << 16;
  static constexpr size_t kMaxCachedWordBytes = 256;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int64_t>> cache_;
};

}  // namespace llamarl::tokenizer_internal
