#include "kernels/sampling.h"

#include "core/check.h"
#include "kernels/cuda_ops.h"
#include "kernels/scalar_math.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

namespace llamarl::kernels {
namespace {

struct RowResult {
  int64_t token;
  float logprob;
};

// Log-sum-exp of z over the row; throws for NaN / +inf and for rows that mask every token.
float RowLogSumExp(const std::vector<float>& z, int64_t row, float* row_max) {
  float max = -std::numeric_limits<float>::infinity();
  for (size_t v = 0; v < z.size(); ++v) {
    LLAMARL_CHECK(!std::isnan(z[v]) && z[v] != std::numeric_limits<float>::infinity(), "SampleTokens: logits[", row,
                  "][", v, "] is ", z[v], "; logits must be finite or -inf (a masked token)");
    max = std::max(max, z[v]);
  }
  LLAMARL_CHECK(max > -std::numeric_limits<float>::infinity(), "SampleTokens: every logit of row ", row,
                " is -inf; at least one token must stay possible");
  float sum = 0.0f;
  for (float value : z) sum += std::exp(value - max);
  *row_max = max;
  return max + std::log(sum);
}

// The smallest kept value (see the header): z >= threshold is the kept set.
float KeepThreshold(const std::vector<float>& z, float row_max, const SamplingOptions& o) {
  std::vector<float> sorted(z);
  float threshold = -std::numeric_limits<float>::infinity();
  const int64_t vocab = static_cast<int64_t>(z.size());
  size_t kept = sorted.size();
  if (o.top_k > 0 && o.top_k < vocab) {
    std::nth_element(sorted.begin(), sorted.begin() + (o.top_k - 1), sorted.end(), std::greater<float>());
    threshold = sorted[o.top_k - 1];
  }
  if (o.top_p >= 1.0) return threshold;
  // Restrict to the top-k set, most likely first; ties of the threshold stay in.
  const auto end = std::partition(sorted.begin(), sorted.end(), [&](float v) { return v >= threshold; });
  kept = static_cast<size_t>(end - sorted.begin());
  std::sort(sorted.begin(), sorted.begin() + kept, std::greater<float>());
  float mass = 0.0f;
  for (size_t i = 0; i < kept; ++i) mass += std::exp(sorted[i] - row_max);
  const float target = static_cast<float>(o.top_p) * mass;
  float cumulative = 0.0f;
  for (size_t i = 0; i < kept; ++i) {
    cumulative += std::exp(sorted[i] - row_max);
    if (cumulative >= target) return sorted[i];
  }
  return sorted[kept - 1];  // rounding left the total a hair below top_p * mass
}

RowResult SampleRow(std::vector<float>& z, int64_t row, const SamplingOptions& o, uint64_t seed, uint64_t offset) {
  float row_max = 0.0f;
  if (o.temperature == 0.0) {
    const float lse = RowLogSumExp(z, row, &row_max);
    const int64_t token = std::max_element(z.begin(), z.end()) - z.begin();  // first maximum
    return {token, z[token] - lse};
  }
  const float inv_temperature = static_cast<float>(1.0 / o.temperature);
  for (float& value : z) value *= inv_temperature;
  const float lse = RowLogSumExp(z, row, &row_max);
  const float threshold = KeepThreshold(z, row_max, o);
  float mass = 0.0f;
  for (float value : z)
    if (value >= threshold) mass += std::exp(value - row_max);
  const float target = PhiloxUniform(seed, offset) * mass;
  float cumulative = 0.0f;
  int64_t token = -1;
  for (size_t v = 0; v < z.size(); ++v) {
    const float weight = z[v] >= threshold ? std::exp(z[v] - row_max) : 0.0f;
    if (weight == 0.0f) continue;  // outside the kept set, or masked with -inf
    token = static_cast<int64_t>(v);
    cumulative += weight;
    if (cumulative > target) break;
  }
  LLAMARL_ASSERT(token >= 0, "the kept set of row ", row, " is empty");
  return {token, z[token] - lse};
}

void CheckInputs(const at::Tensor& logits, const SamplingOptions& o, const at::Tensor& seeds,
                 const at::Tensor& offsets) {
  LLAMARL_CHECK(logits.defined() && logits.dim() == 2 && logits.size(1) > 0,
                "SampleTokens: logits must be [B, V] with V > 0, got ",
                logits.defined() ? c10::str(logits.sizes()) : "undefined");
  const auto type = logits.scalar_type();
  LLAMARL_CHECK(type == at::kFloat || type == at::kBFloat16 || type == at::kHalf,
                "SampleTokens: logits must be float32, bfloat16 or float16, got ", type);
  LLAMARL_CHECK(seeds.defined() && seeds.scalar_type() == at::kLong && seeds.dim() == 1 && seeds.size(0) == logits.size(0),
                "SampleTokens: seeds must be int64 [B] = [", logits.size(0), "] (one per row), got ",
                seeds.defined() ? c10::str(seeds.scalar_type(), " ", seeds.sizes()) : "undefined");
  LLAMARL_CHECK(!offsets.defined() || (offsets.scalar_type() == at::kLong && offsets.sizes() == seeds.sizes()),
                "SampleTokens: offsets must be int64 [", logits.size(0), "] or undefined, got ",
                offsets.defined() ? c10::str(offsets.scalar_type(), " ", offsets.sizes()) : "");
  LLAMARL_CHECK(seeds.device() == logits.device() && (!offsets.defined() || offsets.device() == logits.device()),
                "SampleTokens: seeds and offsets must be on the logits' device ", logits.device());
  LLAMARL_CHECK(logits.is_cpu() || logits.is_cuda(), "SampleTokens: unsupported device ", logits.device());
  LLAMARL_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), "SampleTokens: temperature must be >= 0 ",
                "(0 = greedy), got ", o.temperature);
  LLAMARL_CHECK(o.top_k >= 0, "SampleTokens: top_k must be >= 0 (0 = no limit), got ", o.top_k);
  LLAMARL_CHECK(o.top_p > 0 && o.top_p <= 1, "SampleTokens: top_p must be in (0, 1] (1 = no nucleus cut), got ",
                o.top_p);
}

}  // namespace

