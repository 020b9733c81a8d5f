// The attention math shared by the full-sequence forward (model/llama.h), the trainer and the KV-cache
// generator's prefill: which keys each query may see, and eager softmax attention with grouped-query
// heads. A packed row (the trainer's micro-batches) attends segment by segment, so its cost is the
// sum of the segments' squared lengths and no [T, T] mask is built; everything else uses a mask.
// Legend: B = batch, T = query tokens, S = key tokens, H = query heads, K = kv heads, E = head_dim.
#pragma once

#include <ATen/core/Tensor.h>

#include <vector>

namespace llamarl {

struct AttentionMaskInputs {
  int64_t batch = 0;
  int64_t num_tokens = 0;
  at::Tensor attention_mask;  // [B, T], optional: 1 = token, 0 = padding (never attended to)
  // [B, T], optional: packed sequences. A token attends only within its run of equal consecutive ids
  // (a later run that reuses an id is still a separate sequence).
  at::Tensor segment_ids;
};

// allowed [B, 1, T, T] bool on `device`: causal, restricted by padding and segments. A query row with
// no allowed key (a padding token) attends uniformly, like HF's additive dtype-min mask; its output
// is finite and meaningless.
at::Tensor BuildAttentionMask(const AttentionMaskInputs& inputs, at::Device device);

// Which keys each query of one full-sequence forward may see; built once, shared by every layer.
struct AttentionLayout {
  // Packed: one row (B = 1) without padding whose segment s holds tokens [starts[s], starts[s + 1])
  // and attends causally within itself. Size S + 1; empty when `allowed` is used instead.
  std::vector<int64_t> segment_starts;
  at::Tensor allowed;  // [B, 1, T, T] bool (BuildAttentionMask) when not packed
};

// The packed layout when segment_ids is a single row and there is no attention_mask; otherwise the
// mask of BuildAttentionMask.
AttentionLayout BuildAttentionLayout(const AttentionMaskInputs& inputs, at::Device device);

// Positions that restart at 0 at every segment start: segment_ids [B, T] -> [B, T] int64.
at::Tensor PackedPositionIds(const at::Tensor& segment_ids);

// q [B, H, T, E], k and v [B, K, S, E] with H a multiple of K, allowed [B, 1, T, S] bool.
// Returns [B, T, H * E] in q's dtype; the softmax runs in f32 (HF's eager_attention_forward).
at::Tensor AttendEager(const at::Tensor& q_BHTE, const at::Tensor& k_BKSE, const at::Tensor& v_BKSE,
                       const at::Tensor& allowed_B1TS);

// The same math over one packed row: q [1, H, T, E], k and v [1, K, T, E]; each segment of
// segment_starts attends causally to itself alone. Equal to AttendEager with the segment mask up to
// the order of float additions. Returns [1, T, H * E].
at::Tensor AttendSegments(const at::Tensor& q_1HTE, const at::Tensor& k_1KTE, const at::Tensor& v_1KTE,
                          const std::vector<int64_t>& segment_starts);

// AttendSegments for a packed layout, AttendEager with its mask otherwise.
at::Tensor Attend(const at::Tensor& q_BHTE, const at::Tensor& k_BKTE, const at::Tensor& v_BKTE,
                  const AttentionLayout& layout);

}  // namespace llamarl
