// AdamW over a flat float32 parameter shard, the same arithmetic as torch::optim::AdamW (decoupled
// weight decay p *= 1 - lr*wd first, then the bias-corrected Adam update), so that a ZeRO shard and a
// full parameter update element for element alike. The state is two flat tensors and a step count.
#pragma once

#include "core/config.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace llamarl {

struct AdamWConfig {
  double lr = 1e-6;
  double beta1 = 0.9, beta2 = 0.999;  // JSON: "betas": [beta1, beta2]
  double eps = 1e-8;
  double weight_decay = 0.01;
  static AdamWConfig FromJson(const Json& j, const std::string& path);
};

// Elements per chunk of the whole-shard passes over flat state (FlatAdamW::Step, SumOfSquares): their
// temporaries are one chunk (32 MB in float64), never another shard-sized tensor. For a 0.5B model's
// 494M-element gradient, a float64 copy and its square were 7.9 GB on top of the 7.9 GB of master,
// moments and gradient. A shard of at most one chunk is computed exactly as in one pass.
constexpr int64_t kFlatChunkElements = int64_t(1) << 22;

// sum(flat^2) in float64 (float64 squares, summed chunk by chunk) as a 0-dim tensor on flat's device,
// without a host synchronisation: the squared gradient norm for clipping.
at::Tensor SumOfSquares(const at::Tensor& flat);

class FlatAdamW {
 public:
  // `numel` elements of float32 state, zeroed, on `options`' device.
  FlatAdamW(const AdamWConfig& config, int64_t numel, const at::TensorOptions& options);
  // One update at learning rate `lr` (the schedule's value); `param` and `grad` are [numel] float32.
  void Step(at::Tensor& param, const at::Tensor& grad, double lr);

  int64_t step() const { return step_; }
  void set_step(int64_t step) { step_ = step; }
  at::Tensor& exp_avg() { return exp_avg_; }
  at::Tensor& exp_avg_sq() { return exp_avg_sq_; }

 private:
  AdamWConfig config_;
  at::Tensor exp_avg_, exp_avg_sq_;
  int64_t step_ = 0;
};

}  // namespace llamarl
