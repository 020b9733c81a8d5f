#include "kernels/fp8.h"

#include "core/check.h"
#include "kernels/cuda_ops.h"
#include "kernels/scalar_math.h"

#include <ATen/Dispatch.h>
#include <ATen/Functions.h>
#include <ATen/Parallel.h>

#include <array>
#include <cmath>
#include <vector>

namespace llamarl::kernels {
namespace {

// Rows shorter than this are grouped so that one parallel task does enough work to pay for itself.
constexpr int64_t kMinElementsPerTask = 1 << 14;

int64_t NumRows(const at::Tensor& x) { return x.dim() == 0 ? 1 : x.numel() / x.size(-1); }

std::vector<int64_t> RowShape(const at::Tensor& x) {
  return std::vector<int64_t>(x.sizes().begin(), x.sizes().end() - 1);
}

// scales must be float32, [1] (per tensor) or x's shape without its last dim (per row), positive.
// Returns true when the scales are per row.
bool CheckScales(const char* op, const at::Tensor& x, const at::Tensor& scales) {
  LLAMARL_CHECK(scales.defined() && scales.scalar_type() == at::kFloat, op,
                ": scales must be a float32 tensor, got ", scales.defined() ? c10::toString(scales.scalar_type()) : "undefined",
                "; pass the scales returned by CastToFp8E4m3");
  LLAMARL_CHECK(scales.device() == x.device(), op, ": scales are on ", scales.device(), " but the data is on ",
                x.device(), "; move both to the same device");
  const bool per_row = x.dim() >= 1 && scales.sizes().vec() == RowShape(x) && !(scales.dim() == 1 && x.dim() == 1);
  LLAMARL_CHECK(per_row || (scales.dim() == 1 && scales.numel() == 1), op, ": scales have shape ", scales.sizes(),
                " but the data has shape ", x.sizes(), "; expected [1] (per tensor) or ",
                at::IntArrayRef(x.dim() >= 1 ? RowShape(x) : std::vector<int64_t>{}), " (per row)");
  return per_row;
}

template <typename T>
void EncodeRowsCpu(const T* x, const float* scales, bool per_row, int64_t num_rows, int64_t num_cols, uint8_t* out) {
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(num_cols, 1));
  at::parallel_for(0, num_rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float scale = scales[per_row ? r : 0];
      const T* row = x + r * num_cols;
      uint8_t* out_row = out + r * num_cols;
      for (int64_t c = 0; c < num_cols; ++c) out_row[c] = EncodeFp8E4m3(static_cast<float>(row[c]) / scale);
    }
  });
}

// The 256 e4m3fn values, so that decoding on the CPU is one table load and one multiply per element.
const float* Fp8E4m3Table() {
  static const std::array<float, 256> table = [] {
    std::array<float, 256> t{};
    for (int code = 0; code < 256; ++code) t[size_t(code)] = DecodeFp8E4m3(static_cast<uint8_t>(code));
    return t;
  }();
  return table.data();
}

// Each row decodes through its own 256-entry table of T (code -> T(value * scale)), built from the
// float table: the same float product rounded once, as the element-wise form computes it, but one
// load per element instead of a multiply and a rounding (the engine decodes every layer in every
// forward, so this loop is on the decode path).
template <typename T>
void DecodeRowsCpu(const uint8_t* data, const float* scales, bool per_row, int64_t num_rows, int64_t num_cols, T* out) {
  const float* table = Fp8E4m3Table();
  const int64_t grain = std::max<int64_t>(1, kMinElementsPerTask / std::max<int64_t>(num_cols, 1));
  at::parallel_for(0, num_rows, grain, [&](int64_t begin, int64_t end) {
    std::array<T, 256> row_table;
    bool built = false;
    float built_for = 0.0f;
    for (int64_t r = begin; r < end; ++r) {
      const float scale = scales[per_row ? r : 0];
      const uint8_t* in_row = data + r * num_cols;
      T* out_row = out + r * num_cols;
      if (num_cols < 256) {
        for (int64_t c = 0; c < num_cols; ++c) out_row[c] = static_cast<T>(table[in_row[c]] * scale);
        continue;
      }
      if (!built || scale != built_for) {
        for (int code = 0; code < 256; ++code) row_table[size_t(code)] = static_cast<T>(table[code] * scale);
        built = true;
        built_for = scale;
      }
      for (int64_t c = 0; c < num_cols; ++c) out_row[c] = row_table[in_row[c]];
    }
  });
}

void CheckFloatingInput(const char* op, const at::Tensor& x) {
  LLAMARL_CHECK(x.defined(), op, ": the input tensor is undefined");
  LLAMARL_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16 || x.scalar_type() == at::kHalf, op,
                ": expected a float32, bfloat16 or float16 tensor, got ", x.scalar_type(), "; cast it first");
}

}  // namespace

