#include "model/attention.h"

#include "core/check.h"

#include <ATen/ATen.h>

#include <cmath>
#include <limits>

namespace llamarl {
namespace {

void CheckBatchTokens(const char* name, const at::Tensor& t, int64_t batch, int64_t num_tokens) {
  LLAMARL_CHECK(t.dim() == 2 && t.size(0) == batch && t.size(1) == num_tokens, name, " must have the shape of ",
                "input_ids [", batch, ", ", num_tokens, "], got ", t.sizes());
}

// Id of the run of equal consecutive segment ids each token belongs to: [B, T] int64.
at::Tensor SegmentRuns(const at::Tensor& segment_ids) {
  at::Tensor starts = at::ones_like(segment_ids, segment_ids.options().dtype(at::kLong));
  if (segment_ids.size(1) > 1) {
    at::Tensor changed = segment_ids.narrow(1, 1, segment_ids.size(1) - 1)
                             .ne(segment_ids.narrow(1, 0, segment_ids.size(1) - 1));
    starts.narrow(1, 1, segment_ids.size(1) - 1).copy_(changed);
  }
  return starts.cumsum(1);
}

void CheckQkv(const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  LLAMARL_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, op, " expects 4-d q, k, v; got ", q.sizes(), ", ",
                k.sizes(), ", ", v.sizes());
}

}  // namespace

at::Tensor BuildAttentionMask(const AttentionMaskInputs& in, at::Device device) {
  const int64_t t = in.num_tokens;
  auto bool_options = at::TensorOptions().dtype(at::kBool).device(device);
  at::Tensor allowed = at::ones({t, t}, bool_options).tril().view({1, 1, t, t}).expand({in.batch, 1, t, t});
  if (in.attention_mask.defined()) {
    CheckBatchTokens("attention_mask", in.attention_mask, in.batch, t);
    at::Tensor keys = in.attention_mask.to(device).ne(0).view({in.batch, 1, 1, t});
    allowed = allowed.logical_and(keys);
  }
  if (in.segment_ids.defined()) {
    CheckBatchTokens("segment_ids", in.segment_ids, in.batch, t);
    at::Tensor runs = SegmentRuns(in.segment_ids.to(device));
    allowed = allowed.logical_and(runs.view({in.batch, 1, t, 1}).eq(runs.view({in.batch, 1, 1, t})));
  }
  return allowed.contiguous();
}

AttentionLayout BuildAttentionLayout(const AttentionMaskInputs& in, at::Device device) {
  AttentionLayout layout;
  if (in.batch != 1 || !in.segment_ids.defined() || in.attention_mask.defined()) {
    layout.allowed = BuildAttentionMask(in, device);
    return layout;
  }
  CheckBatchTokens("segment_ids", in.segment_ids, in.batch, in.num_tokens);
  // Segment starts on the host: the per-segment loop needs them as sizes (one sync per forward).
  at::Tensor ids = in.segment_ids.to(at::kCPU, at::kLong).contiguous();
  const int64_t* id = ids.data_ptr<int64_t>();
  layout.segment_starts.push_back(0);
  for (int64_t t = 1; t < in.num_tokens; ++t) {
    if (id[t] != id[t - 1]) layout.segment_starts.push_back(t);
  }
  layout.segment_starts.push_back(in.num_tokens);
  return layout;
}

at::Tensor PackedPositionIds(const at::Tensor& segment_ids) {
  LLAMARL_CHECK(segment_ids.dim() == 2, "segment_ids must be [batch, tokens], got shape ", segment_ids.sizes());
  const int64_t t = segment_ids.size(1);
  at::Tensor index = at::arange(t, segment_ids.options().dtype(at::kLong)).expand(segment_ids.sizes());
  at::Tensor runs = SegmentRuns(segment_ids);
  at::Tensor is_start = at::ones_like(runs, runs.options().dtype(at::kBool));
  if (t > 1) is_start.narrow(1, 1, t - 1).copy_(runs.narrow(1, 1, t - 1).ne(runs.narrow(1, 0, t - 1)));
  // The start index of each token's run: the running maximum of the start indices seen so far.
  at::Tensor start = std::get<0>(at::cummax(at::where(is_start, index, at::zeros_like(index)), 1));
  return index - start;
}

at::Tensor AttendEager(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& allowed) {
  CheckQkv("AttendEager", q, k, v);
  const int64_t batch = q.size(0), heads = q.size(1), tokens = q.size(2), head_dim = q.size(3);
  const int64_t kv_heads = k.size(1), keys = k.size(2);
  LLAMARL_CHECK(heads % kv_heads == 0, "query heads (", heads, ") must be a multiple of kv heads (", kv_heads, ")");
  LLAMARL_CHECK(allowed.dim() == 4 && allowed.size(2) == tokens && allowed.size(3) == keys,
                "attention mask must be [batch, 1, ", tokens, ", ", keys, "], got ", allowed.sizes());
  const int64_t groups = heads / kv_heads;
  // repeat_kv: query head h reads kv head h / groups.
  at::Tensor k_rep = k.unsqueeze(2).expand({batch, kv_heads, groups, keys, head_dim}).reshape({batch, heads, keys, head_dim});
  at::Tensor v_rep = v.unsqueeze(2).expand({batch, kv_heads, groups, keys, head_dim}).reshape({batch, heads, keys, head_dim});
  at::Tensor scores = at::matmul(q, k_rep.transpose(2, 3)) * (1.0 / std::sqrt(double(head_dim)));
  // HF adds dtype-min rather than -inf, so a row without allowed keys stays finite. Masking after the
  // cast to f32 leaves every allowed score exactly as HF rounds it.
  scores = scores.to(at::kFloat).masked_fill(allowed.logical_not(), std::numeric_limits<float>::lowest());
  at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(q.scalar_type());
  return at::matmul(probs, v_rep).transpose(1, 2).reshape({batch, tokens, heads * head_dim});
}

at::Tensor AttendSegments(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                          const std::vector<int64_t>& starts) {
  CheckQkv("AttendSegments", q, k, v);
  const int64_t tokens = q.size(2);
  LLAMARL_CHECK(q.size(0) == 1 && k.size(0) == 1 && v.size(0) == 1, "AttendSegments expects one packed row, got q ",
                q.sizes(), ", k ", k.sizes());
  LLAMARL_CHECK(starts.size() >= 2 && starts.front() == 0 && starts.back() == tokens && k.size(2) == tokens,
                "AttendSegments: segment starts must run from 0 to the row's ", tokens, " tokens (keys ", k.size(2),
                "), got ", starts.size(), " bounds ending at ", starts.empty() ? -1 : starts.back());
  auto bool_options = at::TensorOptions().dtype(at::kBool).device(q.device());
  std::vector<at::Tensor> parts;
  parts.reserve(starts.size() - 1);
  for (size_t s = 0; s + 1 < starts.size(); ++s) {
    const int64_t begin = starts[s], n = starts[s + 1] - begin;
    LLAMARL_CHECK(n > 0, "AttendSegments: segment starts must increase, got ", begin, " then ", starts[s + 1]);
    at::Tensor causal = at::ones({n, n}, bool_options).tril().view({1, 1, n, n});
    parts.push_back(AttendEager(q.narrow(2, begin, n), k.narrow(2, begin, n), v.narrow(2, begin, n), causal));
  }
  return parts.size() == 1 ? parts[0] : at::cat(parts, 1);
}

at::Tensor Attend(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const AttentionLayout& layout) {
  if (!layout.segment_starts.empty()) return AttendSegments(q, k, v, layout.segment_starts);
  return AttendEager(q, k, v, layout.allowed);
}

}  // namespace llamarl
