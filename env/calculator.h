// calculator: the model calls a calculator for exact arithmetic, then answers.
//
// A turn that holds a tool call (call_open ... call_close) is evaluated and its result is the
// observation; a turn without one is the final answer, scored by `reward` (default: arithmetic, the
// last number of the turn against the item's target) and ending the episode. Call formats:
//   "json"        <tool_call>{"name": "calculator", "arguments": {"expression": "123*456"}}</tool_call>
//                 (Hermes / Qwen style; "arguments" may also be a JSON string, and a bare
//                 {"expression": "..."} is accepted)
//   "expression"  <tool_call>123*456</tool_call>, for small models
// The expression is evaluated exactly by reward/expression.h (integers, + - * /, parentheses;
// rationals in lowest terms). The observation is the value ("56088", "-3/4"), or "error: ..." naming
// what was wrong and the expected form (invalid JSON, no expression, an unknown tool, division by
// zero, overflow); the episode goes on, so the model may correct itself within its turn budget.
// As a ReferenceAgent (SFT warm starts) it calls the item's answer["expression"] (spaces dropped) in
// the declared format, then answers the call's value: "<c>12*34</c>", observation, "408".
#pragma once

#include <string>

#include "env/environment.h"
#include "reward/registry.h"

namespace llamarl::env {

struct CalculatorConfig {
  std::string call_format = "json";        // "json" or "expression"
  std::string call_open = "<tool_call>";   // the call's opening tag
  std::string call_close = "</tool_call>"; // its closing tag
  std::string tool_name = "calculator";    // the name a json call must give (when it gives one)
  // The final answer's reward ({"name", "config"} at env.config.reward; default arithmetic).
  reward::RewardSpec reward{"arithmetic", Json::object(), "env.config.reward"};

  static CalculatorConfig FromJson(const Json& j, const std::string& path);
};

std::unique_ptr<EnvironmentFactory> MakeCalculatorFactory(const CalculatorConfig& config);

// The observation of one call's text (between the tags): the value, or "error: ...". Exposed for tests.
std::string EvaluateCalculatorCall(const CalculatorConfig& config, const std::string& call, Json* info);

}  // namespace llamarl::env
