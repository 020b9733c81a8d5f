// float8 e4m3fn casting: the scalar codec against hand-worked bit patterns and against a brute-force
// nearest-value search over all 254 finite codes, then the tensor API (scales, layouts, dtypes).
#include "core/check.h"
#include "kernels/fp8.h"
#include "kernels/scalar_math.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

namespace llamarl::kernels {
namespace {

TEST(Fp8E4m3, EncodesHandWorkedBitPatterns) {
  struct Case {
    float value;
    uint8_t code;
  };
  const float inf = std::numeric_limits<float>::infinity();
  const Case cases[] = {
      {0.0f, 0x00},          {-0.0f, 0x80},
      {1.0f, 0x38},          // 0.0111.000: exponent 0 + bias 7
      {-2.0f, 0xC0},         // 1.1000.000
      {0.1f, 0x1D},          // 1.6 * 2^-4: mantissa 4.8/8 rounds to 5 -> 0.0011.101
      {1.0625f, 0x38},       // 1 + 0.5/8: tie, rounds to the even mantissa 0
      {1.1875f, 0x3A},       // 1 + 1.5/8: tie, rounds to the even mantissa 2
      {15.5f, 0x58},         // 1.9375 * 8: mantissa 7.5 ties to 8, carrying into the exponent -> 16
      {17.0f, 0x58},         // 1.0625 * 16: tie to even -> 16
      {240.0f, 0x77},        // 1.875 * 2^7
      {448.0f, 0x7E},        {-448.0f, 0xFE},
      {450.0f, 0x7E},        {464.0f, 0x7E},  // would round to 480, which e4m3fn lacks: saturate
      {1e6f, 0x7E},          {inf, 0x7E},      {-inf, 0xFE},
      {std::ldexp(1.0f, -6), 0x08},           // smallest normal
      {std::ldexp(1.0f, -9), 0x01},           // smallest subnormal
      {std::ldexp(1.0f, -10), 0x00},          // half of it: tie to even 0
      {std::ldexp(3.0f, -10), 0x02},          // 1.5 subnormal steps: tie to even 2
      {std::ldexp(7.5f, -9), 0x08},           // 7.5 steps: tie to 8, the smallest normal
      {std::ldexp(-5.0f, -9), 0x85},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(EncodeFp8E4m3(c.value), c.code) << "value " << c.value;
  }
  EXPECT_EQ(EncodeFp8E4m3(std::nanf("")), kFp8E4m3NaN);
  EXPECT_EQ(EncodeFp8E4m3(-std::nanf("")), kFp8E4m3NaN);
}

TEST(Fp8E4m3, DecodesHandWorkedBitPatterns) {
  EXPECT_EQ(DecodeFp8E4m3(0x38), 1.0f);
  EXPECT_EQ(DecodeFp8E4m3(0x7E), 448.0f);
  EXPECT_EQ(DecodeFp8E4m3(0xFE), -448.0f);
  EXPECT_EQ(DecodeFp8E4m3(0x01), std::ldexp(1.0f, -9));
  EXPECT_EQ(DecodeFp8E4m3(0x07), std::ldexp(7.0f, -9));
  EXPECT_EQ(DecodeFp8E4m3(0x08), std::ldexp(1.0f, -6));
  EXPECT_EQ(DecodeFp8E4m3(0x1D), 0.1015625f);
  EXPECT_EQ(DecodeFp8E4m3(0xC0), -2.0f);
  EXPECT_TRUE(std::signbit(DecodeFp8E4m3(0x80)));
  EXPECT_TRUE(std::isnan(DecodeFp8E4m3(0x7F)));
  EXPECT_TRUE(std::isnan(DecodeFp8E4m3(0xFF)));
}

TEST(Fp8E4m3, EveryFiniteCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    if ((code & 0x7F) == 0x7F) continue;
    EXPECT_EQ(EncodeFp8E4m3(DecodeFp8E4m3(uint8_t(code))), code) << "code " << code;
  }
}

// Independent reference: the nearest finite e4m3fn value by exhaustive search, ties to the code with
// an even last bit (the even mantissa), values beyond 448 saturating.
uint8_t NearestCodeBySearch(float value) {
  const double target = std::min(std::fabs(double(value)), 448.0);
  int best = 0;
  double best_error = std::numeric_limits<double>::infinity();
  for (int code = 0; code <= 0x7E; ++code) {
    const double error = std::fabs(double(DecodeFp8E4m3(uint8_t(code))) - target);
    if (error < best_error || (error == best_error && (code & 1) == 0)) {
      best = code;
      best_error = error;
    }
  }
  return uint8_t(best | (std::signbit(value) ? 0x80 : 0));
}

TEST(Fp8E4m3, MatchesExhaustiveNearestSearch) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-12.0f, 9.5f);
  for (int i = 0; i < 20000; ++i) {
    const float value = (i % 2 ? -1.0f : 1.0f) * std::exp2(exponent(rng));
    ASSERT_EQ(EncodeFp8E4m3(value), NearestCodeBySearch(value)) << "value " << value;
  }
  // Exact midpoints between neighbouring codes are where rounding bugs hide.
  for (int code = 0; code < 0x7E; ++code) {
    const float mid = 0.5f * (DecodeFp8E4m3(uint8_t(code)) + DecodeFp8E4m3(uint8_t(code + 1)));
    ASSERT_EQ(EncodeFp8E4m3(mid), NearestCodeBySearch(mid)) << "midpoint after code " << code;
  }
}

