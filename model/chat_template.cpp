#include "model/chat_template.h"

#include "core/check.h"
#include "model/tokenizer.h"
#include "model/tokenizer_unicode.h"

namespace llamarl {
namespace {

namespace ti = tokenizer_internal;

// Python's str.isspace: Unicode White_Space plus the separators U+001C..U+001F.
bool IsPythonSpace(char32_t c) { return ti::IsUnicodeWhitespace(c) || (c >= 0x1C && c <= 0x1F); }

// Jinja's `| trim`, i.e. Python's str.strip(): removes leading and trailing Unicode whitespace.
std::string PythonStrip(std::string_view text) {
  size_t begin = 0, end = 0;  // [begin, end) = text between the whitespace runs
  bool seen_non_space = false;
  for (size_t pos = 0; pos < text.size();) {
    const size_t n = ti::ValidSequenceLength(text, pos);
    const bool space = n > 0 && IsPythonSpace(ti::DecodeCodePoint(text, pos, n));
    const size_t step = n == 0 ? 1 : n;
    if (!space) {
      if (!seen_non_space) begin = pos;
      seen_non_space = true;
      end = pos + step;
    }
    pos += step;
  }
  return seen_non_space ? std::string(text.substr(begin, end - begin)) : std::string();
}

// Python's str.lstrip('\n') / rstrip('\n') / strip('\n').
std::string_view LStripNewlines(std::string_view s) {
  const size_t first = s.find_first_not_of('\n');
  return first == std::string_view::npos ? std::string_view() : s.substr(first);
}
std::string_view RStripNewlines(std::string_view s) {
  const size_t last = s.find_last_not_of('\n');
  return last == std::string_view::npos ? std::string_view() : s.substr(0, last + 1);
}

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }
bool EndsWith(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

void CheckNotEmpty(ChatFormat format, const std::vector<ChatMessage>& messages) {
  LLAMARL_CHECK(!messages.empty(), "ApplyChatTemplate(", ChatFormatName(format),
                "): no messages; expected at least one message");
}

std::string ApplyLlama3(const std::vector<ChatMessage>& messages, bool add_generation_prompt) {
  std::string out = "<|begin_of_text|>";
  for (size_t i = 0; i < messages.size(); ++i) {
    LLAMARL_CHECK(!messages[i].role.empty(), "ApplyChatTemplate(llama3): message ", i,
                  " has an empty role; expected system, user, assistant or another role name");
    out += "<|start_header_id|>" + messages[i].role + "<|end_header_id|>\n\n" + PythonStrip(messages[i].content) +
           "<|eot_id|>";
  }
  if (add_generation_prompt) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
  return out;
}

// Index of the last user message that is a real query, not a wrapped tool response (Qwen3's
// ns.last_query_index); messages.size() - 1 when there is none.
size_t LastQueryIndex(const std::vector<ChatMessage>& messages) {
  for (size_t i = messages.size(); i-- > 0;) {
    const std::string& c = messages[i].content;
    if (messages[i].role == "user" && !(StartsWith(c, "<tool_response>") && EndsWith(c, "</tool_response>")))
      return i;
  }
  return messages.size() - 1;
}

// One assistant turn of Qwen3's template: reasoning in <think> is split off the content and kept
// only for turns after the last user query.
std::string ChatMlAssistant(const std::vector<ChatMessage>& messages, size_t i, size_t last_query) {
  const std::string& raw = messages[i].content;
  std::string_view content = raw, reasoning;
  const size_t close = raw.find("</think>");
  if (close != std::string::npos) {
    content = LStripNewlines(std::string_view(raw).substr(raw.rfind("</think>") + 8));
    std::string_view before = RStripNewlines(std::string_view(raw).substr(0, close));
    const size_t open = before.rfind("<think>");
    reasoning = LStripNewlines(open == std::string_view::npos ? before : before.substr(open + 7));
  }
  std::string out = "<|im_start|>assistant\n";
  const bool last = i + 1 == messages.size();
  if (i > last_query && (last || !reasoning.empty())) {
    out += "<think>\n";
    out += RStripNewlines(LStripNewlines(reasoning));
    out += "\n</think>\n\n";
    out += LStripNewlines(content);
  } else {
    out += content;
  }
  return out + "<|im_end|>\n";
}

std::string ApplyChatMl(const std::vector<ChatMessage>& messages, const ChatTemplateOptions& options) {
  std::string out;
  if (messages[0].role == "system") out += "<|im_start|>system\n" + messages[0].content + "<|im_end|>\n";
  const size_t last_query = LastQueryIndex(messages);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "user" || (m.role == "system" && i > 0)) {
      out += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n";
    } else if (m.role == "assistant") {
      out += ChatMlAssistant(messages, i, last_query);
    } else if (m.role == "tool") {
      // Consecutive tool results share one user turn.
      if (i == 0 || messages[i - 1].role != "tool") out += "<|im_start|>user";
      out += "\n<tool_response>\n" + m.content + "\n</tool_response>";
      if (i + 1 == messages.size() || messages[i + 1].role != "tool") out += "<|im_end|>\n";
    } else {
      LLAMARL_CHECK(m.role == "system", "ApplyChatTemplate(chatml): message ", i, " has role '", m.role,
                    "', which Qwen's template would silently drop; expected system, user, assistant or tool");
    }
  }
  if (options.add_generation_prompt) {
    out += "<|im_start|>assistant\n";
    if (!options.enable_thinking) out += "<think>\n\n</think>\n\n";
  }
  return out;
}

}  // namespace

