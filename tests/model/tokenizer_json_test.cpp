// tokenizer.json loading on small hand-built files, so every expected id can be worked out by hand:
// component support and errors, merges formats, ignore_merges, added-token matching rules
// (longest match, lstrip, rstrip, single_word, normalized, special), TemplateProcessing BOS, and the
// Split pre-tokenizer's behaviors.
#include "core/check.h"
#include "core/config.h"
#include "model/tokenizer.h"
#include "model/tokenizer_pretokenizer.h"

#include <gtest/gtest.h>

namespace llamarl {
namespace {

using Ids = std::vector<int64_t>;

// Vocabulary: printable ASCII '!'..'~' at ids 0..93 (id = byte - 33), "Ġ" (space) = 94, "Ċ"
// (newline) = 95, then the merge results "he" = 96, "ll" = 97, "hell" = 98, "hello" = 99,
// "Ġw" = 100, "abc" = 101 (reachable by no merge).
Json SmallTokenizerJson(bool merges_as_pairs = false) {
  Json vocab = Json::object();
  for (int c = '!'; c <= '~'; ++c) vocab[std::string(1, static_cast<char>(c))] = c - '!';
  vocab["\xC4\xA0"] = 94;
  vocab["\xC4\x8A"] = 95;
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"h", "e"}, {"l", "l"}, {"he", "ll"}, {"hell", "o"}, {"\xC4\xA0", "w"}};
  const std::vector<std::string> merged = {"he", "ll", "hell", "hello", "\xC4\xA0w"};
  for (size_t i = 0; i < merged.size(); ++i) vocab[merged[i]] = 96 + static_cast<int>(i);
  vocab["abc"] = 101;
  Json merge_list = Json::array();
  for (const auto& [a, b] : merges) merge_list.push_back(merges_as_pairs ? Json::array({a, b}) : Json(a + " " + b));
  return Json{
      {"version", "1.0"},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merge_list}, {"ignore_merges", false}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"post_processor", nullptr},
      {"added_tokens", Json::array()},
  };
}

Json AddedTokenJson(int64_t id, const std::string& content, bool special) {
  return {{"id", id},          {"content", content}, {"special", special}, {"lstrip", false},
          {"rstrip", false},   {"single_word", false}, {"normalized", !special}};
}

Tokenizer Load(const Json& j) { return Tokenizer::FromTokenizerJson(j.dump()); }

Ids IdsOf(const std::string& ascii) {  // one id per printable ASCII character
  Ids ids;
  for (char c : ascii) ids.push_back(c - '!');
  return ids;
}

