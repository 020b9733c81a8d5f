// PPO with a critic: a value head (a [1, D] linear map, with bias) on the policy trunk's final-norm
// hidden states predicts V_t for every response token. Per-token rewards are 0 except the sample's
// reward on its last token (minus coef * k1_t per token when the KL is folded into the reward);
// advantages come from GAE(gamma, lambda) (trainer/advantages.h), optionally whitened over the global
// batch; the policy loss is the clipped surrogate with ratio pi/mu, and the value loss is clipped:
//   l^V_t = 0.5 * max((V_t - R_t)^2, (V_old_t + clip(V_t - V_old_t, -c, c) - R_t)^2)
// V_old are the values before the update (one pass under no_grad at the start of the step). V_t comes
// from the head on the policy trunk or from a separate critic (trainer/critic.h); in the latter, the
// critic minimises l^V_t alone (value_coef does not apply).
#pragma once

#include "core/config.h"

#include <ATen/core/Tensor.h>

namespace llamarl {

struct PpoConfig {
  double gamma = 1.0;
  double lambda = 0.95;
  double value_clip = 0.2;         // c; 0 = no value clipping
  double value_coef = 0.5;         // loss += value_coef * l^V_t
  bool whiten_advantages = true;
  static PpoConfig FromJson(const Json& j, const std::string& path);
};

at::Tensor ValueTokenLoss(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                          double value_clip);
// Per token, whether the clipped term is the larger one (verl's vf_clipfrac counts these; the
// gradient then flows through the clipped value, i.e. not at all when the clip binds). All false
// when value_clip is 0.
at::Tensor ValueClipped(const at::Tensor& values, const at::Tensor& old_values, const at::Tensor& returns,
                        double value_clip);

}  // namespace llamarl
