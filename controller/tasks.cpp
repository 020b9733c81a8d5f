#include "controller/tasks.h"

#include "controller/dataset_random.h"
#include "core/check.h"
#include "reward/countdown.h"
#include "reward/expression.h"

namespace llamarl::controller {
namespace {

std::string Join(const std::vector<int64_t>& values, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < values.size(); ++i) out += (i ? separator : "") + std::to_string(values[i]);
  return out;
}

int64_t Apply(int64_t a, char op, int64_t b) {
  return op == '+' ? a + b : op == '-' ? a - b : op == '*' ? a * b : a / b;
}

int64_t DrawOperand(std::mt19937_64& rng, const ArithmeticTaskConfig& c) {
  int digits = int(DrawBetween(rng, c.min_digits, c.max_digits));
  int64_t lo = 1, hi = 10;
  for (int d = 1; d < digits; ++d) lo *= 10;
  hi = lo * 10 - 1;
  return DrawBetween(rng, digits == 1 ? 0 : lo, hi);
}

// Reduces values/ops with the usual precedence, one step per line ("5 * 3 = 15"); returns the value.
int64_t ReduceWithSteps(std::vector<int64_t> values, std::vector<char> ops, std::string* steps) {
  for (bool products : {true, false}) {
    for (size_t i = 0; i < ops.size();) {
      if (products != (ops[i] == '*')) {
        ++i;
        continue;
      }
      int64_t result = Apply(values[i], ops[i], values[i + 1]);
      *steps += std::to_string(values[i]) + " " + ops[i] + " " + std::to_string(values[i + 1]) + " = " +
                std::to_string(result) + "\n";
      values[i] = result;
      values.erase(values.begin() + long(i) + 1);
      ops.erase(ops.begin() + long(i));
    }
  }
  return values[0];
}

DatasetItem MakeArithmeticItem(std::mt19937_64& rng, const ArithmeticTaskConfig& c) {
  int num_operands = c.min_operands;
  if (c.operand_tail == 0) {
    num_operands = int(DrawBetween(rng, c.min_operands, c.max_operands));
  } else {
    while (num_operands < c.max_operands && DrawUnit(rng) < c.operand_tail) ++num_operands;
  }
  std::vector<int64_t> values;
  std::vector<char> ops;
  std::string expression;
  for (int i = 0; i < num_operands; ++i) {
    if (i > 0) {
      ops.push_back(c.operators[DrawBelow(rng, c.operators.size())]);
      expression += std::string(" ") + ops.back() + " ";
    }
    values.push_back(DrawOperand(rng, c));
    expression += std::to_string(values.back());
  }
  bool steps = DrawUnit(rng) < c.steps_fraction;
  std::string work;
  int64_t target = ReduceWithSteps(values, ops, &work);
  reward::EvaluatedExpression check = reward::EvaluateExpression(expression);
  LLAMARL_ASSERT(check.value && *check.value == (reward::Rational{target, 1}), "step reduction of '",
                 expression, "' gave ", target, " but the evaluator ",
                 check.value ? check.value->ToString() : check.error);
  DatasetItem item;
  item.question = (steps ? "Show your steps. " : "") + expression + " =";
  item.answer = {
      {"target", target}, {"expression", expression}, {"steps", steps}, {"num_operands", num_operands}};
  item.reference_response = steps ? work + "#### " + std::to_string(target) : std::to_string(target);
  return item;
}

struct Term {
  int64_t value;
  std::string text;  // parenthesised when compound and used as an operand
  bool compound;
};

// Combines two random terms with a random operation that keeps results positive integers.
void CombineTwo(std::mt19937_64& rng, std::vector<Term>* pool, std::string* steps) {
  size_t i = DrawBelow(rng, pool->size());
  size_t j = DrawBelow(rng, pool->size() - 1);
  if (j >= i) ++j;
  Term a = (*pool)[i], b = (*pool)[j];
  std::string ops = "+-*/";
  for (size_t k = ops.size(); k > 1; --k) std::swap(ops[k - 1], ops[DrawBelow(rng, k)]);
  char op = '+';
  for (char candidate : ops) {
    bool ok = candidate == '+' || candidate == '*' || (candidate == '-' && a.value > b.value) ||
              (candidate == '/' && b.value > 1 && a.value % b.value == 0);
    if (ok) {
      op = candidate;
      break;
    }
  }
  int64_t value = Apply(a.value, op, b.value);
  *steps += std::to_string(a.value) + " " + op + " " + std::to_string(b.value) + " = " +
            std::to_string(value) + "\n";
  auto wrap = [](const Term& t) { return t.compound ? "(" + t.text + ")" : t.text; };
  Term combined{value, wrap(a) + " " + op + " " + wrap(b), true};
  pool->erase(pool->begin() + long(std::max(i, j)));
  pool->erase(pool->begin() + long(std::min(i, j)));
  pool->push_back(combined);
}

std::optional<DatasetItem> TryCountdownItem(std::mt19937_64& rng, const CountdownTaskConfig& c) {
  int k = int(DrawBetween(rng, c.min_numbers, c.max_numbers));
  std::vector<int64_t> numbers;
  std::vector<Term> pool;
  for (int i = 0; i < k; ++i) {
    numbers.push_back(DrawBetween(rng, 1, c.max_number));
    pool.push_back({numbers.back(), std::to_string(numbers.back()), false});
  }
  int combines = c.use_all_numbers ? k - 1 : int(DrawBetween(rng, 1, k - 1));
  std::string work;
  for (int s = 0; s < combines; ++s) CombineTwo(rng, &pool, &work);
  const Term& solution = pool.back();
  bool steps = DrawUnit(rng) < c.steps_fraction;
  if (solution.value < 1 || solution.value > c.max_target) return std::nullopt;
  reward::CountdownTask task{numbers, solution.value};
  LLAMARL_ASSERT(reward::CheckCountdown(solution.text, task, c.use_all_numbers).correct,
                 "generated countdown solution '", solution.text, "' does not check");
  DatasetItem item;
  item.question = std::string(steps ? "Show your steps. " : "") + "Using the numbers [" +
                  Join(numbers, ", ") + "], create an expression that equals " +
                  std::to_string(solution.value) + ". Use + - * / and parentheses, and each number " +
                  (c.use_all_numbers ? "exactly once" : "at most once") +
                  ". Put the expression in <answer></answer>.";
  item.answer = {{"numbers", numbers}, {"target", solution.value}};
  item.reference_response = (steps ? work : "") + "<answer>" + solution.text + "</answer>";
  return item;
}

// The fields every generated task shares.
void ReadCountAndSeed(ConfigReader& r, int64_t* num_items, int64_t* seed) {
  r.Read("num_items", num_items, Range::AtLeast(1), "items generated, eval split included");
  r.Read("seed", seed, {}, "generation seed");
}

void CheckOrdered(const std::string& path, const char* lo_name, int64_t lo, const char* hi_name, int64_t hi) {
  LLAMARL_CHECK(lo <= hi, path, ": ", lo_name, " (", lo, ") must be <= ", hi_name, " (", hi, ")");
}

}  // namespace

