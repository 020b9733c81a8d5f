// Tokenizer tests on the real GPT-2 and Qwen3 vocabularies in ../shared/data/tokenizers: hand-checked
// ids, exact agreement with ids produced by independent JavaScript tokenizers
// (scripts/fixtures/tokenizer_cases.js -> tests/fixtures/tokenizer/*_cases.json), round trips,
// special tokens, and the invalid UTF-8 policy.
#include "core/check.h"
#include "core/config.h"
#include "model/tokenizer.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <fstream>
#include <future>
#include <thread>

namespace llamarl {
namespace {

using Ids = std::vector<int64_t>;

// Loaded once per process: the Qwen3 vocabulary takes a moment to parse.
const Tokenizer& LoadShared(const std::string& dir) {
  static std::map<std::string, Tokenizer>* cache = new std::map<std::string, Tokenizer>();
  auto it = cache->find(dir);
  if (it == cache->end()) it = cache->emplace(dir, Tokenizer::FromDirectory(dir)).first;
  return it->second;
}

std::vector<std::string> Gsm8kQuestions(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> questions;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) questions.push_back(Json::parse(line).at("question").get<std::string>());
  return questions;
}

const std::vector<std::string>& RoundTripTexts() {
  static const std::vector<std::string> texts = {
      "Hello world", "", " ", "  two  spaces  ", "\n\n\ttab\r\n", "line1\nline2\n\n\nline5",
      "1234567890 3.14 $1,234.56", "I'm don't you'll we've they're it's he'd I'D",
      "caf\xC3\xA9 na\xC3\xAFve", "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C",
      "\xF0\x9F\x98\x80\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
      "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",  // ZWJ family
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7",
      "def f(x):\n    return x**2\n", std::string("nul\0byte", 8), "a\xC2\xA0" "b\xE3\x80\x80" "c",
      std::string(2000, 'a'), std::string(1000, ' ') + "x", std::string(300, '\n'),
  };
  return texts;
}

// The loaders GTEST_SKIP when the data is absent; the test then returns at once.
#define LOAD_OR_SKIP(load_call) \
  load_call;                      \
  if (IsSkipped()) return

class RealVocabTest : public ::testing::Test {
 protected:
  void LoadGpt2() {
    std::string dir = ::llamarl::testing::SharedDataPath("tokenizers/gpt2");
    if (dir.empty()) GTEST_SKIP() << "../shared/data/tokenizers/gpt2 not present; skipping";
    tok_ = &LoadShared(dir);
  }
  void LoadQwen3() {
    std::string dir = ::llamarl::testing::SharedDataPath("tokenizers/qwen3");
    if (dir.empty()) GTEST_SKIP() << "../shared/data/tokenizers/qwen3 not present; skipping";
    tok_ = &LoadShared(dir);
  }
  const Tokenizer* tok_ = nullptr;
};

// Every encode and decode case of a fixture file must match exactly.
void ExpectMatchesFixture(const Tokenizer& tok, const std::string& fixture) {
  const Json cases = ReadJsonFile(::llamarl::testing::FixturePath(fixture));
  ASSERT_GE(cases.at("encode").size(), 100u);
  for (const Json& c : cases.at("encode")) {
    const std::string text = c.at("text").get<std::string>();
    EXPECT_EQ(tok.Encode(text), c.at("ids").get<Ids>()) << "text: " << Json(text).dump();
  }
  for (const Json& c : cases.at("decode")) {
    const Ids ids = c.at("ids").get<Ids>();
    EXPECT_EQ(tok.Decode(ids), c.at("text").get<std::string>()) << "ids: " << Json(ids).dump();
    if (c.contains("text_skip_special")) {
      EXPECT_EQ(tok.Decode(ids, {/*skip_special_tokens=*/true}), c.at("text_skip_special").get<std::string>())
          << "ids: " << Json(ids).dump();
    }
  }
}

TEST_F(RealVocabTest, Gpt2KnownIdsCheckedAgainstEncoderJson) {
  LOAD_OR_SKIP(LoadGpt2());
  // encoder.json: "Hello" -> 15496, "\u0120world" (space + world) -> 995.
  EXPECT_EQ(tok_->TokenToId("Hello"), 15496);
  EXPECT_EQ(tok_->TokenToId("\xC4\xA0world"), 995);
  EXPECT_EQ(tok_->Encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(tok_->IdToToken(995), "\xC4\xA0world");
  EXPECT_EQ(tok_->VocabSize(), 50257);
  // "<|endoftext|>" is the special token 50256 inside text, not its characters.
  EXPECT_EQ(tok_->Encode("a<|endoftext|>b"), (Ids{*tok_->TokenToId("a"), 50256, *tok_->TokenToId("b")}));
  EXPECT_EQ(tok_->special_ids().eos, 50256);
  EXPECT_EQ(tok_->special_ids().bos, 50256);
  EXPECT_TRUE(tok_->IsSpecial(50256));
  EXPECT_EQ(tok_->Decode({15496, 50256, 995}, {/*skip_special_tokens=*/true}), "Hello world");
}

TEST_F(RealVocabTest, Gpt2MatchesJavaScriptReference) {
  LOAD_OR_SKIP(LoadGpt2());
  ExpectMatchesFixture(*tok_, "tokenizer/gpt2_cases.json");
}

TEST_F(RealVocabTest, Qwen3MatchesJavaScriptReference) {
  LOAD_OR_SKIP(LoadQwen3());
  ExpectMatchesFixture(*tok_, "tokenizer/qwen3_cases.json");
}

TEST_F(RealVocabTest, Qwen3SpecialTokensFromFiles) {
  LOAD_OR_SKIP(LoadQwen3());
  EXPECT_EQ(tok_->VocabSize(), 151669);  // 151643 BPE tokens + 26 added tokens
  EXPECT_EQ(tok_->TokenToId("<|im_end|>"), 151645);
  EXPECT_EQ(tok_->special_ids().eos, 151645);  // tokenizer_config.json: eos_token
  EXPECT_EQ(tok_->special_ids().pad, 151643);  // pad_token <|endoftext|>
  EXPECT_FALSE(tok_->special_ids().bos.has_value());
  EXPECT_NE(tok_->chat_template().find("<|im_start|>"), std::string::npos);
  EXPECT_TRUE(tok_->IsSpecial(151644));
  EXPECT_FALSE(tok_->IsSpecial(151667));  // <think> is an added token but not special
  EXPECT_EQ(tok_->Encode("<|im_start|>user"), (Ids{151644, 872}));
  // split_special_tokens: special tokens become text, non-special added tokens still match.
  const Ids split = tok_->Encode("<|im_start|><think>", {false, /*split_special_tokens=*/true});
  EXPECT_EQ(split.back(), 151667);
  EXPECT_EQ(tok_->Decode(Ids(split.begin(), split.end() - 1)), "<|im_start|>");
  EXPECT_GT(split.size(), 2u);
  EXPECT_EQ(tok_->Decode({151644, 872, 198, 9707, 151645}, {true}), "user\nHello");
  EXPECT_EQ(tok_->Decode({151644, 872, 198, 9707, 151645}), "<|im_start|>user\nHello<|im_end|>");
  EXPECT_EQ(tok_->Encode("x", {/*add_special_tokens=*/true}), tok_->Encode("x"));  // no BOS in Qwen3
}

TEST_F(RealVocabTest, Qwen3NormalizesToNfcAndGpt2DoesNot) {
  LOAD_OR_SKIP(LoadQwen3());
  const std::string composed = "caf\xC3\xA9", decomposed = "cafe\xCC\x81";
  EXPECT_EQ(tok_->Encode(decomposed), tok_->Encode(composed));
  EXPECT_EQ(tok_->Decode(tok_->Encode(decomposed)), composed);
  LOAD_OR_SKIP(LoadGpt2());
  EXPECT_NE(tok_->Encode(decomposed), tok_->Encode(composed));
  EXPECT_EQ(tok_->Decode(tok_->Encode(decomposed)), decomposed);
}

TEST_F(RealVocabTest, RoundTripsHardStringsAndGsm8k) {
  const std::string gsm8k = ::llamarl::testing::SharedDataPath("gsm8k/test.jsonl");
  std::vector<std::string> texts = RoundTripTexts();
  if (!gsm8k.empty()) {
    for (std::string& q : Gsm8kQuestions(gsm8k)) texts.push_back(std::move(q));
  }
  for (int which = 0; which < 2; ++which) {
    LOAD_OR_SKIP(which == 0 ? LoadGpt2() : LoadQwen3());
    for (const std::string& text : texts) {
      // Qwen3 normalizes to NFC; every text above is already NFC, so both tokenizers must round-trip.
      EXPECT_EQ(tok_->Decode(tok_->Encode(text)), text) << "tokenizer " << which << " text: " << text;
    }
  }
}

TEST_F(RealVocabTest, InvalidUtf8BecomesReplacementCharacters) {
  for (int which = 0; which < 2; ++which) {
    LOAD_OR_SKIP(which == 0 ? LoadGpt2() : LoadQwen3());
    const std::string fffd = "\xEF\xBF\xBD";
    // Each maximal ill-formed subpart is one U+FFFD (Python's errors='replace', Rust's from_utf8_lossy).
    EXPECT_EQ(tok_->Encode("a\xFF" "b"), tok_->Encode("a" + fffd + "b"));
    EXPECT_EQ(tok_->Encode("a\xE2\x82" "b"), tok_->Encode("a" + fffd + "b"));            // truncated
    EXPECT_EQ(tok_->Encode("\xF0\x80x"), tok_->Encode(fffd + fffd + "x"));              // bad 2nd byte
    EXPECT_EQ(tok_->Encode("\xC0\xAF"), tok_->Encode(fffd + fffd));                     // overlong
    EXPECT_EQ(tok_->Encode("\xED\xA0\x80"), tok_->Encode(fffd + fffd + fffd));          // surrogate
    EXPECT_EQ(tok_->Decode(tok_->Encode("ok\xE4\xBD")), "ok" + fffd);
    // Decoding one byte of a multi-byte character gives U+FFFD; the full sequence gives the character.
    const Ids bytes = {*tok_->TokenToId("\xC3\xA4"), *tok_->TokenToId("\xC2\xBD")};  // bytes E4 BD
    EXPECT_EQ(tok_->Decode(bytes), fffd);
    EXPECT_EQ(tok_->Decode({bytes[0]}), fffd);
    EXPECT_EQ(tok_->Decode({*tok_->TokenToId("\xC4\xA2")}), fffd);  // U+0122 stands for byte 0x80
  }
}

TEST_F(RealVocabTest, DecodeRejectsIdsOutsideTheVocabulary) {
  LOAD_OR_SKIP(LoadQwen3());
  try {
    tok_->Decode({9707, 151669});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("151669"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("vocabulary of 151669"), std::string::npos) << e.what();
  }
  EXPECT_THROW(tok_->Decode({-1}), Error);
  EXPECT_THROW(tok_->IdToToken(1 << 30), Error);
}

TEST_F(RealVocabTest, ConcurrentEncodeAgreesWithSequential) {
  LOAD_OR_SKIP(LoadQwen3());
  const std::string gsm8k = ::llamarl::testing::SharedDataPath("gsm8k/test.jsonl");
  if (gsm8k.empty()) GTEST_SKIP() << "../shared/data/gsm8k not present; skipping";
  const std::vector<std::string> questions = Gsm8kQuestions(gsm8k);
  std::vector<Ids> expected;
  for (const std::string& q : questions) expected.push_back(tok_->Encode(q));
  std::vector<std::future<size_t>> workers;
  for (int t = 0; t < 4; ++t) {
    workers.push_back(std::async(std::launch::async, [&, t] {
      size_t mismatches = 0;
      for (size_t i = t; i < questions.size() * 2; i += 3) {
        const size_t k = i % questions.size();
        mismatches += tok_->Encode(questions[k]) != expected[k];
      }
      return mismatches;
    }));
  }
  for (auto& w : workers) EXPECT_EQ(w.get(), 0u);
}

TEST_F(RealVocabTest, EncodesGsm8kTrainQuickly) {
  LOAD_OR_SKIP(LoadQwen3());
  const std::string gsm8k = ::llamarl::testing::SharedDataPath("gsm8k/train.jsonl");
  if (gsm8k.empty()) GTEST_SKIP() << "../shared/data/gsm8k/train.jsonl not present; skipping";
  const std::vector<std::string> questions = Gsm8kQuestions(gsm8k);
  ASSERT_GT(questions.size(), 7000u);
  const auto start = std::chrono::steady_clock::now();
  size_t num_tokens = 0;
  for (const std::string& q : questions) num_tokens += tok_->Encode(q).size();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("encoded %zu GSM8K train questions into %zu tokens in %.3f s\n", questions.size(), num_tokens,
              seconds);
  // About 0.5 s on one core of the dev machine; the bound leaves room for a loaded CI machine.
  EXPECT_LT(seconds, 10.0);
}

TEST(TokenizerFiles, FromDirectoryListsWhatItLookedFor) {
  const std::string dir = ::llamarl::testing::MakeTempDir("tokenizer-empty");
  try {
    Tokenizer::FromDirectory(dir);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const char* name : {"tokenizer.json", "encoder.json", "vocab.bpe"})
      EXPECT_NE(message.find(name), std::string::npos) << message;
  }
}

}  // namespace
}  // namespace llamarl
