#include "env/calculator.h"

#include "core/check.h"
#include "reward/expression.h"
#include "reward/registry.h"

namespace llamarl::env {
namespace {

std::string Clip(const std::string& s) { return s.size() > 120 ? s.substr(0, 120) + "..." : s; }

// The expression of a json call, or "" with *error set.
std::string JsonExpression(const CalculatorConfig& c, const std::string& call, std::string* error) {
  const std::string expected = "expected " + c.call_open + "{\"name\": \"" + c.tool_name +
                               "\", \"arguments\": {\"expression\": \"12*34\"}}" + c.call_close;
  Json j = Json::parse(call, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    *error = "the tool call is not a JSON object: '" + Clip(call) + "'; " + expected;
    return "";
  }
  if (j.contains("name") && !(j["name"].is_string() && j["name"].get<std::string>() == c.tool_name)) {
    *error = "unknown tool " + j["name"].dump() + "; the only tool is \"" + c.tool_name + "\"";
    return "";
  }
  Json args = j.contains("arguments") ? j["arguments"] : j;
  if (args.is_string()) args = Json::parse(args.get<std::string>(), nullptr, false);
  if (!args.is_object() || !args.contains("expression") || !args["expression"].is_string()) {
    *error = "the tool call has no \"expression\" string; " + expected;
    return "";
  }
  return args["expression"].get<std::string>();
}

class Calculator : public Environment, public ReferenceAgent {
 public:
  explicit Calculator(const CalculatorConfig& config)
      : config_(config), reward_(config.reward.Make()) {}

  void Reset(const EnvItem& item) override {
    item_ = item;
    last_value_.clear();
  }

  // One call with the item's expression, then its value as the answer.
  std::string ReferenceTurn() override {
    if (!last_value_.empty()) return last_value_;
    LLAMARL_CHECK(item_.answer.is_object() && item_.answer.contains("expression") &&
                      item_.answer["expression"].is_string(),
                  "calculator: item ", item_.id, "'s answer has no \"expression\" string to write a reference ",
                  "episode from (generated arithmetic tasks have one); got ", item_.answer.dump());
    std::string expression;
    for (char ch : item_.answer["expression"].get<std::string>())
      if (ch != ' ') expression += ch;
    if (config_.call_format == "json") {
      expression = Json{{"name", config_.tool_name}, {"arguments", {{"expression", expression}}}}.dump();
    }
    return config_.call_open + expression + config_.call_close;
  }

  EnvStep Step(const std::string& turn) override {
    EnvStep step;
    const size_t open = turn.find(config_.call_open);
    if (open == std::string::npos) {  // the final answer
      reward::RewardResult r = reward_->Score({{item_.prompt, turn, item_.answer}});
      step.done = true;
      step.reward = r.scores.at(0);
      step.info = Json{{"answer", r.info.at(0)}};
      return step;
    }
    const size_t begin = open + config_.call_open.size();
    const size_t close = turn.find(config_.call_close, begin);
    if (close == std::string::npos) {
      step.observation = "error: the tool call has no closing " + config_.call_close + "; write " +
                         config_.call_open + "..." + config_.call_close;
      step.info = Json{{"error", "unclosed call"}};
      return step;
    }
    step.observation = EvaluateCalculatorCall(config_, turn.substr(begin, close - begin), &step.info);
    if (step.info.contains("value")) last_value_ = step.observation;
    return step;
  }

 private:
  CalculatorConfig config_;
  std::unique_ptr<reward::Reward> reward_;  // one per episode: rewards are not thread-safe
  EnvItem item_;
  std::string last_value_;  // the last call's value (what the reference agent answers)
};

class CalculatorFactory : public EnvironmentFactory {
 public:
  explicit CalculatorFactory(CalculatorConfig config) : config_(std::move(config)) {}
  std::string Name() const override { return "calculator"; }
  std::unique_ptr<Environment> Make() override { return std::make_unique<Calculator>(config_); }

 private:
  const CalculatorConfig config_;
};

}  // namespace

CalculatorConfig CalculatorConfig::FromJson(const Json& j, const std::string& path) {
  CalculatorConfig c;
  ConfigReader r(j, path);
  r.Read("call_format", &c.call_format, {"json", "expression"},
         "json: {\"name\", \"arguments\": {\"expression\"}} between the tags; expression: the bare expression");
  r.Read("call_open", &c.call_open, {}, "the tag that opens a tool call");
  r.Read("call_close", &c.call_close, {}, "the tag that closes it");
  r.Read("tool_name", &c.tool_name, {}, "the tool's name in a json call");
  c.reward.path = r.PathOf("reward");
  if (r.Has("reward")) c.reward = reward::RewardSpec::FromJson(r.Raw("reward"), r.PathOf("reward"));  // checked now
  r.Finish();
  LLAMARL_CHECK(!c.call_open.empty() && !c.call_close.empty(), r.PathOf("call_open"),
                ": the call tags must not be empty, got '", c.call_open, "' and '", c.call_close, "'");
  return c;
}

std::string EvaluateCalculatorCall(const CalculatorConfig& config, const std::string& call, Json* info) {
  std::string error, expression = call;
  if (config.call_format == "json") expression = JsonExpression(config, call, &error);
  if (error.empty()) {
    reward::EvaluatedExpression e = reward::EvaluateExpression(expression);
    if (e.value) {
      *info = Json{{"expression", expression}, {"value", e.value->ToString()}};
      return e.value->ToString();
    }
    error = "cannot evaluate '" + Clip(expression) + "': " + e.error;
  }
  *info = Json{{"error", error}};
  return "error: " + error;
}

std::unique_ptr<EnvironmentFactory> MakeCalculatorFactory(const CalculatorConfig& config) {
  return std::make_unique<CalculatorFactory>(config);
}

}  // namespace llamarl::env