std::string LoadError(const Json& j) {
  try {
    Load(j);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TokenizerJson, MergesInBothFormatsGiveHandWorkedIds) {
  for (bool pairs : {false, true}) {
    const Tokenizer tok = Load(SmallTokenizerJson(pairs));
    // "hello" merges h+e, l+l, he+ll, hell+o; " world" splits as " world" -> Ġw + o r l d.
    EXPECT_EQ(tok.Encode("hello world"), (Ids{99, 100, 'o' - 33, 'r' - 33, 'l' - 33, 'd' - 33}));
    EXPECT_EQ(tok.Encode("hel"), (Ids{96, 'l' - 33}));
    EXPECT_EQ(tok.Decode(tok.Encode("hello world")), "hello world");
    EXPECT_EQ(tok.VocabSize(), 102);
  }
}

TEST(TokenizerJson, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  Json j = SmallTokenizerJson();
  EXPECT_EQ(Load(j).Encode("abc"), IdsOf("abc"));
  j["model"]["ignore_merges"] = true;
  EXPECT_EQ(Load(j).Encode("abc"), (Ids{101}));
}

TEST(TokenizerJson, AddedTokensLongestMatchAndSpecialFlags) {
  Json j = SmallTokenizerJson();
  j["added_tokens"] = {AddedTokenJson(200, "<a>", true), AddedTokenJson(201, "<a><b>", true),
                       AddedTokenJson(202, "[x]", false)};
  const Tokenizer tok = Load(j);
  EXPECT_EQ(tok.Encode("<a><b><a>"), (Ids{201, 200}));
  EXPECT_EQ(tok.Encode("h[x]h"), (Ids{'h' - 33, 202, 'h' - 33}));
  // split_special_tokens: special tokens are text, non-special ones still match.
  const Ids split = tok.Encode("<a>[x]", {false, true});
  EXPECT_EQ(split, (Ids{'<' - 33, 'a' - 33, '>' - 33, 202}));
  EXPECT_EQ(tok.Decode({200, 99, 202}), "<a>hello[x]");
  EXPECT_EQ(tok.Decode({200, 99, 202}, {true}), "hello[x]");
  EXPECT_EQ(tok.VocabSize(), 203);
  EXPECT_THROW(tok.Decode({150}), Error);  // inside [0, VocabSize) but used by no token
}

TEST(TokenizerJson, AddedTokenStripAndSingleWordRules) {
  Json j = SmallTokenizerJson();
  Json left = AddedTokenJson(200, "<L>", true), right = AddedTokenJson(201, "<R>", true),
       word = AddedTokenJson(202, "ok", false);
  left["lstrip"] = true;
  right["rstrip"] = true;
  word["single_word"] = true;
  j["added_tokens"] = {left, right, word};
  const Tokenizer tok = Load(j);
  const int64_t space = 94;
  EXPECT_EQ(tok.Encode("h  <L> h"), (Ids{'h' - 33, 200, space, 'h' - 33}));  // spaces on the left swallowed
  EXPECT_EQ(tok.Encode("h <R>  h"), (Ids{'h' - 33, space, 201, 'h' - 33}));  // spaces on the right swallowed
  EXPECT_EQ(tok.Encode("ok h"), (Ids{202, space, 'h' - 33}));                // a word of its own
  EXPECT_EQ(tok.Encode("hok"), IdsOf("hok"));                                // inside a word: plain text
  EXPECT_EQ(tok.Encode("ok_"), IdsOf("ok_"));                                // '_' counts as a word char
}

TEST(TokenizerJson, NormalizedAddedTokensMatchAfterNfc) {
  Json j = SmallTokenizerJson();
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", Json::array({Json{{"type", "NFC"}}})}};
  Json normalized = AddedTokenJson(200, "\xC3\xA9", false);  // é, composed
  Json raw = AddedTokenJson(201, "\xC3\xB1", true);          // ñ, composed, matched on raw text
  j["added_tokens"] = {normalized, raw};
  const Tokenizer tok = Load(j);
  EXPECT_EQ(tok.Encode("e\xCC\x81"), (Ids{200}));  // decomposed é normalizes to the token
  EXPECT_EQ(tok.Encode("\xC3\xA9"), (Ids{200}));
  EXPECT_EQ(tok.Encode("\xC3\xB1"), (Ids{201}));
  EXPECT_NE(tok.Encode("n\xCC\x83"), (Ids{201}));  // raw matching sees n + U+0303, not ñ
}

TEST(TokenizerJson, TemplateProcessingAddsBosOnRequest) {
  Json j = SmallTokenizerJson();
  j["added_tokens"] = {AddedTokenJson(128, "<s>", true)};
  // Llama 3.1's shape: Sequence [ByteLevel, TemplateProcessing with BOS before the sequence].
  j["post_processor"] = Json::parse(R"({"type": "Sequence", "processors": [
      {"type": "ByteLevel", "trim_offsets": false},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
       "pair": [],
       "special_tokens": {"<s>": {"id": "<s>", "ids": [128], "tokens": ["<s>"]}}}]})");
  const Tokenizer tok = Load(j);
  EXPECT_EQ(tok.Encode("hello"), (Ids{99}));
  EXPECT_EQ(tok.Encode("hello", {/*add_special_tokens=*/true}), (Ids{128, 99}));
  EXPECT_EQ(tok.special_ids().bos, 128);
}

TEST(TokenizerJson, ConfigSuppliesSpecialTokensAndTemplate) {
  Json j = SmallTokenizerJson();
  j["added_tokens"] = {AddedTokenJson(128, "<s>", true), AddedTokenJson(129, "</s>", true)};
  const Json config = {{"bos_token", {{"content", "<s>"}, {"lstrip", false}}},
                       {"eos_token", "</s>"},
                       {"pad_token", nullptr},
                       {"chat_template", "{{ messages }}"}};
  const Tokenizer tok = Tokenizer::FromTokenizerJson(j.dump(), config.dump());
  EXPECT_EQ(tok.special_ids().bos, 128);
  EXPECT_EQ(tok.special_ids().eos, 129);
  EXPECT_FALSE(tok.special_ids().pad.has_value());
  EXPECT_EQ(tok.chat_template(), "{{ messages }}");
  const Json bad = {{"eos_token", "<missing>"}};
  EXPECT_THROW(Tokenizer::FromTokenizerJson(j.dump(), bad.dump()), Error);
}

