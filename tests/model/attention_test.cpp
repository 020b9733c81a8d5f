// Which keys each query sees (masks, packed layouts, positions) and the packed per-segment attention
// against the masked path it replaces: values and gradients, alone and through a whole decoder.
// Legend: H = query heads, K = kv heads, T = tokens, E = head_dim.
#include "core/check.h"
#include "model/attention.h"

#include "model/llama.h"
#include "model/llama_checkpoint.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <vector>

namespace llamarl {
namespace {

// One packed row of the given segment lengths: ids [1, T] with a new id per segment.
at::Tensor SegmentIds(const std::vector<int64_t>& lengths) {
  std::vector<int64_t> ids;
  for (size_t s = 0; s < lengths.size(); ++s) ids.insert(ids.end(), size_t(lengths[s]), int64_t(s % 2));
  return at::tensor(ids, at::kLong).unsqueeze(0);
}

TEST(AttentionTest, LayoutIsPackedOnlyForOneRowWithoutPadding) {
  AttentionMaskInputs in;
  in.batch = 1;
  in.num_tokens = 4;
  in.segment_ids = at::tensor(std::vector<int64_t>{7, 7, 3, 7}, at::kLong).unsqueeze(0);
  AttentionLayout packed = BuildAttentionLayout(in, at::kCPU);
  // A later run that reuses id 7 is a segment of its own.
  EXPECT_EQ(packed.segment_starts, (std::vector<int64_t>{0, 2, 3, 4}));
  EXPECT_FALSE(packed.allowed.defined());
  in.attention_mask = at::ones({1, 4}, at::kLong);
  AttentionLayout masked = BuildAttentionLayout(in, at::kCPU);
  EXPECT_TRUE(masked.segment_starts.empty());
  EXPECT_TRUE(at::equal(masked.allowed, BuildAttentionMask(in, at::kCPU)));
}

TEST(AttentionTest, SegmentsMatchMaskedAttentionValuesAndGradients) {
  at::manual_seed(3);
  const std::vector<int64_t> lengths{5, 1, 7, 3};
  const int64_t t = 16;
  AttentionMaskInputs in{1, t, at::Tensor(), SegmentIds(lengths)};
  const AttentionLayout packed = BuildAttentionLayout(in, at::kCPU);
  ASSERT_EQ(packed.segment_starts.size(), lengths.size() + 1);
  const at::Tensor allowed = BuildAttentionMask(in, at::kCPU);
  const at::Tensor q = at::randn({1, 4, t, 8}), k = at::randn({1, 2, t, 8}), v = at::randn({1, 2, t, 8});
  const at::Tensor grad_out = at::randn({1, t, 32});
  std::vector<at::Tensor> grads[2];
  at::Tensor out[2];
  for (int path = 0; path < 2; ++path) {
    at::Tensor qg = q.clone().requires_grad_(true), kg = k.clone().requires_grad_(true);
    at::Tensor vg = v.clone().requires_grad_(true);
    out[path] = path == 0 ? AttendSegments(qg, kg, vg, packed.segment_starts) : AttendEager(qg, kg, vg, allowed);
    out[path].backward(grad_out);
    grads[path] = {qg.grad(), kg.grad(), vg.grad()};
  }
  EXPECT_TRUE(at::allclose(out[0], out[1], 1e-5, 1e-6)) << (out[0] - out[1]).abs().max();
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_TRUE(at::allclose(grads[0][i], grads[1][i], 1e-5, 1e-5)) << i << ": " << (grads[0][i] - grads[1][i]).abs().max();
  }
  // bf16: the same roundings on the allowed keys, so the two paths agree to bf16 precision.
  const at::Tensor ob = AttendSegments(q.to(at::kBFloat16), k.to(at::kBFloat16), v.to(at::kBFloat16),
                                       packed.segment_starts);
  EXPECT_TRUE(at::allclose(ob.to(at::kFloat), out[1], 2e-2, 2e-2));
  EXPECT_THROW(AttendSegments(q, k, v, {0, 5, 4, t}), llamarl::Error);
  EXPECT_THROW(AttendSegments(q, k, v, {0, 5}), llamarl::Error);
}

// A decoder's packed forward (per segment) against the same row run with the mask (a batch of two
// copies of the row, which is never packed): hidden states and every parameter's gradient.
TEST(AttentionTest, PackedDecoderMatchesMaskedDecoder) {
  TinyLlamaOptions options;
  options.vocab_size = 64;
  options.hidden_size = 32;
  LlamaForCausalLM model(TinyLlamaConfig(options));
  InitLlamaWeights(*model, 5);
  const std::vector<int64_t> lengths{6, 2, 9, 1, 4};
  LlamaInputs packed;
  packed.segment_ids = SegmentIds(lengths);
  packed.input_ids = at::randint(0, 64, packed.segment_ids.sizes(), at::kLong);
  LlamaInputs masked;
  masked.segment_ids = packed.segment_ids.repeat({2, 1});
  masked.input_ids = packed.input_ids.repeat({2, 1});
  const at::Tensor weights = at::randn({1, packed.input_ids.size(1), 32});
  auto run = [&](const LlamaInputs& in) {
    model->zero_grad();
    at::Tensor h = model->Hidden(in).narrow(0, 0, 1);
    (h * weights).sum().backward();
    std::vector<at::Tensor> grads{h.detach()};
    for (const auto& p : model->parameters()) grads.push_back(p.grad().clone());
    return grads;
  };
  const std::vector<at::Tensor> a = run(packed), b = run(masked);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::allclose(a[i], b[i], 1e-4, 1e-5)) << i << ": " << (a[i] - b[i]).abs().max();
  }
}

TEST(AttentionTest, PackedPositionsRestartPerRun) {
  at::Tensor segments = at::tensor(std::vector<int64_t>{0, 0, 0, 1, 1, 2, 2, 0}, at::kLong).unsqueeze(0);
  at::Tensor want = at::tensor(std::vector<int64_t>{0, 1, 2, 0, 1, 0, 1, 0}, at::kLong).unsqueeze(0);
  EXPECT_TRUE(at::equal(PackedPositionIds(segments), want));
}

TEST(AttentionTest, MaskIsCausalWithinSegmentsAndSkipsPadding) {
  AttentionMaskInputs in;
  in.batch = 1;
  in.num_tokens = 4;
  in.segment_ids = at::tensor(std::vector<int64_t>{7, 7, 3, 7}, at::kLong).unsqueeze(0);
  in.attention_mask = at::tensor(std::vector<int64_t>{0, 1, 1, 1}, at::kLong).unsqueeze(0);
  at::Tensor allowed = BuildAttentionMask(in, at::kCPU).squeeze();
  // Rows are queries. Token 3 reuses id 7 after a run of 3: a new sequence, so it sees only itself.
  at::Tensor want = at::tensor(std::vector<int64_t>{0, 0, 0, 0,  //
                                                    0, 1, 0, 0,  //
                                                    0, 0, 1, 0,  //
                                                    0, 0, 0, 1},
                               at::kLong).view({4, 4}).to(at::kBool);
  EXPECT_TRUE(at::equal(allowed, want)) << allowed;
}

}  // namespace
}  // namespace llamarl
