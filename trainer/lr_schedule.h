// Learning-rate schedule: linear warm-up from lr/warmup_steps to lr, then constant or cosine decay
// to lr * min_lr_ratio at total_steps (held there afterwards). Stateless: the value is a function of
// the optimizer step, which is what a checkpoint stores.
#pragma once

#include "core/config.h"

#include <cstdint>
#include <string>

namespace llamarl {

struct LrScheduleConfig {
  int64_t warmup_steps = 0;
  std::string kind = "constant";  // constant | cosine
  int64_t total_steps = 0;        // cosine: the step at which the decay ends (> warmup_steps)
  double min_lr_ratio = 0.0;      // cosine floor as a fraction of the peak lr
  static LrScheduleConfig FromJson(const Json& j, const std::string& path);
};

// lr at 0-based optimizer step `step`:
//   step < warmup:  peak * (step + 1) / warmup
//   constant:       peak
//   cosine:         peak * (m + (1 - m) * 0.5 * (1 + cos(pi * p))),  p = min(1, (step - warmup) / (total - warmup))
double LearningRateAt(const LrScheduleConfig& config, double peak_lr, int64_t step);

}  // namespace llamarl