TEST(Fp8E4m3Tensor, PerTensorScaleMapsAmaxTo448) {
  const at::Tensor x = at::tensor({-3.5f, 0.25f, 7.0f, 1.0f, 0.0f, -7.0f});
  const Fp8Tensor q = CastToFp8E4m3(x, Fp8Scaling::kPerTensor);
  ASSERT_EQ(q.data.scalar_type(), at::kByte);
  ASSERT_EQ(q.scales.sizes(), at::IntArrayRef({1}));
  EXPECT_FLOAT_EQ(q.scales.item<float>(), 7.0f / 448.0f);
  // x / scale = x * 64: -224 -> 1.1110.110 (0xF6), 16 -> 0x58, 448 -> 0x7E, 64 -> 0x68, 0, -448.
  const uint8_t expected[] = {0xF6, 0x58, 0x7E, 0x68, 0x00, 0xFE};
  for (int i = 0; i < 6; ++i) EXPECT_EQ(q.data[i].item<uint8_t>(), expected[i]) << "element " << i;
  EXPECT_TRUE(at::equal(CastFromFp8E4m3(q.data, q.scales, at::kFloat), x));
}

TEST(Fp8E4m3Tensor, PerRowScalesBoundTheRelativeError) {
  const at::Tensor x = at::randn({5, 3, 37}) * at::arange(1, 16).reshape({5, 3, 1});
  const Fp8Tensor q = CastToFp8E4m3(x, Fp8Scaling::kPerRow);
  ASSERT_EQ(q.scales.sizes(), at::IntArrayRef({5, 3}));
  EXPECT_TRUE(at::allclose(q.scales, x.abs().amax({-1}) / 448.0f));
  const at::Tensor back = CastFromFp8E4m3(q.data, q.scales, at::kFloat);
  // Normal e4m3 values carry 3 mantissa bits: relative error <= 2^-4 after rounding to nearest,
  // plus subnormal absolute error <= 2^-10 * scale for the smallest entries.
  const at::Tensor bound = x.abs() / 16.0f + q.scales.unsqueeze(-1) * std::ldexp(1.0f, -10);
  EXPECT_TRUE((back - x).abs().le(bound).all().item<bool>());
  // Each row's maximum lands exactly on +-448 * scale.
  EXPECT_TRUE(at::allclose(back.abs().amax({-1}), x.abs().amax({-1})));
}

TEST(Fp8E4m3Tensor, Bfloat16InputMatchesFloat32OfSameValues) {
  const at::Tensor x = at::randn({4, 64}).to(at::kBFloat16);
  const Fp8Tensor from_bf16 = CastToFp8E4m3(x, Fp8Scaling::kPerRow);
  const Fp8Tensor from_f32 = CastToFp8E4m3(x.to(at::kFloat), Fp8Scaling::kPerRow);
  EXPECT_TRUE(at::equal(from_bf16.data, from_f32.data));
  const at::Tensor back = CastFromFp8E4m3(from_bf16.data, from_bf16.scales, at::kBFloat16);
  EXPECT_EQ(back.scalar_type(), at::kBFloat16);
  EXPECT_TRUE(at::equal(back, CastFromFp8E4m3(from_f32.data, from_f32.scales, at::kFloat).to(at::kBFloat16)));
}

