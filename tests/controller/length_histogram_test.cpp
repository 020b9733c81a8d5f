// LengthHistogram: statistics worked by hand, exact merging of replicas, and the JSON round trip.
#include "controller/length_histogram.h"

#include <gtest/gtest.h>

#include "core/check.h"

namespace llamarl::controller {
namespace {

LengthHistogram Of(const std::vector<int64_t>& lengths) {
  LengthHistogram h;
  for (int64_t n : lengths) h.Add(n);
  return h;
}

TEST(LengthHistogramTest, LongTailStatisticsByHand) {
  // Nine short answers and one long one: sorted 2 2 2 3 3 3 3 4 4 90.
  LengthHistogram h = Of({3, 2, 90, 3, 4, 2, 3, 4, 2, 3});
  EXPECT_EQ(h.Count(), 10);
  EXPECT_DOUBLE_EQ(h.Mean(), 116.0 / 10.0);
  EXPECT_EQ(h.Percentile(50), 3);   // rank 5
  EXPECT_EQ(h.Percentile(90), 4);   // rank 9
  EXPECT_EQ(h.Percentile(91), 90);  // rank ceil(9.1) = 10
  EXPECT_EQ(h.Percentile(100), 90);
  EXPECT_EQ(h.Max(), 90);
  EXPECT_EQ(h.Percentile(10), 2);  // rank 1
}

TEST(LengthHistogramTest, EmptyIsAllZero) {
  LengthHistogram h;
  EXPECT_EQ(h.Count(), 0);
  EXPECT_EQ(h.Mean(), 0.0);
  EXPECT_EQ(h.Percentile(50), 0);
  EXPECT_EQ(h.Max(), 0);
  EXPECT_EQ(h.Stats()["count"], 0);
}

TEST(LengthHistogramTest, MergeEqualsOneHistogramOfAllSamples) {
  LengthHistogram a = Of({1, 7, 7}), b = Of({0, 30});
  a.Merge(b);
  LengthHistogram all = Of({1, 7, 7, 0, 30});
  EXPECT_EQ(a.ToJson(), all.ToJson());
  EXPECT_EQ(a.Stats(), all.Stats());
  EXPECT_EQ(a.Percentile(50), 7);
  EXPECT_EQ(a.Max(), 30);
}

TEST(LengthHistogramTest, JsonRoundTripKeepsCounts) {
  LengthHistogram h = Of({5, 0, 5, 2});
  EXPECT_EQ(h.ToJson(), Json({1, 0, 1, 0, 0, 2}));
  LengthHistogram back = LengthHistogram::FromJson(h.ToJson(), "summary");
  EXPECT_EQ(back.Stats(), h.Stats());
}

TEST(LengthHistogramTest, ErrorsNameTheBadValue) {
  LengthHistogram h;
  try {
    h.Add(-1);
    FAIL() << "negative length accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("-1"), std::string::npos) << e.what();
  }
  EXPECT_THROW(h.Percentile(0), Error);
  try {
    LengthHistogram::FromJson(Json({1, -2}), "generators[0].response_lengths");
    FAIL() << "negative count accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("generators[0].response_lengths[1]"), std::string::npos) << what;
    EXPECT_NE(what.find("-2"), std::string::npos) << what;
  }
  EXPECT_THROW(LengthHistogram::FromJson(Json::object(), "x"), Error);
}

}  // namespace
}  // namespace llamarl::controller
