// UTF-8 and byte-level helpers shared by the tokenizer's parts. LibTorch-free.
//
// Invalid UTF-8 policy (both directions use the same rule, so Encode and Decode agree): every
// maximal subpart of an ill-formed sequence becomes one U+FFFD, the Unicode "best practice" that
// Rust's String::from_utf8_lossy and Python's bytes.decode(errors='replace') both follow. Examples:
// "\xE2\x82" (a truncated 3-byte sequence) -> one U+FFFD; "\xF0\x80" -> two (0x80 cannot follow
// 0xF0); "\xC0\xAF" (overlong) -> two; "\xED\xA0\x80" (a surrogate) -> three.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace llamarl::tokenizer_internal {

// The replacement character U+FFFD in UTF-8.
inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";

// Number of bytes of the valid UTF-8 sequence starting at text[pos], or 0 when the bytes there are
// not a valid sequence.
size_t ValidSequenceLength(std::string_view text, size_t pos);
bool IsValidUtf8(std::string_view text);
// `text` with each maximal ill-formed subpart replaced by U+FFFD (see the policy above).
std::string Utf8Lossy(std::string_view text);

// Decodes the code point of the valid sequence at text[pos] (length from ValidSequenceLength).
char32_t DecodeCodePoint(std::string_view text, size_t pos, size_t length);
void AppendUtf8(char32_t code_point, std::string* out);

// Unicode canonical composition (NFC) through utf8proc; `text` must be valid UTF-8.
std::string NormalizeNfc(std::string_view text);

// Python's str.isspace / Rust's char::is_whitespace for the characters they agree on (White_Space).
bool IsUnicodeWhitespace(char32_t c);
// Letters, numbers and '_' (regex \w), used by added tokens' single_word rule.
bool IsWordCharacter(char32_t c);

// GPT-2's byte-level alphabet: each byte maps to a printable code point (printable Latin-1 bytes map
// to themselves, the rest to U+0100 and up, in byte order), so that any byte string becomes a string
// of "visible" characters that the BPE vocabulary is written in.
class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& Get();
  // UTF-8 of the code point that stands for `byte`.
  const std::string& Encode(uint8_t byte) const { return byte_to_utf8_[byte]; }
  // Appends the byte-level form of every byte of `bytes` to *out.
  void EncodeBytes(std::string_view bytes, std::string* out) const;
  // The byte a code point stands for, or -1 when it is not in the alphabet.
  int Decode(char32_t code_point) const;

 private:
  ByteLevelAlphabet();
  std::array<std::string, 256> byte_to_utf8_;
  std::array<int16_t, 512> code_point_to_byte_;  // every alphabet code point is < 0x144
};

}  // namespace llamarl::tokenizer_internal