std::string ApplyChatTemplate(ChatFormat format, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt) {
  ChatTemplateOptions options;
  options.add_generation_prompt = add_generation_prompt;
  return ApplyChatTemplate(format, messages, options);
}

std::string ApplyChatTemplate(ChatFormat format, const std::vector<ChatMessage>& messages,
                              const ChatTemplateOptions& options) {
  CheckNotEmpty(format, messages);
  switch (format) {
    case ChatFormat::kLlama3:
      return ApplyLlama3(messages, options.add_generation_prompt);
    case ChatFormat::kChatML:
      return ApplyChatMl(messages, options);
  }
  LLAMARL_ASSERT(false, "unhandled ChatFormat ", static_cast<int>(format));
  return {};
}

ChatFormat DetectChatFormat(const Tokenizer& tokenizer) {
  const std::string& jinja = tokenizer.chat_template();
  if (!jinja.empty()) {
    if (jinja.find("<|start_header_id|>") != std::string::npos) return ChatFormat::kLlama3;
    if (jinja.find("<|im_start|>") != std::string::npos) return ChatFormat::kChatML;
    LLAMARL_FAIL("cannot detect the chat format: the tokenizer's chat_template uses neither <|start_header_id|> ",
                 "(llama3) nor <|im_start|> (chatml); supported formats: llama3, chatml; set the format explicitly");
  }
  const bool llama3 = tokenizer.TokenToId("<|start_header_id|>") && tokenizer.TokenToId("<|eot_id|>");
  const bool chatml = tokenizer.TokenToId("<|im_start|>") && tokenizer.TokenToId("<|im_end|>");
  if (llama3) return ChatFormat::kLlama3;
  if (chatml) return ChatFormat::kChatML;
  LLAMARL_FAIL("cannot detect the chat format: the tokenizer has no chat_template and neither the tokens ",
               "<|start_header_id|> + <|eot_id|> (llama3) nor <|im_start|> + <|im_end|> (chatml); ",
               "set the format explicitly (llama3 or chatml)");
}

ChatFormat ParseChatFormat(std::string_view name) {
  if (name == "llama3") return ChatFormat::kLlama3;
  if (name == "chatml") return ChatFormat::kChatML;
  LLAMARL_FAIL("unknown chat format '", name, "'; known: llama3, chatml");
}

const char* ChatFormatName(ChatFormat format) {
  return format == ChatFormat::kLlama3 ? "llama3" : "chatml";
}

}  // namespace llamarl
