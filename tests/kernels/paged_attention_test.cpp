// PagedDecodeAttention's fused CPU loop against its composite form (gather the blocks, multiply-reduce,
// masked f32 softmax) and against a dense softmax written out per sequence: grouped and plain heads,
// odd head dims, blocks out of order and shared between sequences, lengths that end inside a block,
// float32 and bfloat16.
#include "kernels/paged_attention.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <tuple>
#include <vector>

namespace llamarl::kernels {
namespace {

struct Case {
  int64_t n, heads, kv_heads, head_dim, block_size, blocks_per_row;
};

struct Inputs {
  at::Tensor q;
  PagedKv kv;
};

// Random blocks drawn from a pool larger than needed, so rows land out of order; row 1 reuses row
// 0's first block (a shared prefix).
Inputs MakeInputs(const Case& c, at::ScalarType dtype, uint64_t seed) {
  at::manual_seed(seed);
  const int64_t num_blocks = c.n * c.blocks_per_row + 3;
  Inputs in;
  in.q = at::randn({c.n, c.heads, c.head_dim}).to(dtype);
  in.kv.keys = at::randn({num_blocks, c.block_size, c.kv_heads, c.head_dim}).to(dtype);
  in.kv.values = at::randn({num_blocks, c.block_size, c.kv_heads, c.head_dim}).to(dtype);
  in.kv.blocks = at::randperm(num_blocks, at::kLong).narrow(0, 0, c.n * c.blocks_per_row).view({c.n, c.blocks_per_row}).clone();
  if (c.n > 1) in.kv.blocks[1][0] = in.kv.blocks[0][0];
  in.kv.lengths = at::randint(1, c.blocks_per_row * c.block_size + 1, {c.n}, at::kLong);
  in.kv.lengths[0] = c.blocks_per_row * c.block_size;  // a full row
  return in;
}

// softmax(q k^T / sqrt(E)) v per sequence and head in float64, from the blocks listed by hand.
at::Tensor Dense(const Inputs& in) {
  const int64_t n = in.q.size(0), heads = in.q.size(1), kv_heads = in.kv.keys.size(2);
  const int64_t block_size = in.kv.keys.size(1);
  at::Tensor out = at::empty(in.q.sizes(), at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t length = in.kv.lengths[i].item<int64_t>();
    std::vector<at::Tensor> k_rows, v_rows;
    for (int64_t p = 0; p < length; ++p) {
      const int64_t block = in.kv.blocks[i][p / block_size].item<int64_t>();
      k_rows.push_back(in.kv.keys[block][p % block_size]);
      v_rows.push_back(in.kv.values[block][p % block_size]);
    }
    const at::Tensor k = at::stack(k_rows).to(at::kDouble), v = at::stack(v_rows).to(at::kDouble);  // [L, K, E]
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t kv_head = h / (heads / kv_heads);
      const at::Tensor scores = at::mv(k.select(1, kv_head), in.q[i][h].to(at::kDouble)) / std::sqrt(double(in.q.size(2)));
      out[i][h] = at::mv(v.select(1, kv_head).t(), at::softmax(scores, 0));
    }
  }
  return out;
}

class PagedAttentionCases : public ::testing::TestWithParam<Case> {};

TEST_P(PagedAttentionCases, Float32MatchesCompositeAndDense) {
  const Inputs in = MakeInputs(GetParam(), at::kFloat, 7);
  const at::Tensor fused = PagedDecodeAttention(in.q, in.kv);
  const at::Tensor composite = PagedDecodeAttentionComposite(in.q, in.kv);
  ASSERT_EQ(fused.sizes(), in.q.sizes());
  EXPECT_TRUE(at::allclose(fused, composite, 1e-5, 1e-6)) << (fused - composite).abs().max();
  const at::Tensor dense = Dense(in);
  EXPECT_TRUE(at::allclose(fused.to(at::kDouble), dense, 1e-5, 1e-6)) << (fused.to(at::kDouble) - dense).abs().max();
}

TEST_P(PagedAttentionCases, Bfloat16MatchesDenseToItsRounding) {
  const Inputs in = MakeInputs(GetParam(), at::kBFloat16, 8);
  const at::Tensor fused = PagedDecodeAttention(in.q, in.kv);
  ASSERT_EQ(fused.scalar_type(), at::kBFloat16);
  // The fused loop accumulates in float32 and rounds once; the composite rounds its scores and
  // probabilities to bf16 on the way, so both are held to the dense float64 result.
  const at::Tensor dense = Dense(in);
  EXPECT_TRUE(at::allclose(fused.to(at::kDouble), dense, 1e-2, 1e-2)) << (fused.to(at::kDouble) - dense).abs().max();
  const at::Tensor composite = PagedDecodeAttentionComposite(in.q, in.kv).to(at::kDouble);
  EXPECT_TRUE(at::allclose(composite, dense, 5e-2, 5e-2)) << (composite - dense).abs().max();
}

INSTANTIATE_TEST_SUITE_P(Shapes, PagedAttentionCases,
                         ::testing::Values(Case{1, 1, 1, 8, 4, 1}, Case{3, 4, 2, 64, 16, 3}, Case{5, 8, 2, 12, 4, 5},
                                           Case{4, 6, 6, 17, 3, 4}, Case{2, 8, 1, 64, 16, 2}));

TEST(PagedAttention, RejectsALengthBeyondTheRowsBlocks) {
  Inputs in = MakeInputs({2, 2, 1, 8, 4, 2}, at::kFloat, 9);
  in.kv.lengths[1] = 9;
  EXPECT_THROW(PagedDecodeAttention(in.q, in.kv), std::exception);
}

TEST(PagedAttention, RejectsACacheOfAnotherDtype) {
  Inputs in = MakeInputs({2, 2, 1, 8, 4, 2}, at::kFloat, 10);
  EXPECT_THROW(PagedDecodeAttention(in.q.to(at::kBFloat16), in.kv), std::exception);
}

}  // namespace
}  // namespace llamarl::kernels
