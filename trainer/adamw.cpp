#include "trainer/adamw.h"

#include "core/check.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>

namespace llamarl {

AdamWConfig AdamWConfig::FromJson(const Json& j, const std::string& path) {
  AdamWConfig c;
  ConfigReader r(j, path);
  r.Read("lr", &c.lr, Range::Positive(), "peak learning rate");
  const Json& betas = r.Raw("betas");
  if (!betas.is_null()) {
    LLAMARL_CHECK(betas.is_array() && betas.size() == 2 && betas[0].is_number() && betas[1].is_number(),
                  r.PathOf("betas"), ": expected [beta1, beta2] with each in [0, 1), got ", DescribeJson(betas));
    c.beta1 = betas[0].get<double>();
    c.beta2 = betas[1].get<double>();
    LLAMARL_CHECK(c.beta1 >= 0 && c.beta1 < 1 && c.beta2 >= 0 && c.beta2 < 1, r.PathOf("betas"),
                  ": expected [beta1, beta2] with each in [0, 1), got ", DescribeJson(betas));
  }
  r.Read("eps", &c.eps, Range::Positive(), "added to sqrt(v) in the denominator");
  r.Read("weight_decay", &c.weight_decay, Range::AtLeast(0), "decoupled weight decay");
  r.Finish();
  return c;
}

at::Tensor SumOfSquares(const at::Tensor& flat) {
  LLAMARL_CHECK(flat.dim() == 1, "SumOfSquares expects a flat tensor, got ", flat.sizes());
  const int64_t n = flat.numel();
  at::Tensor total = flat.narrow(0, 0, std::min(n, kFlatChunkElements)).to(at::kDouble).pow(2).sum();
  for (int64_t begin = kFlatChunkElements; begin < n; begin += kFlatChunkElements)
    total = total + flat.narrow(0, begin, std::min(kFlatChunkElements, n - begin)).to(at::kDouble).pow(2).sum();
  return total;
}

FlatAdamW::FlatAdamW(const AdamWConfig& config, int64_t numel, const at::TensorOptions& options)
    : config_(config),
      exp_avg_(at::zeros({numel}, options.dtype(at::kFloat))),
      exp_avg_sq_(at::zeros({numel}, options.dtype(at::kFloat))) {}

void FlatAdamW::Step(at::Tensor& param, const at::Tensor& grad, double lr) {
  LLAMARL_CHECK(param.sizes() == exp_avg_.sizes() && grad.sizes() == exp_avg_.sizes(),
                "FlatAdamW::Step: parameter ", param.sizes(), " and gradient ", grad.sizes(),
                " must match the optimizer state ", exp_avg_.sizes());
  LLAMARL_CHECK(param.scalar_type() == at::kFloat && grad.scalar_type() == at::kFloat,
                "FlatAdamW::Step expects float32 parameters and gradients, got ", param.scalar_type(), " and ",
                grad.scalar_type());
  ++step_;
  // The order of operations is torch::optim::AdamW's, so that results agree to the last bit or two.
  // Element-wise, so it runs chunk by chunk (kFlatChunkElements) with the same
  // result: the temporaries (sqrt(v), the denominator) are one chunk, not two more shard-sized tensors.
  const double bias_correction1 = 1.0 - std::pow(config_.beta1, double(step_));
  const double bias_correction2 = 1.0 - std::pow(config_.beta2, double(step_));
  const int64_t n = param.numel();
  for (int64_t begin = 0; begin < n; begin += kFlatChunkElements) {
    const int64_t len = std::min(kFlatChunkElements, n - begin);
    at::Tensor p = param.narrow(0, begin, len), g = grad.narrow(0, begin, len);
    at::Tensor m = exp_avg_.narrow(0, begin, len), v = exp_avg_sq_.narrow(0, begin, len);
    p.mul_(1.0 - lr * config_.weight_decay);
    m.mul_(config_.beta1).add_(g, 1.0 - config_.beta1);
    v.mul_(config_.beta2).addcmul_(g, g, 1.0 - config_.beta2);
    at::Tensor denom = (v.sqrt() / std::sqrt(bias_correction2)).add_(config_.eps);
    p.addcdiv_(m, denom, -lr / bias_correction1);
  }
}

}  // namespace llamarl