SampledTokens SampleTokens(const at::Tensor& logits, const SamplingOptions& options, const at::Tensor& seeds,
                           const at::Tensor& offsets) {
  CheckInputs(logits, options, seeds, offsets);
  const int64_t batch = logits.size(0), vocab = logits.size(1);
  const at::Tensor offsets_c = offsets.defined() ? offsets.contiguous() : at::zeros_like(seeds);
  SampledTokens out{at::empty({batch}, seeds.options()), at::empty({batch}, logits.options().dtype(at::kFloat))};
  if (logits.is_cuda()) {
    cuda::SampleTokens(logits.contiguous(), options.temperature, options.top_k, options.top_p, seeds.contiguous(),
                       offsets_c, out.tokens, out.logprobs);
    return out;
  }
  const at::Tensor z_all = logits.to(at::kFloat).contiguous();
  const float* z_ptr = z_all.data_ptr<float>();
  const int64_t* seed_ptr = seeds.contiguous().data_ptr<int64_t>();
  const int64_t* offset_ptr = offsets_c.data_ptr<int64_t>();
  int64_t* token_ptr = out.tokens.data_ptr<int64_t>();
  float* logprob_ptr = out.logprobs.data_ptr<float>();
  at::parallel_for(0, batch, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> z(vocab);
    for (int64_t b = begin; b < end; ++b) {
      std::copy(z_ptr + b * vocab, z_ptr + (b + 1) * vocab, z.begin());
      const RowResult r = SampleRow(z, b, options, static_cast<uint64_t>(seed_ptr[b]),
                                    static_cast<uint64_t>(offset_ptr[b]));
      token_ptr[b] = r.token;
      logprob_ptr[b] = r.logprob;
    }
  });
  return out;
}

}  // namespace llamarl::kernels
