// Binds the raw-pointer CUDA launchers (kernels/cuda_launchers.h) to at::Tensor: picks the element
// type, runs on the tensors' device and c10's current stream, and allocates scratch through
// LibTorch's caching allocator. Compiled only under LLAMARL_CUDA. Inputs arrive validated and
// contiguous from the public functions in kernels/*.cpp.
#include "kernels/cuda_launchers.h"
#include "core/check.h"
#include "kernels/cuda_ops.h"

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <limits>

namespace llamarl::kernels::cuda {
namespace {

FloatType ToFloatType(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return FloatType::kF32;
    case at::kBFloat16: return FloatType::kBF16;
    case at::kHalf: return FloatType::kF16;
    default: LLAMARL_FAIL("CUDA kernels: expected float32, bfloat16 or float16, got ", type);
  }
}

cudaStream_t CurrentStream() { return c10::cuda::getCurrentCUDAStream().stream(); }

int64_t Rows(const at::Tensor& t) { return t.dim() == 0 ? 1 : t.numel() / t.size(-1); }
int64_t Cols(const at::Tensor& t) { return t.dim() == 0 ? 1 : t.size(-1); }

// Launchers throw llamarl::Error (a failed CUDA call) or InternalError (sizes the binding should have
// ruled out); the message gains the op's name and the type is kept.
template <typename F>
void Launch(const char* op, F&& f) {
  try {
    f();
  } catch (const InternalError& e) {
    throw InternalError(detail::StrCat(op, ": ", e.what()));
  } catch (const Error& e) {
    LLAMARL_FAIL(op, ": ", e.what());
  }
}

}  // namespace

void EncodeFp8E4m3(const at::Tensor& x, const at::Tensor& scales, bool per_row, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(x.device());
  Launch("CastToFp8E4m3", [&] {
    LaunchEncodeFp8E4m3(x.data_ptr(), ToFloatType(x.scalar_type()), scales.data_ptr<float>(), per_row, Rows(x), Cols(x),
                        out.data_ptr<uint8_t>(), CurrentStream());
  });
}

void DecodeFp8E4m3(const at::Tensor& data, const at::Tensor& scales, bool per_row, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(data.device());
  Launch("CastFromFp8E4m3", [&] {
    LaunchDecodeFp8E4m3(data.data_ptr<uint8_t>(), scales.data_ptr<float>(), per_row, Rows(data), Cols(data),
                        out.data_ptr(), ToFloatType(out.scalar_type()), CurrentStream());
  });
}

void RmsNormForward(const at::Tensor& x, const at::Tensor& weight, double eps, at::Tensor& y, at::Tensor& rstd) {
  const c10::cuda::CUDAGuard guard(x.device());
  const RmsNormArgs args{x.data_ptr(), weight.data_ptr(), ToFloatType(x.scalar_type()), Rows(x), Cols(x),
                         static_cast<float>(eps)};
  Launch("RmsNorm", [&] { LaunchRmsNormForward(args, y.data_ptr(), rstd.data_ptr<float>(), CurrentStream()); });
}

void RmsNormBackward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& rstd,
                     at::Tensor& grad_x, at::Tensor& grad_w) {
  const c10::cuda::CUDAGuard guard(x.device());
  const RmsNormArgs args{x.data_ptr(), weight.data_ptr(), ToFloatType(x.scalar_type()), Rows(x), Cols(x), 0.0f};
  at::Tensor workspace =
      at::empty({std::max<int64_t>(1, RmsNormBackwardWorkspaceFloats(Rows(x), Cols(x)))}, x.options().dtype(at::kFloat));
  Launch("RmsNorm backward", [&] {
    LaunchRmsNormBackward(args, grad.data_ptr(), rstd.data_ptr<float>(), grad_x.data_ptr(), grad_w.data_ptr<float>(),
                          workspace.data_ptr<float>(), CurrentStream());
  });
}

