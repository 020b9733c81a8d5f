// Finding and normalising the numbers a model writes: "1,234", "-3", "5.00", "$1,234.50", "3.",
// "1/2", "−7" (U+2212). Used by the gsm8k and arithmetic rewards.
//
// Rules (why: these are the forms GSM8K solutions and model answers take):
//   - thousands separators are commas followed by exactly three digits ("1,234,567"; "1,2" is two
//     numbers);
//   - a decimal point counts only when a digit follows, so a sentence's final period is dropped
//     ("is 3." -> 3);
//   - "a/b" (no decimal point, b != 0) is a fraction;
//   - a leading '-', '+' or U+2212 is a sign only when it does not follow a letter, digit or closing
//     bracket ("16-3" is 16 and 3, "is -3" is -3);
//   - currency signs ($, €, £, ¥) before the digits are skipped, on either side of the sign.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llamarl::reward {

struct ParsedNumber {
  double value = 0;
  // Set when the value is an integer that fits int64 ("5.00" and "4/2" count), for exact checks.
  std::optional<int64_t> integer;
  size_t begin = 0, end = 0;  // byte range in the scanned text, sign and currency included
  std::string text;           // that range, as written
};

// Every number in `text`, in order of appearance.
std::vector<ParsedNumber> FindNumbers(std::string_view text);

// `text` (surrounding whitespace, a trailing '.', and a trailing '%' ignored) as exactly one number,
// or nullopt when it is anything else.
std::optional<ParsedNumber> ParseNumber(std::string_view text);

// True when `got` equals `want` within `relative_tolerance` * max(1, |want|).
bool NumbersMatch(double got, double want, double relative_tolerance);

// The number as a short canonical string: integers without a decimal point ("1234"), others with up
// to 12 significant digits ("0.5").
std::string FormatNumber(double value);

}  // namespace llamarl::reward
