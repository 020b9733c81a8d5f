#include "model/tokenizer_bpe.h"

#include "core/check.h"
#include "model/tokenizer_unicode.h"

#include <queue>

namespace llamarl::tokenizer_internal {
namespace {

// A symbol of the word being merged, in a doubly linked list over a vector; a symbol merged into its
// left neighbour keeps length 0.
struct Symbol {
  int64_t id;
  int prev, next;
  size_t length;
};

// Candidate merge of the symbol at `left` with its right neighbour. Lower rank first, then leftmost,
// which is the order of GPT-2's loop and of HF's BPE.
struct Candidate {
  int32_t rank;
  int left;
  int64_t merged_id;
  bool operator>(const Candidate& other) const {
    return rank != other.rank ? rank > other.rank : left > other.left;
  }
};

}  // namespace

BpeModel::BpeModel(std::unordered_map<std::string, int64_t> vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, BpeOptions options)
    : vocab_(std::move(vocab)), options_(std::move(options)) {
  int64_t max_id = -1;
  for (const auto& [token, id] : vocab_) {
    LLAMARL_CHECK(id >= 0 && id < (int64_t{1} << 31), options_.source, ": token ", token, " has id ", id,
                  "; expected an id in [0, 2^31)");
    max_id = std::max(max_id, id);
  }
  // The id -> token table is dense; a few holes are normal (HF files have some), but an id far past
  // the vocabulary's size would make it huge.
  const int64_t id_limit = static_cast<int64_t>(vocab_.size()) + kMaxIdGap;
  LLAMARL_CHECK(max_id < id_limit, options_.source, ": largest token id ", max_id, " is far beyond the ",
                vocab_.size(), " tokens of the vocabulary; expected ids below ", id_limit,
                " (the ids should number the vocabulary)");
  id_to_token_.assign(static_cast<size_t>(max_id + 1), std::string());
  for (const auto& [token, id] : vocab_) id_to_token_[static_cast<size_t>(id)] = token;
  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    // Named references, not a structured binding: C++17 lambdas cannot capture bindings.
    const std::string& left = merges[rank].first;
    const std::string& right = merges[rank].second;
    auto find = [&](const std::string& part) {
      auto it = vocab_.find(part);
      LLAMARL_CHECK(it != vocab_.end(), options_.source, ": merge ", rank, " ('", left, "', '", right,
                    "') uses '", part, "', which is not in the vocabulary; the merges must match the vocab");
      return it->second;
    };
    const int64_t left_id = find(left), right_id = find(right), merged_id = find(left + right);
    // The first occurrence of a pair wins, as in HF (later duplicates would never be reached).
    merges_.emplace(PairKey(left_id, right_id), Merge{static_cast<int32_t>(rank), merged_id});
  }
}

std::vector<int64_t> BpeModel::MergeWord(std::string_view word) const {
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (size_t pos = 0; pos < word.size();) {
    size_t n = ValidSequenceLength(word, pos);
    if (n == 0) n = 1;  // callers pass valid UTF-8; a stray byte is simply not in the vocabulary
    auto it = vocab_.find(std::string(word.substr(pos, n)));
    pos += n;
    if (it == vocab_.end() && !options_.unk_id) continue;
    const int64_t id = it != vocab_.end() ? it->second : *options_.unk_id;
    if (it == vocab_.end() && options_.fuse_unk && !symbols.empty() && symbols.back().id == id) {
      symbols.back().length += n;
      continue;
    }
    const int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, index + 1, n});
  }
  if (symbols.empty()) return {};
  symbols.back().next = -1;

  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[symbols[left].next].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.merged_id});
  };
  for (int i = 0; i + 1 < static_cast<int>(symbols.size()); ++i) push_pair(i);

  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    if (left.length == 0 || left.next < 0) continue;  // merged away since it was queued
    Symbol& right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.merged_id != top.merged_id) continue;  // stale candidate
    left.id = top.merged_id;
    left.length += right.length;
    right.length = 0;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.left;
    push_pair(left.prev);
    push_pair(top.left);
  }
  std::vector<int64_t> ids;
  for (int i = 0; i >= 0; i = symbols[i].next) ids.push_back(symbols[i].id);
  return ids;
}

void BpeModel::EncodeWord(std::string_view word, std::vector<int64_t>* ids) const {
  if (options_.ignore_merges) {
    auto it = vocab_.find(std::string(word));
    if (it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int64_t> word_ids = MergeWord(word);
  ids->insert(ids->end(), word_ids.begin(), word_ids.end());
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() < kMaxCacheEntries) cache_.emplace(std::string(word), std::move(word_ids));
  }
}

}  // namespace llamarl::tokenizer_internal