Fp8Tensor CastToFp8E4m3(const at::Tensor& x, Fp8Scaling scaling) {
  CheckFloatingInput("CastToFp8E4m3", x);
  LLAMARL_CHECK(scaling == Fp8Scaling::kPerTensor || x.dim() >= 2, "CastToFp8E4m3: per-row scaling needs a tensor ",
                "with at least 2 dims, got shape ", x.sizes(), "; use Fp8Scaling::kPerTensor");
  at::Tensor amax;
  if (x.numel() == 0) {
    amax = at::zeros(scaling == Fp8Scaling::kPerRow ? RowShape(x) : std::vector<int64_t>{1}, x.options().dtype(at::kFloat));
  } else if (scaling == Fp8Scaling::kPerRow) {
    amax = x.abs().amax({-1}).to(at::kFloat);
  } else {
    amax = x.abs().max().to(at::kFloat).reshape({1});
  }
  const double worst = amax.numel() ? amax.max().item<double>() : 0.0;
  LLAMARL_CHECK(std::isfinite(worst), "CastToFp8E4m3: the input holds non-finite values (amax = ", worst,
                "), which leave no usable scale; fix the overflow upstream or pass explicit scales");
  at::Tensor scales = at::where(amax.gt(0), amax.div(kFp8E4m3Max), at::ones_like(amax));
  return CastToFp8E4m3(x, scales);
}

Fp8Tensor CastToFp8E4m3(const at::Tensor& x, const at::Tensor& scales) {
  CheckFloatingInput("CastToFp8E4m3", x);
  const bool per_row = CheckScales("CastToFp8E4m3", x, scales);
  LLAMARL_CHECK(scales.numel() == 0 || scales.min().item<float>() > 0.0f,
                "CastToFp8E4m3: every scale must be positive, got min ", scales.min().item<float>(),
                "; a zero scale divides by zero");
  const at::Tensor x_c = x.contiguous();
  const at::Tensor scales_c = scales.contiguous();
  at::Tensor data = at::empty(x.sizes(), x.options().dtype(at::kByte));
  const int64_t num_rows = NumRows(x), num_cols = x.dim() == 0 ? 1 : x.size(-1);
  if (x.is_cuda()) {
    cuda::EncodeFp8E4m3(x_c, scales_c, per_row, data);
    return {data, scales};
  }
  LLAMARL_CHECK(x.is_cpu(), "CastToFp8E4m3: unsupported device ", x.device(), "; expected CPU or CUDA");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, x.scalar_type(), "CastToFp8E4m3", [&] {
    EncodeRowsCpu(x_c.data_ptr<scalar_t>(), scales_c.data_ptr<float>(), per_row, num_rows, num_cols,
                  data.data_ptr<uint8_t>());
  });
  return {data, scales};
}

at::Tensor CastFromFp8E4m3(const at::Tensor& data, const at::Tensor& scales, at::ScalarType out_dtype) {
  LLAMARL_CHECK(data.defined() && data.scalar_type() == at::kByte, "CastFromFp8E4m3: data must be a uint8 tensor of ",
                "e4m3fn bits, got ", data.defined() ? c10::toString(data.scalar_type()) : "undefined");
  LLAMARL_CHECK(out_dtype == at::kFloat || out_dtype == at::kBFloat16 || out_dtype == at::kHalf,
                "CastFromFp8E4m3: out_dtype must be float32, bfloat16 or float16, got ", out_dtype);
  at::Tensor out = at::empty(data.sizes(), data.options().dtype(out_dtype));
  CastFromFp8E4m3Into(data, scales, out);
  return out;
}

void CastFromFp8E4m3Into(const at::Tensor& data, const at::Tensor& scales, const at::Tensor& out) {
  LLAMARL_CHECK(data.defined() && data.scalar_type() == at::kByte, "CastFromFp8E4m3: data must be a uint8 tensor of ",
                "e4m3fn bits, got ", data.defined() ? c10::toString(data.scalar_type()) : "undefined");
  LLAMARL_CHECK(out.defined() && (out.scalar_type() == at::kFloat || out.scalar_type() == at::kBFloat16 ||
                                  out.scalar_type() == at::kHalf),
                "CastFromFp8E4m3: the output must be float32, bfloat16 or float16, got ",
                out.defined() ? c10::toString(out.scalar_type()) : "undefined");
  LLAMARL_CHECK(out.sizes() == data.sizes() && out.is_contiguous() && out.device() == data.device(),
                "CastFromFp8E4m3Into: the output must be contiguous, of the data's shape ", data.sizes(), " and on ",
                data.device(), "; got shape ", out.sizes(), " on ", out.device());
  const bool per_row = CheckScales("CastFromFp8E4m3", data, scales);
  const at::Tensor data_c = data.contiguous();
  const at::Tensor scales_c = scales.contiguous();
  const int64_t num_rows = NumRows(data), num_cols = data.dim() == 0 ? 1 : data.size(-1);
  if (data.is_cuda()) {
    at::Tensor target = out;
    cuda::DecodeFp8E4m3(data_c, scales_c, per_row, target);
    return;
  }
  LLAMARL_CHECK(data.is_cpu(), "CastFromFp8E4m3: unsupported device ", data.device(), "; expected CPU or CUDA");
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, out.scalar_type(), "CastFromFp8E4m3", [&] {
    DecodeRowsCpu(data_c.data_ptr<uint8_t>(), scales_c.data_ptr<float>(), per_row, num_rows, num_cols,
                  out.data_ptr<scalar_t>());
  });
}

}  // namespace llamarl::kernels
