// f32/bf16/f16 <-> float8 e4m3fn casting with per-tensor or per-row scales, for the fp8 generator
// weights that weight sync can produce. LibTorch 1.13 has no float8 dtype, so the e4m3fn bits live in
// uint8 tensors. Convention: value ~= DecodeFp8E4m3(data) * scale, where scale = amax / 448 over the
// tensor or the row (1 when amax is 0), so the largest magnitude maps to the largest e4m3fn value.
// Legend: R = rows (all dims but the last), C = columns (the last dim).
#pragma once

#include <ATen/core/Tensor.h>

namespace llamarl::kernels {

enum class Fp8Scaling {
  kPerTensor,  // one scale for the whole tensor: scales has shape [1]
  kPerRow,     // one scale per row (per output channel of a [out, in] weight): scales has shape [R...]
};

struct Fp8Tensor {
  at::Tensor data;    // uint8, the shape of the input; each byte is one e4m3fn value
  at::Tensor scales;  // float32, [1] or the input's shape without its last dim
};

// Computes the scales from the input's absolute maxima, then encodes x / scale with round-to-nearest-
// even and saturation to +-448. The input must be finite (a non-finite amax has no usable scale).
Fp8Tensor CastToFp8E4m3(const at::Tensor& x, Fp8Scaling scaling);
// Encodes x / scales with the given scales ([1] or x's shape without its last dim, float32, > 0), e.g.
// to requantise with the scales of a previous cast. Non-finite inputs are allowed here: NaN encodes to
// 0x7F and +-inf saturates to +-448.
Fp8Tensor CastToFp8E4m3(const at::Tensor& x, const at::Tensor& scales);
// Decodes data (uint8 e4m3fn bits) times scales ([1] or data's shape without its last dim) into
// out_dtype (a floating type); the product is formed in float32, then rounded once.
at::Tensor CastFromFp8E4m3(const at::Tensor& data, const at::Tensor& scales, at::ScalarType out_dtype);
// The same into `out`: a contiguous floating tensor of data's shape on its device (e.g. a view of a
// reused buffer, as the engine's fp8 weights are decoded one layer at a time). Allocates nothing.
void CastFromFp8E4m3Into(const at::Tensor& data, const at::Tensor& scales, const at::Tensor& out);

}  // namespace llamarl::kernels
