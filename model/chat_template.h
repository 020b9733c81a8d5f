// Chat templates: the text the official Jinja templates render, produced without a Jinja engine.
// LibTorch-free.
//   kLlama3: Meta-Llama-3-*-Instruct's template:
//     <|begin_of_text|> then, per message,
//     <|start_header_id|>{role}<|end_header_id|>\n\n{content | trim}<|eot_id|>
//     and with add_generation_prompt: <|start_header_id|>assistant<|end_header_id|>\n\n
//   kChatML: Qwen3's template (without tools), which is Qwen's ChatML:
//     <|im_start|>{role}\n{content}<|im_end|>\n per message, tool results wrapped in <tool_response>
//     inside a user turn, assistant reasoning (<think>...</think>) kept only after the last user query,
//     and with add_generation_prompt: <|im_start|>assistant\n, plus <think>\n\n</think>\n\n when
//     thinking is disabled (enable_thinking=false).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace llamarl {

class Tokenizer;

enum class ChatFormat { kLlama3, kChatML };

struct ChatMessage {
  std::string role;  // "system", "user", "assistant" (kChatML also "tool")
  std::string content;
};

struct ChatTemplateOptions {
  bool add_generation_prompt = false;  // end with the header that opens the assistant's reply
  bool enable_thinking = true;         // kChatML only: false adds an empty <think></think> block
};

// Errors: no messages; an empty role (kLlama3), or a role kChatML's template would silently drop.
std::string ApplyChatTemplate(ChatFormat format, const std::vector<ChatMessage>& messages,
                              bool add_generation_prompt);
std::string ApplyChatTemplate(ChatFormat format, const std::vector<ChatMessage>& messages,
                              const ChatTemplateOptions& options);

// From the tokenizer's chat_template (tokenizer_config.json) when present, else from its special
// tokens (<|start_header_id|> + <|eot_id|> -> kLlama3; <|im_start|> + <|im_end|> -> kChatML). An
// unrecognised tokenizer is an error that says how to choose the format explicitly.
ChatFormat DetectChatFormat(const Tokenizer& tokenizer);

// "llama3" / "chatml" (as recipes spell them); the error lists the known names.
ChatFormat ParseChatFormat(std::string_view name);
const char* ChatFormatName(ChatFormat format);

}  // namespace llamarl
