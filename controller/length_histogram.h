// Counts of generated response lengths (tokens per sample), to show the long tail that makes
// synchronous RL batches wait: a generator fills one per run and reports it in its summary; the
// async bench merges the replicas' histograms and prints count, mean, p50, p90, p99 and max.
//
// Counts (not the lengths themselves) so that replicas merge exactly and the summary stays small:
// index i of the JSON array is the number of samples of length i.
//
// LibTorch-free; not thread-safe (one per generator loop).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"

namespace llamarl::controller {

class LengthHistogram {
 public:
  void Add(int64_t length);  // length >= 0
  void Merge(const LengthHistogram& other);

  int64_t Count() const { return count_; }
  double Mean() const;
  // Nearest-rank percentile (the smallest length with at least p% of the samples at or below it),
  // p in (0, 100]; 0 when empty.
  int64_t Percentile(double p) const;
  int64_t Max() const;

  Json ToJson() const;  // the counts array
  // `what` names the source in errors (e.g. "summary.json generators[0].response_lengths").
  static LengthHistogram FromJson(const Json& counts, const std::string& what);
  // {"count", "mean", "p50", "p90", "p99", "max"}.
  Json Stats() const;

 private:
  std::vector<int64_t> counts_;  // counts_[i]: samples of length i
  int64_t count_ = 0;
};

}  // namespace llamarl::controller
