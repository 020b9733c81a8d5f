#include "kernels/rms_norm.h"

#include "core/check.h"
#include "kernels/cuda_ops.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>

namespace llamarl::kernels {
namespace {

// Rows are processed in blocks of at least this many elements per parallel task.
constexpr int64_t kMinElementsPerTask = 1 << 15;

int64_t RowGrain(int64_t dim) { return std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(dim, 1)); }

template <typename T>
void ForwardCpu(const T* x, const T* weight, float eps, int64_t num_rows, int64_t dim, T* y, float* rstd) {
  at::parallel_for(0, num_rows, RowGrain(dim), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* x_row = x + r * dim;
      float sum_sq = 0.0f;
      for (int64_t d = 0; d < dim; ++d) sum_sq += static_cast<float>(x_row[d]) * static_cast<float>(x_row[d]);
      const float inv = 1.0f / std::sqrt(sum_sq / static_cast<float>(dim) + eps);
      rstd[r] = inv;
      for (int64_t d = 0; d < dim; ++d) {
        const T normalised = static_cast<T>(static_cast<float>(x_row[d]) * inv);
        y[r * dim + d] = static_cast<T>(static_cast<float>(weight[d]) * static_cast<float>(normalised));
      }
    }
  });
}

// grad_x = rstd * (g*w - n * mean(g*w*n)) with n = x * rstd; grad_w = sum over rows of g * n.
// grad_w is accumulated per block of rows into its own float32 partial sums, then added, so the
// result does not depend on thread timing.
template <typename T>
void BackwardCpu(const T* grad, const T* x, const T* weight, const float* rstd, int64_t num_rows, int64_t dim,
                 T* grad_x, float* grad_w_partials, int64_t num_blocks) {
  const int64_t rows_per_block = (num_rows + num_blocks - 1) / num_blocks;
  at::parallel_for(0, num_blocks, 1, [&](int64_t block_begin, int64_t block_end) {
    for (int64_t b = block_begin; b < block_end; ++b) {
      float* grad_w = grad_w_partials + b * dim;
      for (int64_t r = b * rows_per_block; r < std::min(num_rows, (b + 1) * rows_per_block); ++r) {
        const T* g_row = grad + r * dim;
        const T* x_row = x + r * dim;
        const float inv = rstd[r];
        float dot = 0.0f;
        for (int64_t d = 0; d < dim; ++d) {
          const float n = static_cast<float>(x_row[d]) * inv;
          const float g = static_cast<float>(g_row[d]);
          dot += g * static_cast<float>(weight[d]) * n;
          grad_w[d] += g * n;
        }
        const float mean_dot = dot / static_cast<float>(dim);
        for (int64_t d = 0; d < dim; ++d) {
          const float n = static_cast<float>(x_row[d]) * inv;
          grad_x[r * dim + d] = static_cast<T>(inv * (static_cast<float>(g_row[d]) * static_cast<float>(weight[d]) -
                                                     n * mean_dot));
        }
      }
    }
  });
}

// Returns {y, rstd [rows] float32}.
std::pair<at::Tensor, at::Tensor> Forward(const at::Tensor& x, const at::Tensor& weight, double eps) {
  const int64_t dim = x.size(-1), num_rows = x.numel() / std::max<int64_t>(dim, 1);
  at::Tensor y = at::empty_like(x);
  at::Tensor rstd = at::empty({num_rows}, x.options().dtype(at::kFloat));
  if (x.is_cuda()) {
    cuda::RmsNormForward(x, weight, eps, y, rstd);
    return {y, rstd};
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "RmsNorm", [&] {
    ForwardCpu(x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), static_cast<float>(eps), num_rows, dim,
               y.data_ptr<scalar_t>(), rstd.data_ptr<float>());
  });
  return {y, rstd};
}

// Returns {grad_x (x's dtype), grad_weight (weight's dtype)}.
std::pair<at::Tensor, at::Tensor> Backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight,
                                           const at::Tensor& rstd) {
  const int64_t dim = x.size(-1), num_rows = x.numel() / std::max<int64_t>(dim, 1);
  at::Tensor grad_x = at::empty_like(x);
  if (x.is_cuda()) {
    at::Tensor grad_w = at::empty({dim}, x.options().dtype(at::kFloat));
    cuda::RmsNormBackward(grad, x, weight, rstd, grad_x, grad_w);
    return {grad_x, grad_w.to(weight.scalar_type())};
  }
  const int64_t num_blocks = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), num_rows));
  at::Tensor partials = at::zeros({num_blocks, dim}, x.options().dtype(at::kFloat));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "RmsNormBackward", [&] {
    BackwardCpu(grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), weight.data_ptr<scalar_t>(), rstd.data_ptr<float>(),
                num_rows, dim, grad_x.data_ptr<scalar_t>(), partials.data_ptr<float>(), num_blocks);
  });
  return {grad_x, partials.sum(0).to(weight.scalar_type())};
}

class RmsNormFunction : public torch::autograd::Function<RmsNormFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight,
                            double eps) {
    auto [y, rstd] = Forward(x, weight, eps);
    ctx->save_for_backward({x, weight, rstd});
    return y;
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [grad_x, grad_w] = Backward(grads[0].contiguous(), saved[0], saved[1], saved[2]);
    return {grad_x, grad_w, at::Tensor()};
  }
};

void CheckInputs(const at::Tensor& x, const at::Tensor& weight, double eps) {
  LLAMARL_CHECK(x.defined() && weight.defined(), "RmsNorm: x and weight must be defined tensors");
  LLAMARL_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
                "RmsNorm: x must be float32, bfloat16 or float16, got ", x.scalar_type());
  LLAMARL_CHECK(x.dim() >= 1 && x.size(-1) > 0, "RmsNorm: x must have a non-empty last dim, got shape ", x.sizes());
  LLAMARL_CHECK(weight.dim() == 1 && weight.size(0) == x.size(-1), "RmsNorm: weight must have shape [", x.size(-1),
                "] (x's last dim), got ", weight.sizes());
  LLAMARL_CHECK(weight.scalar_type() == x.scalar_type(), "RmsNorm: weight is ", weight.scalar_type(), " but x is ",
                x.scalar_type(), "; cast the weight to x's dtype");
  LLAMARL_CHECK(weight.device() == x.device(), "RmsNorm: weight is on ", weight.device(), " but x is on ", x.device());
  LLAMARL_CHECK(x.is_cpu() || x.is_cuda(), "RmsNorm: unsupported device ", x.device(), "; expected CPU or CUDA");
  LLAMARL_CHECK(eps > 0 && std::isfinite(eps), "RmsNorm: eps must be positive and finite, got ", eps);
}

}  // namespace

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& weight, double eps) {
  CheckInputs(x, weight, eps);
  return RmsNormFunction::apply(x.contiguous(), weight.contiguous(), eps);
}

}  // namespace llamarl::kernels
