#include "controller/length_histogram.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace llamarl::controller {

void LengthHistogram::Add(int64_t length) {
  LLAMARL_CHECK(length >= 0, "response length must be >= 0, got ", length);
  if (size_t(length) >= counts_.size()) counts_.resize(size_t(length) + 1, 0);
  ++counts_[size_t(length)];
  ++count_;
}

void LengthHistogram::Merge(const LengthHistogram& other) {
  if (other.counts_.size() > counts_.size()) counts_.resize(other.counts_.size(), 0);
  for (size_t i = 0; i < other.counts_.size(); ++i) counts_[i] += other.counts_[i];
  count_ += other.count_;
}

double LengthHistogram::Mean() const {
  if (count_ == 0) return 0.0;
  double sum = 0;
  for (size_t i = 0; i < counts_.size(); ++i) sum += double(i) * double(counts_[i]);
  return sum / double(count_);
}

int64_t LengthHistogram::Percentile(double p) const {
  LLAMARL_CHECK(p > 0 && p <= 100, "percentile must lie in (0, 100], got ", p);
  if (count_ == 0) return 0;
  // Nearest rank: the rank-th smallest sample, rank = ceil(p/100 * n) (at least 1).
  const int64_t rank = std::max<int64_t>(1, int64_t(std::ceil(p / 100.0 * double(count_) - 1e-9)));
  int64_t seen = 0;
  for (size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= rank) return int64_t(i);
  }
  LLAMARL_ASSERT(false, "histogram counts (", seen, ") disagree with its total (", count_, ")");
  return 0;
}

int64_t LengthHistogram::Max() const {
  for (size_t i = counts_.size(); i > 0; --i)
    if (counts_[i - 1] > 0) return int64_t(i - 1);
  return 0;
}

Json LengthHistogram::ToJson() const { return Json(counts_); }

LengthHistogram LengthHistogram::FromJson(const Json& counts, const std::string& what) {
  LLAMARL_CHECK(counts.is_array(), what, ": expected an array of counts per length, got ", counts.dump());
  LengthHistogram h;
  h.counts_.reserve(counts.size());
  for (size_t i = 0; i < counts.size(); ++i) {
    const Json& c = counts[i];
    LLAMARL_CHECK(c.is_number_integer() && c.get<int64_t>() >= 0, what, "[", i,
                  "]: expected a count >= 0, got ", c.dump());
    h.counts_.push_back(c.get<int64_t>());
    h.count_ += h.counts_.back();
  }
  return h;
}

Json LengthHistogram::Stats() const {
  return {{"count", count_}, {"mean", Mean()}, {"p50", Percentile(50)}, {"p90", Percentile(90)},
          {"p99", Percentile(99)}, {"max", Max()}};
}

}  // namespace llamarl::controller
