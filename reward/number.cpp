#include "reward/number.h"

#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace llamarl::reward {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

// Length of a currency sign ending right before `pos`, or 0.
size_t CurrencyBefore(std::string_view text, size_t pos) {
  static const std::string_view kSigns[] = {"$", "\xE2\x82\xAC" /*€*/, "\xC2\xA3" /*£*/, "\xC2\xA5" /*¥*/};
  for (std::string_view sign : kSigns) {
    if (pos >= sign.size() && text.substr(pos - sign.size(), sign.size()) == sign) return sign.size();
  }
  return 0;
}

// Length of a sign ending right before `pos` that is a sign (not a binary operator), or 0.
// *negative is set for '-' and U+2212.
size_t SignBefore(std::string_view text, size_t pos, bool* negative) {
  size_t len = 0;
  bool minus = false;
  if (pos >= 1 && (text[pos - 1] == '-' || text[pos - 1] == '+')) {
    len = 1;
    minus = text[pos - 1] == '-';
  } else if (pos >= 3 && text.substr(pos - 3, 3) == "\xE2\x88\x92") {
    len = 3;
    minus = true;
  }
  if (len == 0) return 0;
  if (pos > len) {
    char before = text[pos - len - 1];
    if (IsAlnum(before) || before == ')' || before == ']' || before == '}') return 0;
  }
  *negative = minus;
  return len;
}

// Scans the digits of a number starting at `start` (a digit, or '.' followed by a digit). Fills
// the cleaned numerator/denominator strings; returns the end offset.
size_t ScanDigits(std::string_view text, size_t start, std::string* mantissa, std::string* denominator) {
  size_t i = start;
  while (i < text.size() && IsDigit(text[i])) mantissa->push_back(text[i++]);
  // Thousands groups: ",ddd" not followed by another digit.
  while (i + 3 < text.size() && text[i] == ',' && IsDigit(text[i + 1]) && IsDigit(text[i + 2]) &&
         IsDigit(text[i + 3]) && (i + 4 >= text.size() || !IsDigit(text[i + 4])) && i > start) {
    mantissa->append(text.substr(i + 1, 3));
    i += 4;
  }
  bool has_point = false;
  if (i + 1 < text.size() && text[i] == '.' && IsDigit(text[i + 1])) {
    has_point = true;
    mantissa->push_back('.');
    ++i;
    while (i < text.size() && IsDigit(text[i])) mantissa->push_back(text[i++]);
  }
  if (!has_point && i + 1 < text.size() && text[i] == '/' && IsDigit(text[i + 1])) {
    size_t j = i + 1;
    std::string den;
    while (j < text.size() && IsDigit(text[j])) den.push_back(text[j++]);
    // A zero denominator is no fraction: "3/0" stays the number 3 followed by text.
    if (std::strtod(den.c_str(), nullptr) != 0) {
      *denominator = den;
      i = j;
    }
  }
  return i;
}

ParsedNumber MakeNumber(std::string_view text, size_t begin, size_t end, bool negative,
                        const std::string& mantissa, const std::string& denominator) {
  ParsedNumber n;
  n.begin = begin;
  n.end = end;
  n.text = std::string(text.substr(begin, end - begin));
  double value = std::strtod(mantissa.c_str(), nullptr);
  if (!denominator.empty()) value /= std::strtod(denominator.c_str(), nullptr);
  n.value = negative ? -value : value;
  if (std::isfinite(n.value) && n.value == std::floor(n.value) && std::fabs(n.value) < 9.0e15) {
    n.integer = static_cast<int64_t>(n.value);
  }
  return n;
}

}  // namespace

std::vector<ParsedNumber> FindNumbers(std::string_view text) {
  std::vector<ParsedNumber> numbers;
  size_t i = 0;
  while (i < text.size()) {
    bool starts = IsDigit(text[i]) || (text[i] == '.' && i + 1 < text.size() && IsDigit(text[i + 1]));
    if (!starts || (i > 0 && IsDigit(text[i - 1]))) {
      ++i;
      continue;
    }
    std::string mantissa = text[i] == '.' ? "0" : "", denominator;
    size_t end = ScanDigits(text, i, &mantissa, &denominator);
    size_t begin = i;
    bool negative = false;
    // "-$3" and "$-3" are both -3.
    size_t sign = SignBefore(text, begin, &negative);
    begin -= sign;
    if (size_t cur = CurrencyBefore(text, begin)) {
      begin -= cur;
      if (!sign) begin -= SignBefore(text, begin, &negative);
    }
    numbers.push_back(MakeNumber(text, begin, end, negative, mantissa, denominator));
    i = end;
  }
  return numbers;
}

std::optional<ParsedNumber> ParseNumber(std::string_view text) {
  size_t b = 0, e = text.size();
  while (b < e && std::isspace(static_cast<unsigned char>(text[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(text[e - 1]))) --e;
  if (e > b && text[e - 1] == '.') --e;
  if (e > b && text[e - 1] == '%') --e;
  std::string_view body = text.substr(b, e - b);
  std::vector<ParsedNumber> numbers = FindNumbers(body);
  if (numbers.size() != 1 || numbers[0].begin != 0 || numbers[0].end != body.size()) return std::nullopt;
  return numbers[0];
}

bool NumbersMatch(double got, double want, double relative_tolerance) {
  if (got == want) return true;
  return std::fabs(got - want) <= relative_tolerance * std::fmax(1.0, std::fabs(want));
}

std::string FormatNumber(double value) {
  char buffer[64];
  if (value == std::floor(value) && std::fabs(value) < 9.0e15) {
    std::snprintf(buffer, sizeof buffer, "%lld", static_cast<long long>(value));
  } else {
    std::snprintf(buffer, sizeof buffer, "%.12g", value);
  }
  return buffer;
}

}  // namespace llamarl::reward
