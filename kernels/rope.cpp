#include "kernels/rope.h"

#include "core/check.h"
#include "kernels/cuda_ops.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cmath>
#include <vector>

namespace llamarl::kernels {
namespace {

constexpr int64_t kMinElementsPerTask = 1 << 14;

// HF's _compute_llama3_parameters, op for op in float32.
at::Tensor ScaleLlama3(const at::Tensor& inv_freq, const Llama3RopeScalingOptions& s) {
  const double old_context = static_cast<double>(s.original_max_position_embeddings);
  const double low_freq_wavelen = old_context / s.low_freq_factor;
  const double high_freq_wavelen = old_context / s.high_freq_factor;
  const at::Tensor wavelen = inv_freq.reciprocal().mul(2 * M_PI);
  at::Tensor scaled = at::where(wavelen.gt(low_freq_wavelen), inv_freq.div(s.factor), inv_freq);
  const at::Tensor smooth = wavelen.reciprocal().mul(old_context).sub(s.low_freq_factor)
                                .div(s.high_freq_factor - s.low_freq_factor);
  const at::Tensor smoothed = smooth.neg().add(1).mul(scaled).div(s.factor).add(smooth.mul(scaled));
  const at::Tensor is_medium = wavelen.lt(high_freq_wavelen).logical_not().logical_and(
      wavelen.gt(low_freq_wavelen).logical_not());
  return at::where(is_medium, smoothed, scaled);
}

// The rotation of one token row [H, Dh]. `sign` = +1 rotates by the angle (forward), -1 by its
// negative (the backward: the transpose of a rotation is its inverse). Each product and sum is
// rounded to T as the HF composition (x*cos + rotate_half(x)*sin in x's dtype) rounds them.
template <typename T>
void RotateRow(const T* x, int64_t num_heads, int64_t head_dim, const float* cos_row, const float* sin_row,
               float sign, T* out) {
  const int64_t half = head_dim / 2;
  for (int64_t h = 0; h < num_heads; ++h) {
    const T* xh = x + h * head_dim;
    T* oh = out + h * head_dim;
    for (int64_t i = 0; i < half; ++i) {
      const float c = cos_row[i], s = sign * sin_row[i];
      const float x1 = static_cast<float>(xh[i]), x2 = static_cast<float>(xh[i + half]);
      const float a1 = static_cast<float>(static_cast<T>(x1 * c));
      const float b1 = static_cast<float>(static_cast<T>(-x2 * s));
      const float a2 = static_cast<float>(static_cast<T>(x2 * c));
      const float b2 = static_cast<float>(static_cast<T>(x1 * s));
      oh[i] = static_cast<T>(a1 + b1);
      oh[i + half] = static_cast<T>(a2 + b2);
    }
  }
}

template <typename T>
void RopeCpu(const T* x, const int64_t* positions, const float* inv_freq, float attention_scaling, int64_t num_tokens,
             int64_t num_heads, int64_t head_dim, float sign, T* out) {
  const int64_t half = head_dim / 2, row = num_heads * head_dim;
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / row);
  at::parallel_for(0, num_tokens, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> cos_row(half), sin_row(half);
    for (int64_t t = begin; t < end; ++t) {
      const float p = static_cast<float>(positions[t]);
      for (int64_t i = 0; i < half; ++i) {
        const float angle = inv_freq[i] * p;
        // Rounded to T like HF's cos.to(x.dtype).
        cos_row[i] = static_cast<float>(static_cast<T>(std::cos(angle) * attention_scaling));
        sin_row[i] = static_cast<float>(static_cast<T>(std::sin(angle) * attention_scaling));
      }
      RotateRow(x + t * row, num_heads, head_dim, cos_row.data(), sin_row.data(), sign, out + t * row);
    }
  });
}

at::Tensor Rotate(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq,
                  double attention_scaling, bool inverse) {
  const int64_t head_dim = x.size(-1), num_heads = x.size(-2);
  const int64_t num_tokens = positions.numel();
  at::Tensor out = at::empty_like(x);
  if (x.is_cuda()) {
    cuda::Rope(x, positions, inv_freq, attention_scaling, inverse, out);
    return out;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "ApplyRope", [&] {
    RopeCpu(x.data_ptr<scalar_t>(), positions.data_ptr<int64_t>(), inv_freq.data_ptr<float>(),
            static_cast<float>(attention_scaling), num_tokens, num_heads, head_dim, inverse ? -1.0f : 1.0f,
            out.data_ptr<scalar_t>());
  });
  return out;
}

