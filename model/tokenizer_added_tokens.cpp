#include "model/tokenizer_added_tokens.h"

#include "model/tokenizer_unicode.h"

#include <algorithm>

namespace llamarl::tokenizer_internal {
namespace {

// The code point that ends `text` (valid UTF-8, non-empty).
char32_t LastCodePoint(std::string_view text) {
  size_t start = text.size() - 1;
  while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  return DecodeCodePoint(text, start, text.size() - start);
}

char32_t FirstCodePoint(std::string_view text) {
  const size_t n = ValidSequenceLength(text, 0);
  return n == 0 ? static_cast<char32_t>(static_cast<uint8_t>(text[0])) : DecodeCodePoint(text, 0, n);
}

// Byte offset where the run of whitespace that ends `text` starts.
size_t TrailingWhitespaceStart(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    size_t start = end - 1;
    while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
    if (!IsUnicodeWhitespace(DecodeCodePoint(text, start, end - start))) break;
    end = start;
  }
  return end;
}

// Length in bytes of the run of whitespace that starts `text`.
size_t LeadingWhitespaceLength(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0 || !IsUnicodeWhitespace(DecodeCodePoint(text, pos, n))) break;
    pos += n;
  }
  return pos;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<AddedToken>& tokens,
                                     const std::vector<std::string>& patterns) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (patterns[i].empty()) continue;  // an empty token can never be matched (HF skips it too)
    entries_.push_back({patterns[i], tokens[i]});
  }
  for (size_t i = 0; i < entries_.size(); ++i)
    by_first_byte_[static_cast<uint8_t>(entries_[i].pattern[0])].push_back(i);
  for (auto& bucket : by_first_byte_) {
    std::stable_sort(bucket.begin(), bucket.end(), [&](size_t a, size_t b) {
      return entries_[a].pattern.size() > entries_[b].pattern.size();
    });
  }
}

const AddedTokenMatcher::Entry* AddedTokenMatcher::LongestAt(std::string_view text, size_t pos,
                                                             bool skip_special) const {
  for (size_t index : by_first_byte_[static_cast<uint8_t>(text[pos])]) {
    const Entry& e = entries_[index];
    if (skip_special && e.token.special) continue;
    if (text.compare(pos, e.pattern.size(), e.pattern) == 0) return &e;
  }
  return nullptr;
}

std::vector<TextPiece> AddedTokenMatcher::Split(std::string_view text, bool skip_special) const {
  std::vector<TextPiece> pieces;
  size_t piece_start = 0;  // start of the text not yet emitted
  for (size_t pos = 0; pos < text.size();) {
    const Entry* e = entries_.empty() ? nullptr : LongestAt(text, pos, skip_special);
    if (e == nullptr) {
      ++pos;
      continue;
    }
    size_t start = pos, stop = pos + e->pattern.size();
    pos = stop;  // matches never overlap, even when single_word discards this one
    if (e->token.single_word) {
      const bool space_before = start == 0 || !IsWordCharacter(LastCodePoint(text.substr(0, start)));
      const bool space_after = stop == text.size() || !IsWordCharacter(FirstCodePoint(text.substr(stop)));
      if (!space_before || !space_after) continue;
    }
    if (e->token.lstrip) start = std::max(TrailingWhitespaceStart(text.substr(0, start)), piece_start);
    if (e->token.rstrip) stop += LeadingWhitespaceLength(text.substr(stop));
    if (piece_start < start) pieces.push_back({text.substr(piece_start, start - piece_start), std::nullopt});
    pieces.push_back({text.substr(start, stop - start), e->token.id});
    piece_start = pos = stop;
  }
  if (piece_start < text.size()) pieces.push_back({text.substr(piece_start), std::nullopt});
  return pieces;
}

}  // namespace llamarl::tokenizer_internal
