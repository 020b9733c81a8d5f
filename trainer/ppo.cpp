#include "trainer/ppo.h"

#include "core/check.h"

#include <ATen/ATen.h>

namespace llamarl {

PpoConfig PpoConfig::FromJson(const Json& j, const std::string& path) {
  PpoConfig c;
  ConfigReader r(j, path);
  r.Read("gamma", &c.gamma, Range::Closed(0, 1), "GAE discount");
  r.Read("lambda", &c.lambda, Range::Closed(0, 1), "GAE lambda");
  r.Read("value_clip", &c.value_clip, Range::AtLeast(0), "clip of V - V_old in the value loss; 0 = off");
  r.Read("value_coef", &c.value_coef, Range::AtLeast(0), "weight of the value loss");
  r.Read("whiten_advantages", &c.whiten_advantages, "whiten GAE advantages over the global batch");
  r.Finish();
  return c;
}

at::Tensor ValueTokenLoss(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                          double value_clip) {
  LLAMARL_CHECK(values.sizes() == old_values.sizes() && values.sizes() == returns.sizes(),
                "values, old values and returns must have one shape, got ", values.sizes(), ", ", old_values.sizes(),
                ", ", returns.sizes());
  at::Tensor unclipped = at::pow(values - returns, 2);
  if (value_clip <= 0) return 0.5 * unclipped;
  at::Tensor clipped_values = old_values + at::clamp(values - old_values, -value_clip, value_clip);
  return 0.5 * at::max(unclipped, at::pow(clipped_values - returns, 2));
}

at::Tensor ValueClipped(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                        double value_clip) {
  at::NoGradGuard no_grad;
  if (value_clip <= 0) return at::zeros(values.sizes(), values.options().dtype(at::kBool));
  at::Tensor clipped_values = old_values + at::clamp(values - old_values, -value_clip, value_clip);
  return at::gt(at::pow(clipped_values - returns, 2), at::pow(values - returns, 2));
}

}  // namespace llamarl
