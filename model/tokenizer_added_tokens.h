// Finding added tokens (special tokens, <think>, ...) in text, as HF's AddedVocabulary does: the
// leftmost-longest match wins, then single_word may discard it and lstrip/rstrip widen it over
// whitespace. LibTorch-free; immutable after construction, so safe to share between threads.
#pragma once

#include "model/tokenizer.h"

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace llamarl::tokenizer_internal {

// A piece of text between matches, or a matched token (id set; the span includes what lstrip/rstrip
// swallowed, which is dropped from the text).
struct TextPiece {
  std::string_view text;
  std::optional<int64_t> id;
};

class AddedTokenMatcher {
 public:
  AddedTokenMatcher() = default;
  // `patterns[i]` is what is searched for token `tokens[i]` (its content, or its normalized content
  // for a matcher that runs on normalized text).
  AddedTokenMatcher(const std::vector<AddedToken>& tokens, const std::vector<std::string>& patterns);

  // Splits `text` into pieces; with skip_special, tokens marked special are not matched (they stay
  // text). The pieces cover `text` in order.
  std::vector<TextPiece> Split(std::string_view text, bool skip_special) const;
  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    std::string pattern;
    AddedToken token;
  };
  // The longest entry matching at text[pos], or nullptr.
  const Entry* LongestAt(std::string_view text, size_t pos, bool skip_special) const;

  std::vector<Entry> entries_;
  // Entry indices by first byte of the pattern, longest pattern first.
  std::vector<std::vector<size_t>> by_first_byte_ = std::vector<std::vector<size_t>>(256);
};

}  // namespace llamarl::tokenizer_internal
