#include "controller/dataset_prompt.h"

#include "core/check.h"
#include "model/chat_template.h"

namespace llamarl::controller {

PromptConfig PromptConfig::FromJson(const Json& j, const std::string& path) {
  PromptConfig c;
  ConfigReader r(j, path);
  r.Read("style", &c.style, {"raw", "plain", "chat"}, "how a question becomes the prompt");
  r.Read("chat_format", &c.chat_format, {"llama3", "chatml"}, "chat template for style 'chat'");
  r.Read("system_prompt", &c.system_prompt, {}, "system message / preamble; empty for none");
  r.Read("plain_suffix", &c.plain_suffix, {}, "text after the question for style 'plain'");
  r.Finish();
  LLAMARL_CHECK(!(c.style == "raw" && !c.system_prompt.empty()), r.PathOf("system_prompt"),
                ": style 'raw' uses the question as is and would drop the system prompt; use style ",
                "'plain' or 'chat', or remove system_prompt");
  return c;
}

std::string FormatPrompt(const PromptConfig& config, const std::string& question) {
  if (config.style == "raw") return question;
  if (config.style == "plain") {
    return (config.system_prompt.empty() ? "" : config.system_prompt + "\n\n") + question +
           config.plain_suffix;
  }
  LLAMARL_ASSERT(config.style == "chat", "unvalidated prompt style '", config.style, "'");
  std::vector<ChatMessage> messages;
  if (!config.system_prompt.empty()) messages.push_back({"system", config.system_prompt});
  messages.push_back({"user", question});
  return ApplyChatTemplate(ParseChatFormat(config.chat_format), messages, /*add_generation_prompt=*/true);
}

}  // namespace llamarl::controller