TEST(TokenizerJson, UnsupportedComponentsAreNamedErrors) {
  Json j = SmallTokenizerJson();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}};
  EXPECT_EQ(LoadError(j),
            "tokenizer.json: pre_tokenizer type 'Metaspace' is not supported; supported: ByteLevel, Split, "
            "Sequence (or null)");
  j = SmallTokenizerJson();
  j["normalizer"] = {{"type", "NFKC"}};
  EXPECT_NE(LoadError(j).find("normalizer type 'NFKC' is not supported"), std::string::npos);
  j = SmallTokenizerJson();
  j["model"]["type"] = "WordPiece";
  EXPECT_NE(LoadError(j).find("model type 'WordPiece' is not supported; supported: BPE"), std::string::npos);
  j = SmallTokenizerJson();
  j["decoder"] = {{"type", "Metaspace"}};
  EXPECT_NE(LoadError(j).find("decoder type 'Metaspace'"), std::string::npos);
  j = SmallTokenizerJson();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  EXPECT_NE(LoadError(j).find("post_processor type 'RobertaProcessing'"), std::string::npos);
  j = SmallTokenizerJson();
  j["pre_tokenizer"] = nullptr;
  EXPECT_NE(LoadError(j).find("pre_tokenizer has no ByteLevel step"), std::string::npos);
  j = SmallTokenizerJson();
  j["model"]["byte_fallback"] = true;
  EXPECT_NE(LoadError(j).find("byte_fallback"), std::string::npos);
}

TEST(TokenizerJson, MalformedFilesAreErrorsNamingThePlace) {
  EXPECT_NE(LoadError(Json("not an object")).find("expected a JSON object"), std::string::npos);
  EXPECT_THROW(Tokenizer::FromTokenizerJson("{\"model\": "), Error);
  Json j = SmallTokenizerJson();
  j["model"]["merges"].push_back("q zz");
  EXPECT_NE(LoadError(j).find("'zz', which is not in the vocabulary"), std::string::npos);
  j = SmallTokenizerJson();
  j["model"]["merges"].push_back("nospace");
  EXPECT_NE(LoadError(j).find("model.merges[5]"), std::string::npos);
  j = SmallTokenizerJson();
  j["added_tokens"] = {AddedTokenJson(200, "<a>", true), AddedTokenJson(200, "<b>", true)};
  EXPECT_NE(LoadError(j).find("share id 200"), std::string::npos);
  j = SmallTokenizerJson();
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(unclosed"}}}, {"behavior", "Isolated"}};
  EXPECT_NE(LoadError(j).find("does not compile"), std::string::npos);
  j["pre_tokenizer"]["pattern"] = {{"Regex", "a"}};
  j["pre_tokenizer"]["behavior"] = "Sideways";
  EXPECT_NE(LoadError(j).find("behavior 'Sideways' is unknown"), std::string::npos);
  j = SmallTokenizerJson();
  j["model"]["vocab"]["x"] = "seven";
  EXPECT_NE(LoadError(j).find("model.vocab.x: expected an integer token id"), std::string::npos);
  j = SmallTokenizerJson();
  j["model"]["vocab"]["big"] = 5000000;  // would make a 5M-entry id table for 103 tokens
  EXPECT_NE(LoadError(j).find("largest token id 5000000 is far beyond the 103 tokens"), std::string::npos);
}

// HF's documented example for each SplitDelimiterBehavior on "the-final--countdown" with "-".
TEST(SplitPreTokenizer, BehaviorsMatchHfDocumentation) {
  using tokenizer_internal::SplitBehavior;
  const std::vector<std::pair<SplitBehavior, std::vector<std::string>>> cases = {
      {SplitBehavior::kRemoved, {"the", "final", "countdown"}},
      {SplitBehavior::kIsolated, {"the", "-", "final", "-", "-", "countdown"}},
      {SplitBehavior::kMergedWithPrevious, {"the-", "final-", "-", "countdown"}},
      {SplitBehavior::kMergedWithNext, {"the", "-final", "-", "-countdown"}},
      {SplitBehavior::kContiguous, {"the", "-", "final", "--", "countdown"}},
  };
  for (bool regex : {false, true}) {
    for (const auto& [behavior, expected] : cases) {
      tokenizer_internal::SplitOptions options;
      options.pattern = "-";
      options.is_regex = regex;
      options.behavior = behavior;
      std::vector<std::string> pieces;
      tokenizer_internal::MakeSplitStep(options)->Apply("the-final--countdown", &pieces);
      EXPECT_EQ(pieces, expected) << "behavior " << static_cast<int>(behavior) << " regex " << regex;
    }
  }
}

TEST(SplitPreTokenizer, InvertKeepsTheMatchesAsPieces) {
  tokenizer_internal::SplitOptions options;
  options.pattern = "\\p{N}+";
  options.behavior = tokenizer_internal::SplitBehavior::kRemoved;
  options.invert = true;
  std::vector<std::string> pieces;
  tokenizer_internal::MakeSplitStep(options)->Apply("ab12cd3\xD9\xA3", &pieces);  // U+0663 is a digit
  EXPECT_EQ(pieces, (std::vector<std::string>{"12", "3\xD9\xA3"}));
}

}  // namespace
}  // namespace llamarl
