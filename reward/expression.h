// A small, safe arithmetic expression evaluator for the countdown reward (and the generated
// arithmetic tasks): integers, + - * /, parentheses, usual precedence, left associativity; exact
// rational arithmetic on int64 (no floating point, no eval). Unary minus is not accepted: in a
// countdown answer every operand must be one of the given numbers.
//
// Errors are values, not exceptions, because a malformed expression is a wrong response rather
// than a user error: Evaluate returns the error text ("division by zero", "unexpected ')' at 7").
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llamarl::reward {

// num/den in lowest terms with den > 0.
struct Rational {
  int64_t num = 0;
  int64_t den = 1;

  bool IsInteger() const { return den == 1; }
  std::string ToString() const;  // "7", "-3/4"
  friend bool operator==(const Rational& a, const Rational& b) { return a.num == b.num && a.den == b.den; }
};

struct EvaluatedExpression {
  std::optional<Rational> value;  // set when the expression is valid
  std::string error;              // set when it is not
  std::vector<int64_t> operands;  // the integer literals, in order of appearance
};

EvaluatedExpression EvaluateExpression(std::string_view text);

}  // namespace llamarl::reward
