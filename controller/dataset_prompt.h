// How a dataset question becomes the prompt text the model sees:
//   "raw"    the question as is;
//   "plain"  [system_prompt "\n\n"] question plain_suffix    (default suffix "\nAnswer:");
//   "chat"   the model's chat template (model/chat_template.h) with an optional system message and
//            the question as the user message, ending with the assistant header.
#pragma once

#include <string>

#include "core/config.h"

namespace llamarl::controller {

struct PromptConfig {
  std::string style = "plain";             // "raw", "plain" or "chat"
  std::string chat_format = "llama3";      // "llama3" or "chatml" (style "chat")
  std::string system_prompt;               // optional; "" = none
  std::string plain_suffix = "\nAnswer:";  // appended by style "plain"

  static PromptConfig FromJson(const Json& j, const std::string& path);
};

std::string FormatPrompt(const PromptConfig& config, const std::string& question);

}  // namespace llamarl::controller
