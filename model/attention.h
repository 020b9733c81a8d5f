// The attention math shared by the full-sequence forward (model/llama.h) and, later, the KV-cache
// generator: which keys each query may see, and eager softmax attention with grouped-query heads.
// Legend: B = batch, T = query tokens, S = key tokens, H = query heads, K = kv heads, E = head_dim.
#pragma once

#include <ATen/core/Tensor.h>

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

// Positions that restart at 0 at every segment start: segment_ids [B, T] -> [B, T] int64.
at::Tensor PackedPositionIds(const at::Tensor& segment_ids);

// q [B, H, T, E], k and v [B, K, S, E] with H a multiple of K, allowed [B, 1, T, S] bool.
// Returns [B, T, H * E] in q's dtype; the softmax runs in f32 (HF's eager_attention_forward).
at::Tensor AttendEager(const at::Tensor& q_BHTE, const at::Tensor& k_BKSE, const at::Tensor& v_BKSE,
                       const at::Tensor& allowed_B1TS);

}  // namespace llamarl
