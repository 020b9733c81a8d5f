#include "trainer/flat_params.h"

#include "core/check.h"
#include "model/shard_layout.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <algorithm>

namespace llamarl {

at::Tensor FlattenParameters(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs) {
  const auto named = model.named_parameters();
  LLAMARL_CHECK(named.size() == specs.size(), "the model has ", named.size(), " parameters but its config implies ",
                specs.size(), "; pass the config the model was built from");
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& item = named[i];
    LLAMARL_CHECK(item.key() == specs[i].name && item.value().sizes().vec() == specs[i].shape, "model parameter ", i,
                  " is '", item.key(), "' ", item.value().sizes(), " but the config implies '", specs[i].name, "' ",
                  at::IntArrayRef(specs[i].shape), "; pass the config the model was built from");
    parts.push_back(item.value().detach().reshape({-1}).to(at::kFloat));
  }
  return at::cat(parts).contiguous();
}

at::Tensor LoadFlatRange(const LlamaWeightSource& source, const std::vector<ParamSpec>& specs, int64_t begin,
                         int64_t end, at::ScalarType dtype, c10::Device device) {
  LLAMARL_CHECK(0 <= begin && begin <= end, "LoadFlatRange: bad range [", begin, ", ", end, ")");
  at::Tensor out = at::empty({end - begin}, at::TensorOptions().dtype(dtype).device(device));
  at::NoGradGuard no_grad;
  int64_t offset = 0;  // of specs[i] in the flat vector
  for (const ParamSpec& spec : specs) {
    const int64_t numel = spec.Numel();
    const int64_t lo = std::max(begin, offset), hi = std::min(end, offset + numel);
    if (lo < hi) {
      at::Tensor param = source.Get(spec.name);
      LLAMARL_CHECK(param.sizes().vec() == spec.shape, "parameter '", spec.name, "' has shape ", param.sizes(),
                    " but the config implies ", at::IntArrayRef(spec.shape), "; pass the config of the weights");
      // A view of the elements needed (a mapped tensor is contiguous), converted while copied.
      LoadInto(out.narrow(0, lo - begin, hi - lo), param.reshape({-1}).narrow(0, lo - offset, hi - lo));
      source.DoneWith(spec.name);
    }
    offset += numel;
  }
  LLAMARL_CHECK(end <= offset, "LoadFlatRange: range end ", end, " beyond the ", offset, " parameters");
  return out;
}

void AssignFlat(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs, const at::Tensor& flat,
                bool bind) {
  at::NoGradGuard no_grad;
  auto params = model.parameters();
  LLAMARL_ASSERT(params.size() == specs.size(), "module has ", params.size(), " parameters, specs ",
                 specs.size());
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = params[i];
    const int64_t numel = specs[i].Numel();
    LLAMARL_ASSERT(offset + numel <= flat.numel(), "flat parameter vector too short");
    at::Tensor view = flat.narrow(0, offset, numel).view(specs[i].shape);
    if (bind && p.scalar_type() == at::kFloat) {
      p.set_data(view);
    } else if (p.numel() == numel) {
      p.copy_(view);
    } else {  // released: fresh storage in the parameter's dtype
      p.set_data(view.to(p.scalar_type(), /*non_blocking=*/false, /*copy=*/true));
    }
    offset += numel;
  }
  LLAMARL_ASSERT(offset == flat.numel(), "flat parameter vector has ", flat.numel(), " elements, the module ",
                 offset);
}

void ReleaseParameters(LlamaForCausalLMImpl& model) {
  for (auto& p : model.parameters()) p.set_data(at::empty({0}, p.options()));
}

}  // namespace llamarl