ArithmeticTaskConfig ArithmeticTaskConfig::FromJson(const Json& j, const std::string& path) {
  ArithmeticTaskConfig c;
  ConfigReader r(j, path);
  ReadCountAndSeed(r, &c.num_items, &c.seed);
  r.Read("min_operands", &c.min_operands, Range::Closed(2, 64), "fewest operands per task");
  r.Read("max_operands", &c.max_operands, Range::Closed(2, 64), "most operands per task");
  r.Read("operand_tail", &c.operand_tail, Range::ClosedOpen(0, 1),
         "0: operand count uniform; else the chance of each further operand (a geometric tail)");
  r.Read("min_digits", &c.min_digits, Range::Closed(1, 18), "fewest digits per operand");
  r.Read("max_digits", &c.max_digits, Range::Closed(1, 18), "most digits per operand");
  r.Read("operators", &c.operators, {}, "operators drawn from, a subset of \"+-*\"");
  r.Read("steps_fraction", &c.steps_fraction, Range::Closed(0, 1), "fraction of 'show your steps' items");
  r.Finish();
  CheckOrdered(path, "min_operands", c.min_operands, "max_operands", c.max_operands);
  CheckOrdered(path, "min_digits", c.min_digits, "max_digits", c.max_digits);
  LLAMARL_CHECK(!c.operators.empty() && c.operators.find_first_not_of("+-*") == std::string::npos,
                r.PathOf("operators"), ": expected a non-empty subset of \"+-*\", got \"", c.operators, "\"");
  // Worst case |result| < 10^(digits * operands) must stay within int64 (about 9.2e18).
  LLAMARL_CHECK(c.operators.find('*') == std::string::npos || c.max_digits * c.max_operands <= 18, path,
                ": max_digits (", c.max_digits, ") * max_operands (", c.max_operands,
                ") must be <= 18 with '*' so that results fit in 64 bits; lower one of them");
  return c;
}