void Rope(const at::Tensor& x, const at::Tensor& positions, const at::Tensor& inv_freq, double attention_scaling,
          bool inverse, at::Tensor& out) {
  const c10::cuda::CUDAGuard guard(x.device());
  const RopeArgs args{x.data_ptr(),           ToFloatType(x.scalar_type()), positions.data_ptr<int64_t>(),
                      inv_freq.data_ptr<float>(), static_cast<float>(attention_scaling), inverse,
                      positions.numel(),      x.size(-2),                   x.size(-1)};
  Launch("ApplyRope", [&] { LaunchRope(args, out.data_ptr(), CurrentStream()); });
}

void FoldLogprobsTile(at::Tensor& logits, const at::Tensor& targets, int64_t v0, bool first, bool with_entropy,
                      at::Tensor& max, at::Tensor& sum, at::Tensor& weighted, at::Tensor& target_logit) {
  const c10::cuda::CUDAGuard guard(logits.device());
  LLAMARL_ASSERT(logits.is_contiguous() && max.is_contiguous() && targets.is_contiguous(),
                 "TokenLogprobs tile: the caller passes contiguous logits, max and targets");
  const LogprobsTileArgs args{logits.data_ptr<float>(), targets.data_ptr<int64_t>(), logits.size(0), logits.size(1), v0};
  Launch("TokenLogprobs", [&] {
    LaunchFoldLogprobsTile(args, first, with_entropy, max.data_ptr<float>(), sum.data_ptr<float>(),
                           weighted.data_ptr<float>(), target_logit.data_ptr<float>(), CurrentStream());
  });
}

void LogprobsTileGradient(at::Tensor& logits, const at::Tensor& targets, int64_t v0, const at::Tensor& lse,
                          const at::Tensor& grad_logprobs, const at::Tensor& entropy, const at::Tensor& grad_entropy) {
  const c10::cuda::CUDAGuard guard(logits.device());
  LLAMARL_ASSERT(logits.is_contiguous(), "TokenLogprobs tile gradient: the caller passes contiguous logits");
  const LogprobsTileArgs args{logits.data_ptr<float>(), targets.data_ptr<int64_t>(), logits.size(0), logits.size(1), v0};
  const bool with_entropy = grad_entropy.defined();
  Launch("TokenLogprobs backward", [&] {
    LaunchLogprobsTileGradient(args, lse.data_ptr<float>(), grad_logprobs.data_ptr<float>(),
                               with_entropy ? entropy.data_ptr<float>() : nullptr,
                               with_entropy ? grad_entropy.data_ptr<float>() : nullptr, CurrentStream());
  });
}

void SampleTokens(const at::Tensor& logits, double temperature, int64_t top_k, double top_p, const at::Tensor& seeds,
                  const at::Tensor& offsets, at::Tensor& tokens, at::Tensor& logprobs) {
  const c10::cuda::CUDAGuard guard(logits.device());
  // The CPU path rejects NaN/+inf per element; here one reduction (and one sync) does it.
  LLAMARL_CHECK(!at::logical_or(logits.isnan(), logits.isposinf()).any().item<bool>(),
                "SampleTokens: logits hold NaN or +inf; logits must be finite or -inf (a masked token)");
  LLAMARL_CHECK(logits.amax({1}).isneginf().logical_not().all().item<bool>(),
                "SampleTokens: a row has every logit -inf; at least one token must stay possible");
  const SampleArgs args{logits.data_ptr(), ToFloatType(logits.scalar_type()), logits.size(0), logits.size(1),
                        temperature,        top_k, top_p, seeds.data_ptr<int64_t>(), offsets.data_ptr<int64_t>()};
  Launch("SampleTokens", [&] {
    LaunchSampleTokens(args, tokens.data_ptr<int64_t>(), logprobs.data_ptr<float>(), CurrentStream());
  });
}

}  // namespace llamarl::kernels::cuda
