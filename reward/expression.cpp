#include "reward/expression.h"

#include <cctype>
#include <cstdlib>
#include <numeric>

namespace llamarl::reward {
namespace {

// Expressions are short; this bounds the recursion depth (and the stack) on hostile input.
constexpr int kMaxDepth = 64;

struct EvalError {
  std::string message;
};

std::optional<Rational> Normalize(__int128 num, __int128 den) {
  if (den < 0) {
    num = -num;
    den = -den;
  }
  __int128 a = num < 0 ? -num : num, b = den;
  while (b != 0) {
    __int128 t = a % b;
    a = b;
    b = t;
  }
  if (a > 1) {
    num /= a;
    den /= a;
  }
  if (num > INT64_MAX || num < -INT64_MAX || den > INT64_MAX) return std::nullopt;
  return Rational{static_cast<int64_t>(num), static_cast<int64_t>(den)};
}

class Parser {
 public:
  explicit Parser(std::string_view text) : text_(text) {}

  Rational Parse(std::vector<int64_t>* operands) {
    operands_ = operands;
    Rational value = Sum(0);
    SkipSpace();
    if (pos_ < text_.size()) Fail("unexpected '" + std::string(1, text_[pos_]) + "'");
    return value;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) { throw EvalError{what + " at " + std::to_string(pos_)}; }
  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) ++pos_;
  }
  Rational Combine(const Rational& a, char op, const Rational& b) {
    __int128 n = 0, d = 1;
    if (op == '+' || op == '-') {
      n = __int128(a.num) * b.den + (op == '+' ? 1 : -1) * __int128(b.num) * a.den;
      d = __int128(a.den) * b.den;
    } else if (op == '*') {
      n = __int128(a.num) * b.num;
      d = __int128(a.den) * b.den;
    } else {
      if (b.num == 0) throw EvalError{"division by zero"};
      n = __int128(a.num) * b.den;
      d = __int128(a.den) * b.num;
    }
    std::optional<Rational> r = Normalize(n, d);
    if (!r) throw EvalError{"overflow"};
    return *r;
  }
  Rational Sum(int depth) {
    Rational value = Product(depth);
    for (SkipSpace(); pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-'); SkipSpace()) {
      char op = text_[pos_++];
      value = Combine(value, op, Product(depth));
    }
    return value;
  }
  Rational Product(int depth) {
    Rational value = Atom(depth);
    for (SkipSpace(); pos_ < text_.size() && IsTimesOrDivide(); SkipSpace()) {
      char op = text_[pos_++];
      value = Combine(value, op, Atom(depth));
    }
    return value;
  }
  bool IsTimesOrDivide() const {
    char c = text_[pos_];
    return c == '*' || c == '/';
  }
  Rational Atom(int depth) {
    SkipSpace();
    if (pos_ >= text_.size()) Fail("unexpected end");
    char c = text_[pos_];
    if (c == '(') {
      if (depth >= kMaxDepth) Fail("parentheses nested too deeply");
      ++pos_;
      Rational value = Sum(depth + 1);
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ')') Fail("expected ')'");
      ++pos_;
      return value;
    }
    if (!std::isdigit(static_cast<unsigned char>(c))) Fail("unexpected '" + std::string(1, c) + "'");
    __int128 v = 0;
    while (pos_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[pos_]))) {
      v = v * 10 + (text_[pos_++] - '0');
      if (v > INT64_MAX) throw EvalError{"number too large"};
    }
    operands_->push_back(static_cast<int64_t>(v));
    return Rational{static_cast<int64_t>(v), 1};
  }

  std::string_view text_;
  size_t pos_ = 0;
  std::vector<int64_t>* operands_ = nullptr;
};

}  // namespace

std::string Rational::ToString() const {
  return den == 1 ? std::to_string(num) : std::to_string(num) + "/" + std::to_string(den);
}

EvaluatedExpression EvaluateExpression(std::string_view text) {
  EvaluatedExpression out;
  try {
    out.value = Parser(text).Parse(&out.operands);
  } catch (const EvalError& e) {
    out.error = e.message;
    out.value.reset();
  }
  return out;
}

}  // namespace llamarl::reward
