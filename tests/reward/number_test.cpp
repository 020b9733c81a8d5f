#include "reward/number.h"

#include <gtest/gtest.h>

namespace llamarl::reward {
namespace {

std::vector<double> Values(const std::string& text) {
  std::vector<double> out;
  for (const ParsedNumber& n : FindNumbers(text)) out.push_back(n.value);
  return out;
}

TEST(FindNumbers, ThousandsSeparatorsNeedThreeDigits) {
  EXPECT_EQ(Values("1,234 and 1,234,567"), (std::vector<double>{1234, 1234567}));
  EXPECT_EQ(Values("1,2,3"), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(Values("1,2345"), (std::vector<double>{1, 2345}));
  EXPECT_EQ(Values("list: 10, 20, 30."), (std::vector<double>{10, 20, 30}));
}

TEST(FindNumbers, SignsOnlyWhereTheyAreNotOperators) {
  EXPECT_EQ(Values("16-3-4=9"), (std::vector<double>{16, 3, 4, 9}));
  EXPECT_EQ(Values("it is -3"), (std::vector<double>{-3}));
  EXPECT_EQ(Values("(-2) and x-1 and +5"), (std::vector<double>{-2, 1, 5}));
  EXPECT_EQ(Values("\xE2\x88\x92"
                   "7"),
            (std::vector<double>{-7}));  // U+2212 minus
  EXPECT_EQ(Values("(3)-2"), (std::vector<double>{3, 2}));
}

TEST(FindNumbers, CurrencyAndDecimals) {
  std::vector<ParsedNumber> n = FindNumbers(
      "costs $1,234.50, or -$3 or $-4, \xE2\x82\xAC"
      "5");
  ASSERT_EQ(n.size(), 4u);
  EXPECT_DOUBLE_EQ(n[0].value, 1234.5);
  EXPECT_EQ(n[0].text, "$1,234.50");
  EXPECT_FALSE(n[0].integer.has_value());
  EXPECT_EQ(n[1].value, -3);
  EXPECT_EQ(n[1].text, "-$3");
  EXPECT_EQ(n[2].value, -4);
  EXPECT_EQ(n[3].value, 5);
  EXPECT_EQ(n[3].text,
            "\xE2\x82\xAC"
            "5");
}

TEST(FindNumbers, TrailingPeriodIsNotADecimalPoint) {
  std::vector<ParsedNumber> n = FindNumbers("The answer is 3.");
  ASSERT_EQ(n.size(), 1u);
  EXPECT_EQ(n[0].text, "3");
  EXPECT_EQ(n[0].integer, 3);
}

TEST(FindNumbers, FractionsAndIntegralDecimals) {
  std::vector<ParsedNumber> n = FindNumbers("1/2 then 4/2 then 5.00 then 3/0 then .25");
  ASSERT_EQ(n.size(), 6u);
  EXPECT_DOUBLE_EQ(n[0].value, 0.5);
  EXPECT_FALSE(n[0].integer.has_value());
  EXPECT_EQ(n[1].integer, 2);
  EXPECT_EQ(n[2].integer, 5);
  EXPECT_EQ(n[3].value, 3);  // "3/0" is no fraction: 3, then 0
  EXPECT_EQ(n[4].value, 0);
  EXPECT_DOUBLE_EQ(n[5].value, 0.25);
}

TEST(ParseNumber, WholeTextMustBeOneNumber) {
  EXPECT_DOUBLE_EQ(ParseNumber(" $1,234.50 ")->value, 1234.5);
  EXPECT_EQ(ParseNumber("-3")->integer, -3);
  EXPECT_EQ(ParseNumber("3.")->integer, 3);
  EXPECT_EQ(ParseNumber("45%")->integer, 45);
  EXPECT_DOUBLE_EQ(ParseNumber("1/2")->value, 0.5);
  EXPECT_EQ(ParseNumber("5.00")->integer, 5);
  EXPECT_FALSE(ParseNumber("3 apples").has_value());
  EXPECT_FALSE(ParseNumber("").has_value());
  EXPECT_FALSE(ParseNumber("1 2").has_value());
  EXPECT_FALSE(ParseNumber("abc").has_value());
}

TEST(NumbersMatch, RelativeToleranceAboveOne) {
  EXPECT_TRUE(NumbersMatch(5.0, 5.0, 0));
  EXPECT_TRUE(NumbersMatch(0.3333333, 1.0 / 3, 1e-6));
  EXPECT_FALSE(NumbersMatch(0.333, 1.0 / 3, 1e-6));
  EXPECT_TRUE(NumbersMatch(1e9 + 1, 1e9, 1e-6));
  EXPECT_FALSE(NumbersMatch(1e9 + 1, 1e9, 0));
}

TEST(FormatNumber, IntegersWithoutPoint) {
  EXPECT_EQ(FormatNumber(1234), "1234");
  EXPECT_EQ(FormatNumber(-3), "-3");
  EXPECT_EQ(FormatNumber(0.5), "0.5");
}

}  // namespace
}  // namespace llamarl::reward