TEST(Fp8E4m3Tensor, ExplicitScalesHandleNonFiniteAndNonContiguousInput) {
  const float inf = std::numeric_limits<float>::infinity();
  const at::Tensor x = at::tensor({1.0f, std::nanf(""), inf, -inf, 2.0f, 500.0f}).reshape({3, 2}).t();
  const Fp8Tensor q = CastToFp8E4m3(x, at::ones({1}));
  const at::Tensor expected = at::tensor({0x38, 0x7E, 0x40, 0x7F, 0xFE, 0x7E}, at::kByte).reshape({2, 3});
  EXPECT_TRUE(at::equal(q.data, expected));
  EXPECT_TRUE(at::equal(CastToFp8E4m3(x, at::full({2}, 2.0f)).data.select(0, 0),
                        at::tensor({0x30, 0x7E, 0x38}, at::kByte)));  // 1/2, inf/2 saturates, 2/2
}

TEST(Fp8E4m3Tensor, RejectsBadInputsWithActionableMessages) {
  const at::Tensor x = at::randn({4, 8});
  EXPECT_THROW(CastToFp8E4m3(x.to(at::kInt), Fp8Scaling::kPerTensor), llamarl::Error);
  EXPECT_THROW(CastToFp8E4m3(at::randn({8}), Fp8Scaling::kPerRow), llamarl::Error);
  EXPECT_THROW(CastToFp8E4m3(x, at::ones({3})), llamarl::Error);
  EXPECT_THROW(CastToFp8E4m3(x, at::zeros({4})), llamarl::Error);
  at::Tensor bad = x.clone();
  bad[1][2] = std::numeric_limits<float>::infinity();
  try {
    CastToFp8E4m3(bad, Fp8Scaling::kPerRow);
    FAIL() << "expected an error for a non-finite input";
  } catch (const llamarl::Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite"), std::string::npos) << e.what();
  }
  const Fp8Tensor q = CastToFp8E4m3(x, Fp8Scaling::kPerRow);
  EXPECT_THROW(CastFromFp8E4m3(q.data.to(at::kFloat), q.scales, at::kFloat), llamarl::Error);
  EXPECT_THROW(CastFromFp8E4m3(q.data, q.scales, at::kInt), llamarl::Error);
  EXPECT_THROW(CastFromFp8E4m3(q.data, q.scales.to(at::kDouble), at::kFloat), llamarl::Error);
  EXPECT_THROW(CastFromFp8E4m3Into(q.data, q.scales, at::empty({8, 4})), llamarl::Error) << "another shape";
  EXPECT_THROW(CastFromFp8E4m3Into(q.data, q.scales, at::empty({8, 4}).t()), llamarl::Error) << "not contiguous";
  EXPECT_THROW(CastFromFp8E4m3Into(q.data, q.scales, at::empty({4, 8}, at::kInt)), llamarl::Error);
}

// Decoding into a view of a reused buffer (the engine's layer scratch) writes what the scalar decode
// times the row's scale, rounded once to the output dtype, gives, and nothing outside the view: for
// short rows (element-wise) and rows of 256 columns and more (a per-row table).
TEST(Fp8E4m3Tensor, DecodingIntoAViewEqualsTheScalarDecodeTimesTheScale) {
  for (int64_t cols : {40, 300}) {
    const at::Tensor x = at::randn({6, cols}) * at::linspace(0.01, 100.0, 6).unsqueeze(1);
    const Fp8Tensor q = CastToFp8E4m3(x, Fp8Scaling::kPerRow);
    at::Tensor expected = at::empty({6, cols});
    for (int64_t r = 0; r < 6; ++r) {
      for (int64_t c = 0; c < cols; ++c) {
        expected[r][c] = DecodeFp8E4m3(q.data[r][c].item<uint8_t>()) * q.scales[r].item<float>();
      }
    }
    for (at::ScalarType dtype : {at::kFloat, at::kBFloat16, at::kHalf}) {
      at::Tensor buffer = at::full({10, cols}, 7.0, at::TensorOptions().dtype(dtype));
      CastFromFp8E4m3Into(q.data, q.scales, buffer.narrow(0, 2, 6));
      EXPECT_TRUE(at::equal(buffer.narrow(0, 2, 6), expected.to(dtype))) << dtype << " cols " << cols;
      EXPECT_TRUE(at::equal(CastFromFp8E4m3(q.data, q.scales, dtype), expected.to(dtype))) << dtype;
      EXPECT_TRUE(at::equal(buffer.narrow(0, 0, 2), at::full({2, cols}, 7.0, buffer.options()))) << dtype;
      EXPECT_TRUE(at::equal(buffer.narrow(0, 8, 2), at::full({2, cols}, 7.0, buffer.options()))) << dtype;
    }
  }
}

}  // namespace
}  // namespace llamarl::kernels
