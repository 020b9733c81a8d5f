#include "model/attention.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>

namespace llamarl {
namespace {

void CheckBatchTokens(const char* name, const at::Tensor& t, int64_t batch, int64_t num_tokens) {
  TORCH_CHECK(t.dim() == 2 && t.size(0) == batch && t.size(1) == num_tokens, name, " must have the shape of ",
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

at::Tensor PackedPositionIds(const at::Tensor& segment_ids) {
  TORCH_CHECK(segment_ids.dim() == 2, "segment_ids must be [batch, tokens], got shape ", segment_ids.sizes());
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
  TORCH_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "AttendEager expects 4-d q, k, v; got ", q.sizes(),
              ", ", k.sizes(), ", ", v.sizes());
  const int64_t batch = q.size(0), heads = q.size(1), tokens = q.size(2), head_dim = q.size(3);
  const int64_t kv_heads = k.size(1), keys = k.size(2);
  TORCH_CHECK(heads % kv_heads == 0, "query heads (", heads, ") must be a multiple of kv heads (", kv_heads, ")");
  TORCH_CHECK(allowed.dim() == 4 && allowed.size(2) == tokens && allowed.size(3) == keys,
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

}  // namespace llamarl
