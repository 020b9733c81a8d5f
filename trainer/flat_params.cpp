#include "trainer/flat_params.h"

#include "weight_sync/shard_layout.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/autograd.h>

namespace llamarl {

at::Tensor FlattenParameters(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs) {
  const auto named = model.named_parameters();
  TORCH_CHECK(named.size() == specs.size(), "the model has ", named.size(), " parameters but its config implies ",
              specs.size(), "; pass the config the model was built from");
  std::vector<at::Tensor> parts;
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& item = named[i];
    TORCH_CHECK(item.key() == specs[i].name && item.value().sizes().vec() == specs[i].shape, "model parameter ", i,
                " is '", item.key(), "' ", item.value().sizes(), " but the config implies '", specs[i].name, "' ",
                at::IntArrayRef(specs[i].shape), "; pass the config the model was built from");
    parts.push_back(item.value().detach().reshape({-1}).to(at::kFloat));
  }
  return at::cat(parts).contiguous();
}

void AssignFlat(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs, const at::Tensor& flat,
                bool bind) {
  at::NoGradGuard no_grad;
  auto params = model.parameters();
  TORCH_INTERNAL_ASSERT(params.size() == specs.size(), "module has ", params.size(), " parameters, specs ",
                        specs.size());
  int64_t offset = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    at::Tensor& p = params[i];
    const int64_t numel = specs[i].Numel();
    TORCH_INTERNAL_ASSERT(offset + numel <= flat.numel(), "flat parameter vector too short");
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
  TORCH_INTERNAL_ASSERT(offset == flat.numel(), "flat parameter vector has ", flat.numel(), " elements, the module ",
                        offset);
}

void ReleaseParameters(LlamaForCausalLMImpl& model) {
  for (auto& p : model.parameters()) p.set_data(at::empty({0}, p.options()));
}

}  // namespace llamarl
