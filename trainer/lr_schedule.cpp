#include "trainer/lr_schedule.h"

#include "core/check.h"

#include <algorithm>
#include <cmath>

namespace llamarl {

LrScheduleConfig LrScheduleConfig::FromJson(const Json& j, const std::string& path) {
  LrScheduleConfig c;
  ConfigReader r(j, path);
  r.Read("warmup_steps", &c.warmup_steps, Range::AtLeast(0), "linear warm-up steps");
  r.Read("kind", &c.kind, {"constant", "cosine"}, "shape after the warm-up");
  r.Read("total_steps", &c.total_steps, Range::AtLeast(0), "cosine: step at which the decay ends");
  r.Read("min_lr_ratio", &c.min_lr_ratio, Range::Closed(0, 1), "cosine floor as a fraction of lr");
  r.Finish();
  LLAMARL_CHECK(c.kind != "cosine" || c.total_steps > c.warmup_steps, r.PathOf("total_steps"), " (",
                c.total_steps, ") must exceed warmup_steps (", c.warmup_steps,
                ") for a cosine schedule; set it to the planned number of optimizer steps");
  return c;
}

double LearningRateAt(const LrScheduleConfig& config, double peak_lr, int64_t step) {
  LLAMARL_CHECK(step >= 0, "learning-rate step must be >= 0, got ", step);
  if (step < config.warmup_steps) return peak_lr * double(step + 1) / double(config.warmup_steps);
  if (config.kind == "constant") return peak_lr;
  const double progress = std::min(
      1.0, double(step - config.warmup_steps) / double(std::max<int64_t>(1, config.total_steps - config.warmup_steps)));
  const double m = config.min_lr_ratio;
  return peak_lr * (m + (1.0 - m) * 0.5 * (1.0 + std::cos(M_PI * progress)));
}

}  // namespace llamarl
