// Chat templates against the official Jinja templates rendered by jinja2 the way transformers does
// (scripts/fixtures/chat_template_cases.py -> tests/fixtures/tokenizer/chat_template_cases.json),
// against strings derived by hand from those templates, and format detection.
#include "model/chat_template.h"

#include "core/check.h"
#include "core/config.h"
#include "model/tokenizer.h"
#include "tests/test_util.h"

#include <gtest/gtest.h>

namespace llamarl {
namespace {

// A one-character vocabulary with the given added tokens and optional tokenizer_config chat_template.
Tokenizer TinyTokenizer(const std::vector<std::string>& added, const std::string& chat_template = "") {
  Json tokens = Json::array();
  for (size_t i = 0; i < added.size(); ++i)
    tokens.push_back({{"id", 1 + i}, {"content", added[i]}, {"special", true}});
  const Json j = {{"model", {{"type", "BPE"}, {"vocab", {{"a", 0}}}, {"merges", Json::array()}}},
                  {"pre_tokenizer", {{"type", "ByteLevel"}}},
                  {"decoder", {{"type", "ByteLevel"}}},
                  {"added_tokens", tokens}};
  const Json config = chat_template.empty() ? Json::object() : Json{{"chat_template", chat_template}};
  return Tokenizer::FromTokenizerJson(j.dump(), config.dump());
}

TEST(ChatTemplate, MatchesOfficialTemplatesRenderedByJinja2) {
  const Json cases = ReadJsonFile(::llamarl::testing::FixturePath("tokenizer/chat_template_cases.json"));
  ASSERT_GE(cases.at("cases").size(), 50u);
  for (const Json& c : cases.at("cases")) {
    std::vector<ChatMessage> messages;
    for (const Json& m : c.at("messages")) messages.push_back({m.at("role"), m.at("content")});
    ChatTemplateOptions options;
    options.add_generation_prompt = c.at("add_generation_prompt").get<bool>();
    options.enable_thinking = c.at("enable_thinking").get<bool>();
    const ChatFormat format = ParseChatFormat(c.at("format").get<std::string>());
    EXPECT_EQ(ApplyChatTemplate(format, messages, options), c.at("text").get<std::string>())
        << "case: " << c.dump();
  }
}

TEST(ChatTemplate, Llama3HandDerived) {
  const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", " 2+2? \n"}};
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kLlama3, messages, true),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kLlama3, {{"user", "hi"}}, false),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>");
}

TEST(ChatTemplate, ChatMlHandDerived) {
  const std::vector<ChatMessage> messages = {{"system", "Be brief."}, {"user", " 2+2? \n"}};
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kChatML, messages, true),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n 2+2? \n<|im_end|>\n<|im_start|>assistant\n");
  ChatTemplateOptions no_thinking;
  no_thinking.add_generation_prompt = true;
  no_thinking.enable_thinking = false;
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kChatML, {{"user", "hi"}}, no_thinking),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  // Reasoning of a turn before the last user query is dropped; the last turn keeps it.
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kChatML,
                              {{"user", "a"}, {"assistant", "<think>r1</think>x"}, {"user", "b"},
                               {"assistant", "<think>r2</think>y"}},
                              false),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nx<|im_end|>\n<|im_start|>user\nb<|im_end|>\n"
            "<|im_start|>assistant\n<think>\nr2\n</think>\n\ny<|im_end|>\n");
  EXPECT_EQ(ApplyChatTemplate(ChatFormat::kChatML, {{"user", "w"}, {"tool", "t1"}, {"tool", "t2"}}, false),
            "<|im_start|>user\nw<|im_end|>\n<|im_start|>user\n<tool_response>\nt1\n</tool_response>\n"
            "<tool_response>\nt2\n</tool_response><|im_end|>\n");
}

TEST(ChatTemplate, BadInputsAreErrors) {
  EXPECT_THROW(ApplyChatTemplate(ChatFormat::kLlama3, {}, true), Error);
  EXPECT_THROW(ApplyChatTemplate(ChatFormat::kLlama3, {{"", "x"}}, true), Error);
  try {
    ApplyChatTemplate(ChatFormat::kChatML, {{"user", "x"}, {"narrator", "y"}}, true);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("role 'narrator'"), std::string::npos) << e.what();
  }
  try {
    ParseChatFormat("alpaca");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "unknown chat format 'alpaca'; known: llama3, chatml");
  }
  EXPECT_STREQ(ChatFormatName(ParseChatFormat("llama3")), "llama3");
  EXPECT_STREQ(ChatFormatName(ParseChatFormat("chatml")), "chatml");
}

TEST(ChatTemplate, DetectsFormatFromTemplateOrSpecialTokens) {
  EXPECT_EQ(DetectChatFormat(TinyTokenizer({"<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"})),
            ChatFormat::kLlama3);
  EXPECT_EQ(DetectChatFormat(TinyTokenizer({"<|im_start|>", "<|im_end|>"})), ChatFormat::kChatML);
  // The chat_template wins over the tokens.
  EXPECT_EQ(DetectChatFormat(TinyTokenizer({"<|im_start|>", "<|im_end|>"}, "{{ '<|start_header_id|>' }}")),
            ChatFormat::kLlama3);
  EXPECT_THROW(DetectChatFormat(TinyTokenizer({"<s>"}, "{{ messages }}")), Error);
  try {
    DetectChatFormat(TinyTokenizer({"<s>", "</s>"}));
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("set the format explicitly"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, DetectsQwen3AsChatMlAndTokenizesTheTemplate) {
  LLAMARL_REQUIRE_SHARED_DATA(dir, "tokenizers/qwen3");
  const Tokenizer tok = Tokenizer::FromDirectory(dir);
  ASSERT_EQ(DetectChatFormat(tok), ChatFormat::kChatML);
  const std::string text = ApplyChatTemplate(ChatFormat::kChatML, {{"user", "Hello"}}, true);
  // <|im_start|> user \n Hello <|im_end|> \n <|im_start|> assistant \n
  EXPECT_EQ(tok.Encode(text), (std::vector<int64_t>{151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198}));
}

}  // namespace
}  // namespace llamarl