class RopeFunction : public torch::autograd::Function<RopeFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& positions,
                            const at::Tensor& inv_freq, double attention_scaling) {
    ctx->save_for_backward({positions, inv_freq});
    ctx->saved_data["attention_scaling"] = attention_scaling;
    return Rotate(x, positions, inv_freq, attention_scaling, /*inverse=*/false);
  }

  // With scaling a, the forward is a * R(angle); its transpose is a * R(-angle).
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const double attention_scaling = ctx->saved_data["attention_scaling"].toDouble();
    return {Rotate(grads[0].contiguous(), saved[0], saved[1], attention_scaling, /*inverse=*/true), at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

void CheckRopeInputs(const at::Tensor& x, const at::Tensor& positions, const RopeTables& tables) {
  LLAMARL_CHECK(x.defined() && positions.defined() && tables.inv_freq.defined(),
                "ApplyRope: x, positions and tables.inv_freq must be defined (build tables with MakeRopeTables)");
  LLAMARL_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf,
                "ApplyRope: x must be float32, bfloat16 or float16, got ", x.scalar_type());
  LLAMARL_CHECK(x.dim() >= 3, "ApplyRope: x must be [..., T, H, Dh], got shape ", x.sizes());
  const int64_t head_dim = x.size(-1);
  LLAMARL_CHECK(head_dim % 2 == 0 && head_dim > 0, "ApplyRope: the head dim (x's last dim) must be even, got ", head_dim);
  LLAMARL_CHECK(tables.inv_freq.scalar_type() == at::kFloat && tables.inv_freq.dim() == 1 &&
                  tables.inv_freq.size(0) == head_dim / 2,
                "ApplyRope: tables.inv_freq must be float32 [", head_dim / 2, "] for head dim ", head_dim, ", got ",
                tables.inv_freq.scalar_type(), " ", tables.inv_freq.sizes(), "; build it with the model's head_dim");
  LLAMARL_CHECK(positions.scalar_type() == at::kLong, "ApplyRope: positions must be int64, got ",
                positions.scalar_type());
  const auto leading = x.sizes().slice(0, x.dim() - 2);
  LLAMARL_CHECK(positions.sizes() == leading, "ApplyRope: positions must have x's leading dims ", leading,
                " (one position per token of x [..., T, H, Dh] ", x.sizes(), "), got ", positions.sizes());
  LLAMARL_CHECK(positions.device() == x.device() && tables.inv_freq.device() == x.device(), "ApplyRope: x is on ",
                x.device(), ", positions on ", positions.device(), ", inv_freq on ", tables.inv_freq.device(),
                "; move them to one device");
  LLAMARL_CHECK(x.is_cpu() || x.is_cuda(), "ApplyRope: unsupported device ", x.device(), "; expected CPU or CUDA");
}

}  // namespace

at::Tensor RopeInvFreq(const RopeFrequencyOptions& options) {
  LLAMARL_CHECK(options.head_dim > 0 && options.head_dim % 2 == 0, "RopeInvFreq: head_dim must be positive and even, got ",
                options.head_dim);
  LLAMARL_CHECK(options.theta > 0 && std::isfinite(options.theta), "RopeInvFreq: theta (rope_theta) must be positive, got ",
                options.theta);
  const at::Tensor exponent = at::arange(0, options.head_dim, 2, at::kLong).to(at::kFloat).div(options.head_dim);
  const at::Tensor inv_freq = at::pow(options.theta, exponent).reciprocal();
  if (!options.llama3) return inv_freq;
  const Llama3RopeScalingOptions& s = *options.llama3;
  LLAMARL_CHECK(s.factor >= 1, "RopeInvFreq: llama3 factor must be >= 1, got ", s.factor);
  LLAMARL_CHECK(s.low_freq_factor > 0 && s.high_freq_factor > s.low_freq_factor,
                "RopeInvFreq: llama3 needs 0 < low_freq_factor < high_freq_factor, got ", s.low_freq_factor, " and ",
                s.high_freq_factor);
  LLAMARL_CHECK(s.original_max_position_embeddings > 0,
                "RopeInvFreq: llama3 original_max_position_embeddings must be positive, got ",
                s.original_max_position_embeddings);
  return ScaleLlama3(inv_freq, s);
}

RopeTables MakeRopeTables(const RopeFrequencyOptions& options, const at::Device& device) {
  return RopeTables{RopeInvFreq(options).to(device), 1.0};
}

at::Tensor ApplyRope(const at::Tensor& x, const at::Tensor& positions, const RopeTables& tables) {
  CheckRopeInputs(x, positions, tables);
  return RopeFunction::apply(x.contiguous(), positions.contiguous(), tables.inv_freq.contiguous(),
                             tables.attention_scaling);
}

}  // namespace llamarl::kernels
