#include "model/tokenizer_unicode.h"

#include "core/check.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

namespace llamarl::tokenizer_internal {
namespace {

// Allowed range of the second byte after each lead byte (Unicode Table 3-7); later continuation
// bytes are always 0x80..0xBF.
struct LeadByteRule {
  int length;
  uint8_t second_lo, second_hi;
};

LeadByteRule RuleFor(uint8_t lead) {
  if (lead < 0x80) return {1, 0, 0};
  if (lead >= 0xC2 && lead <= 0xDF) return {2, 0x80, 0xBF};
  if (lead == 0xE0) return {3, 0xA0, 0xBF};
  if (lead == 0xED) return {3, 0x80, 0x9F};
  if (lead >= 0xE1 && lead <= 0xEF) return {3, 0x80, 0xBF};
  if (lead == 0xF0) return {4, 0x90, 0xBF};
  if (lead >= 0xF1 && lead <= 0xF3) return {4, 0x80, 0xBF};
  if (lead == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};  // 0x80..0xC1, 0xF5..0xFF never start a sequence
}

// Length of the longest prefix at text[pos] that is a valid start of a sequence (at least 1): the
// "maximal subpart" that one U+FFFD replaces when the sequence is ill-formed.
size_t MaximalSubpart(std::string_view text, size_t pos) {
  const auto lead = static_cast<uint8_t>(text[pos]);
  const LeadByteRule rule = RuleFor(lead);
  if (rule.length <= 1) return 1;
  size_t n = 1;
  for (; n < static_cast<size_t>(rule.length) && pos + n < text.size(); ++n) {
    const auto b = static_cast<uint8_t>(text[pos + n]);
    const uint8_t lo = n == 1 ? rule.second_lo : 0x80, hi = n == 1 ? rule.second_hi : 0xBF;
    if (b < lo || b > hi) break;
  }
  return n;
}

}  // namespace

size_t ValidSequenceLength(std::string_view text, size_t pos) {
  const LeadByteRule rule = RuleFor(static_cast<uint8_t>(text[pos]));
  if (rule.length == 0) return 0;
  const size_t prefix = MaximalSubpart(text, pos);
  return prefix == static_cast<size_t>(rule.length) ? prefix : 0;
}

bool IsValidUtf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0) return false;
    pos += n;
  }
  return true;
}

std::string Utf8Lossy(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ValidSequenceLength(text, pos);
    if (n > 0) {
      out.append(text.substr(pos, n));
      pos += n;
    } else {
      out.append(kReplacementChar);
      pos += MaximalSubpart(text, pos);
    }
  }
  return out;
}

char32_t DecodeCodePoint(std::string_view text, size_t pos, size_t length) {
  const auto b0 = static_cast<uint8_t>(text[pos]);
  if (length == 1) return b0;
  static constexpr uint8_t kLeadMask[5] = {0, 0, 0x1F, 0x0F, 0x07};
  char32_t c = b0 & kLeadMask[length];
  for (size_t i = 1; i < length; ++i) c = (c << 6) | (static_cast<uint8_t>(text[pos + i]) & 0x3F);
  return c;
}

void AppendUtf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    out->push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (c >> 6)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (c >> 12)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (c >> 18)));
    out->push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::string NormalizeNfc(std::string_view text) {
  // Pure ASCII is already in NFC; skipping utf8proc for it keeps the common case allocation-light.
  bool ascii = true;
  for (char ch : text) ascii = ascii && static_cast<uint8_t>(ch) < 0x80;
  if (ascii) return std::string(text);
  utf8proc_uint8_t* result = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
                                          static_cast<utf8proc_ssize_t>(text.size()), &result,
                                          static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owner(result, &std::free);
  LLAMARL_ASSERT(n >= 0, "utf8proc NFC failed on valid UTF-8: ", utf8proc_errmsg(n));
  return std::string(reinterpret_cast<const char*>(result), static_cast<size_t>(n));
}

bool IsUnicodeWhitespace(char32_t c) {
  if (c >= 0x09 && c <= 0x0D) return true;
  switch (c) {
    case 0x20: case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029:
    case 0x202F: case 0x205F: case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

bool IsWordCharacter(char32_t c) {
  if (c == '_') return true;
  switch (utf8proc_category(static_cast<utf8proc_int32_t>(c))) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
      return true;
    default:
      return false;
  }
}

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet alphabet;  // thread-safe static init; immutable afterwards
  return alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  code_point_to_byte_.fill(-1);
  int next_extra = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const char32_t c = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next_extra++);
    AppendUtf8(c, &byte_to_utf8_[b]);
    code_point_to_byte_[c] = static_cast<int16_t>(b);
  }
}

void ByteLevelAlphabet::EncodeBytes(std::string_view bytes, std::string* out) const {
  for (char ch : bytes) out->append(byte_to_utf8_[static_cast<uint8_t>(ch)]);
}

int ByteLevelAlphabet::Decode(char32_t code_point) const {
  return code_point < code_point_to_byte_.size() ? code_point_to_byte_[code_point] : -1;
}

}  // namespace llamarl::tokenizer_internal
