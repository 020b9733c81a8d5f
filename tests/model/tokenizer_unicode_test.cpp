// UTF-8 repair, NFC and the byte-level alphabet, against hand-worked values (Unicode Table 3-7 and
// its "maximal subpart" examples; GPT-2's bytes_to_unicode table).
#include "model/tokenizer_unicode.h"

#include <gtest/gtest.h>

namespace llamarl::tokenizer_internal {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Lossy, ReplacesEachMaximalSubpartOnce) {
  EXPECT_EQ(Utf8Lossy("plain ascii"), "plain ascii");
  EXPECT_EQ(Utf8Lossy("\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80"), "\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80");
  EXPECT_EQ(Utf8Lossy("\x80"), kFffd);                     // lone continuation byte
  EXPECT_EQ(Utf8Lossy("\xE2\x82"), kFffd);                 // truncated 3-byte sequence: one subpart
  EXPECT_EQ(Utf8Lossy("\xE2\x82z"), kFffd + "z");
  EXPECT_EQ(Utf8Lossy("\xF0\x9F\x98"), kFffd);             // truncated 4-byte sequence
  EXPECT_EQ(Utf8Lossy("\xF0\x80\x80"), kFffd + kFffd + kFffd);  // 0x80 may not follow 0xF0
  EXPECT_EQ(Utf8Lossy("\xC0\xAF"), kFffd + kFffd);         // overlong '/'
  EXPECT_EQ(Utf8Lossy("\xED\xA0\x80"), kFffd + kFffd + kFffd);  // surrogate U+D800
  EXPECT_EQ(Utf8Lossy("\xF4\x90\x80\x80"), kFffd + kFffd + kFffd + kFffd);  // above U+10FFFF
  EXPECT_EQ(Utf8Lossy("\xF5\xFF"), kFffd + kFffd);
  // Unicode 15, section 3.9, Table 3-8: "61 F1 80 80 E1 80 C2 62 80 63 80 BF 64" -> a FFFD FFFD FFFD b
  // FFFD c FFFD FFFD d.
  EXPECT_EQ(Utf8Lossy("\x61\xF1\x80\x80\xE1\x80\xC2\x62\x80\x63\x80\xBF\x64"),
            "a" + kFffd + kFffd + kFffd + "b" + kFffd + "c" + kFffd + kFffd + "d");
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));
  EXPECT_TRUE(IsValidUtf8(std::string("nul\0ok", 6)));
}

TEST(Utf8, DecodesAndEncodesCodePoints) {
  const std::string text = "A\xC3\xA9\xE4\xBD\xA0\xF0\x9F\x98\x80";
  const char32_t expected[] = {0x41, 0xE9, 0x4F60, 0x1F600};
  std::string rebuilt;
  size_t i = 0;
  for (size_t pos = 0; pos < text.size(); ++i) {
    const size_t n = ValidSequenceLength(text, pos);
    ASSERT_GT(n, 0u);
    EXPECT_EQ(DecodeCodePoint(text, pos, n), expected[i]);
    AppendUtf8(expected[i], &rebuilt);
    pos += n;
  }
  EXPECT_EQ(i, 4u);
  EXPECT_EQ(rebuilt, text);
}

TEST(Nfc, ComposesCanonicalSequences) {
  EXPECT_EQ(NormalizeNfc("cafe\xCC\x81"), "caf\xC3\xA9");                    // e + U+0301 -> U+00E9
  EXPECT_EQ(NormalizeNfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "\xEA\xB0\x81");  // jamo -> U+AC01
  EXPECT_EQ(NormalizeNfc("\xEF\xAC\x81"), "\xEF\xAC\x81");  // the fi ligature is NFKC-only
  EXPECT_EQ(NormalizeNfc("\xE2\x84\xAB"), "\xC3\x85");      // ANGSTROM SIGN -> U+00C5 (singleton)
}

TEST(ByteLevelAlphabet, MatchesGpt2BytesToUnicode) {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  EXPECT_EQ(alphabet.Encode('A'), "A");
  EXPECT_EQ(alphabet.Encode(' '), "\xC4\xA0");   // U+0120 'Ġ': byte 32 is the 33rd unprintable byte
  EXPECT_EQ(alphabet.Encode('\n'), "\xC4\x8A");  // U+010A 'Ċ'
  EXPECT_EQ(alphabet.Encode(0), "\xC4\x80");     // U+0100
  EXPECT_EQ(alphabet.Encode(0xAD), "\xC5\x83");  // soft hyphen, the last unprintable byte: U+0143
  EXPECT_EQ(alphabet.Encode(0xE9), "\xC3\xA9");  // printable Latin-1 maps to itself
  for (int b = 0; b < 256; ++b) {
    const std::string& s = alphabet.Encode(static_cast<uint8_t>(b));
    const size_t n = ValidSequenceLength(s, 0);
    ASSERT_EQ(n, s.size());
    EXPECT_EQ(alphabet.Decode(DecodeCodePoint(s, 0, n)), b);
  }
  EXPECT_EQ(alphabet.Decode(0x20), -1);  // a raw space is not in the alphabet
  EXPECT_EQ(alphabet.Decode(0x4F60), -1);
}

TEST(UnicodeClasses, WhitespaceAndWordCharacters) {
  for (char32_t c : {0x20, 0x09, 0x0A, 0xA0, 0x3000, 0x2009, 0x85}) EXPECT_TRUE(IsUnicodeWhitespace(c)) << c;
  for (char32_t c : {0x41, 0x200B, 0xFEFF, 0x1C}) EXPECT_FALSE(IsUnicodeWhitespace(c)) << c;
  for (char32_t c : {U'a', U'Z', U'7', U'_', U'\u00E9', U'\u4F60', U'\u0663'}) EXPECT_TRUE(IsWordCharacter(c)) << c;
  for (char32_t c : {U' ', U'-', U'<', U'\U0001F600'}) EXPECT_FALSE(IsWordCharacter(c)) << c;
}

}  // namespace
}  // namespace llamarl::tokenizer_internal
