#include "kernels/fused_linear.h"

#include "core/check.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include <vector>

namespace llamarl::kernels {
namespace {

std::vector<int64_t> OutFeatures(at::TensorList tensors) {
  std::vector<int64_t> sizes;
  for (const at::Tensor& t : tensors) sizes.push_back(t.size(0));
  return sizes;
}

// [sum N_i, D]: a view of the weights' own storage when they are adjacent, else a concatenated copy.
at::Tensor JoinedWeights(at::TensorList weights) {
  if (weights.size() == 1) return weights[0].detach();
  if (!AreAdjacentRows(weights)) return at::cat(weights, 0);
  int64_t rows = 0;
  for (const at::Tensor& w : weights) rows += w.size(0);
  const at::Tensor& first = weights[0];
  return first.detach().as_strided({rows, first.size(1)}, {first.size(1), 1}, first.storage_offset());
}

at::Tensor Concat(at::TensorList tensors) { return tensors.size() == 1 ? tensors[0].detach() : at::cat(tensors); }

class FusedLinearFunction : public torch::autograd::Function<FusedLinearFunction> {
 public:
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, at::TensorList weights,
                            at::TensorList biases) {
    const at::Tensor w = JoinedWeights(weights);
    ctx->save_for_backward({x, w});
    ctx->saved_data["out_features"] = OutFeatures(weights);
    ctx->saved_data["num_biases"] = int64_t(biases.size());
    return at::linear(x, w, biases.empty() ? at::Tensor() : Concat(biases));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    const std::vector<int64_t> out_features = ctx->saved_data["out_features"].toIntVector();
    const int64_t num_biases = ctx->saved_data["num_biases"].toInt();
    const int64_t in_features = w.size(1), rows = w.size(0);
    const at::Tensor grad_RN = grads[0].reshape({-1, rows});
    torch::autograd::variable_list out;
    out.push_back(ctx->needs_input_grad(0) ? at::matmul(grads[0], w) : at::Tensor());
    bool weights_need_grad = false;
    for (size_t i = 0; i < out_features.size(); ++i) weights_need_grad |= ctx->needs_input_grad(1 + i);
    if (weights_need_grad) {
      // One [N, R] x [R, D] GEMM for every weight; each weight's gradient is a row block of it.
      const at::Tensor grad_w = grad_RN.t().mm(x.reshape({-1, in_features}));
      for (const at::Tensor& g : grad_w.split_with_sizes(out_features, 0)) out.push_back(g);
    } else {
      out.resize(out.size() + out_features.size());
    }
    if (num_biases > 0) {
      for (const at::Tensor& g : grad_RN.sum(0).split_with_sizes(out_features, 0)) out.push_back(g);
    }
    return out;
  }
};

}  // namespace

bool AreAdjacentRows(at::TensorList weights) {
  if (weights.empty()) return false;
  const at::Tensor& first = weights[0];
  const char* next = static_cast<const char*>(first.data_ptr());
  for (const at::Tensor& w : weights) {
    if (!w.is_contiguous() || w.dim() != 2 || w.size(1) != first.size(1) || !w.is_alias_of(first) ||
        static_cast<const char*>(w.data_ptr()) != next) {
      return false;
    }
    next += w.nbytes();
  }
  return true;
}

at::Tensor FusedLinear(const at::Tensor& x, at::TensorList weights, at::TensorList biases) {
  LLAMARL_CHECK(!weights.empty(), "FusedLinear: at least one weight is needed");
  LLAMARL_CHECK(x.defined() && x.dim() >= 1, "FusedLinear: x must be [..., in_features], got ",
                x.defined() ? x.sizes() : at::IntArrayRef{});
  LLAMARL_CHECK(biases.empty() || biases.size() == weights.size(), "FusedLinear: give one bias per weight (",
                weights.size(), ") or none, got ", biases.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    const at::Tensor& w = weights[i];
    LLAMARL_CHECK(w.dim() == 2 && w.size(1) == x.size(-1), "FusedLinear: weight ", i, " must be [out, ", x.size(-1),
                  "] (x's last dim), got ", w.sizes());
    LLAMARL_CHECK(w.scalar_type() == x.scalar_type() && w.device() == x.device(), "FusedLinear: weight ", i, " is ",
                  w.scalar_type(), " on ", w.device(), " but x is ", x.scalar_type(), " on ", x.device());
    LLAMARL_CHECK(biases.empty() || (biases[i].dim() == 1 && biases[i].size(0) == w.size(0)), "FusedLinear: bias ", i,
                  " must be [", w.size(0), "], got ", biases[i].sizes());
  }
  return FusedLinearFunction::apply(x, weights, biases);
}

}  // namespace llamarl::kernels