CountdownTaskConfig CountdownTaskConfig::FromJson(const Json& j, const std::string& path) {
  CountdownTaskConfig c;
  ConfigReader r(j, path);
  ReadCountAndSeed(r, &c.num_items, &c.seed);
  r.Read("min_numbers", &c.min_numbers, Range::Closed(2, 8), "fewest given numbers");
  r.Read("max_numbers", &c.max_numbers, Range::Closed(2, 8), "most given numbers");
  r.Read("max_number", &c.max_number, Range::Closed(1, 1000000), "given numbers lie in [1, max_number]");
  r.Read("max_target", &c.max_target, Range::Closed(1, 1e12), "targets lie in [1, max_target]");
  r.Read("use_all_numbers", &c.use_all_numbers, "solutions use every number exactly once");
  r.Read("steps_fraction", &c.steps_fraction, Range::Closed(0, 1), "fraction of items with written steps");
  r.Finish();
  CheckOrdered(path, "min_numbers", c.min_numbers, "max_numbers", c.max_numbers);
  return c;
}

std::vector<DatasetItem> GenerateArithmeticTasks(const ArithmeticTaskConfig& config,
                                                 const PromptConfig& prompt) {
  std::mt19937_64 rng(MixSeed(uint64_t(config.seed)));
  std::vector<DatasetItem> items;
  for (int64_t i = 0; i < config.num_items; ++i) {
    DatasetItem item = MakeArithmeticItem(rng, config);
    item.id = i;
    item.prompt = FormatPrompt(prompt, item.question);
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<DatasetItem> GenerateCountdownTasks(const CountdownTaskConfig& config,
                                                const PromptConfig& prompt) {
  std::mt19937_64 rng(MixSeed(uint64_t(config.seed)) ^ 0xC0FFEEull);
  std::vector<DatasetItem> items;
  // Draws whose target falls outside [1, max_target] are redrawn; a config that almost never hits
  // the range is an error rather than an endless loop.
  int64_t attempts = 0, max_attempts = 1000 + 1000 * config.num_items;
  while (int64_t(items.size()) < config.num_items) {
    LLAMARL_CHECK(++attempts <= max_attempts, "data.countdown: only ", items.size(), " of ", config.num_items,
                  " tasks had a target in [1, max_target=", config.max_target, "] after ", max_attempts,
                  " draws; raise max_target or lower max_number (", config.max_number, ")");
    std::optional<DatasetItem> item = TryCountdownItem(rng, config);
    if (!item) continue;
    item->id = int64_t(items.size());
    item->prompt = FormatPrompt(prompt, item->question);
    items.push_back(std::move(*item));
  }
  return items;
}

}  // namespace llamarl::controller
