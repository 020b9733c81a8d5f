// Conversions between a Llama module's parameters (named_parameters() order) and one flat float32
// vector: the order weight_sync's ZeroFlatLayout(LlamaParamSpecs(config), ...) assumes.
#pragma once

#include "model/llama.h"

#include <vector>

namespace llamarl {

struct ParamSpec;

// All parameters concatenated as float32 [total]; throws when the module's parameters do not match
// `specs` (names and shapes), naming the first difference.
at::Tensor FlattenParameters(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs);

// Copies `flat` into the module's parameters (converted to their dtype), shaped by `specs` (so that a
// released module can be refilled). With bind, float32
// parameters become views of `flat` instead (no copy; updates to `flat` show through).
void AssignFlat(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs, const at::Tensor& flat,
                bool bind);

// Replaces every parameter's storage with an empty tensor of its dtype (frees the memory; the
// module must be re-assigned before its next use).
void ReleaseParameters(LlamaForCausalLMImpl& model);

}  // namespace llamarl
