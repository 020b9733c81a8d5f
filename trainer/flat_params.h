// Conversions between a Llama module's parameters (named_parameters() order) and one flat float32
// vector: the order model/shard_layout.h's ZeroFlatLayout(LlamaParamSpecs(config), ...) assumes.
#pragma once

#include "model/llama.h"
#include "model/llama_weights.h"

#include <vector>

namespace llamarl {

struct ParamSpec;

// All parameters concatenated as float32 [total]; throws when the module's parameters do not match
// `specs` (names and shapes), naming the first difference.
at::Tensor FlattenParameters(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs);

// Elements [begin, end) of the flat parameter vector (`specs` order), read from `source` as `dtype`:
// only the parameters overlapping the range are touched, each through its flattened slice, so a
// mapped checkpoint is read for exactly those bytes and converted once, straight into the result.
// Equals FlattenParameters(full model).narrow(0, begin, end - begin).to(dtype) bit for bit. The result
// lives on `device` (a CUDA one is filled through pinned staging, LoadInto).
at::Tensor LoadFlatRange(const LlamaWeightSource& source, const std::vector<ParamSpec>& specs, int64_t begin,
                         int64_t end, at::ScalarType dtype, c10::Device device = c10::Device(c10::kCPU));

// Copies `flat` into the module's parameters (converted to their dtype), shaped by `specs` (so that a
// released module can be refilled). With bind, float32
// parameters become views of `flat` instead (no copy; updates to `flat` show through).
void AssignFlat(LlamaForCausalLMImpl& model, const std::vector<ParamSpec>& specs, const at::Tensor& flat,
                bool bind);

// Replaces every parameter's storage with an empty tensor of its dtype (frees the memory; the
// module must be re-assigned before its next use).
void ReleaseParameters(LlamaForCausalLMImpl& model);

}  // namespace llamarl
