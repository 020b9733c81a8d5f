// Scalar building blocks shared bit-for-bit by the CPU implementations (kernels/*.cpp) and the CUDA
// kernels (kernels/*.cu): the float8 e4m3fn codec and the Philox4x32-10 counter-based generator.
// Plain C++ without LibTorch so nvcc can include it; every function is host+device and pure, so the
// CPU and CUDA paths produce the same bits given the same inputs.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LLAMARL_HD __host__ __device__ __forceinline__
#else
#define LLAMARL_HD inline
#endif

namespace llamarl::kernels {

// Largest finite e4m3fn magnitude: 0.1111.110 = 2^8 * 1.75.
constexpr float kFp8E4m3Max = 448.0f;
// The canonical e4m3fn NaN (S.1111.111 with S=0); e4m3fn has no infinities.
constexpr uint8_t kFp8E4m3NaN = 0x7F;

LLAMARL_HD uint32_t FloatBits(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof(bits));
  return bits;
}

// f32 -> e4m3fn (bias 7, 3 mantissa bits): round to nearest, ties to even; magnitudes above 448
// (including +-inf) saturate to +-448; NaN becomes 0x7F. The rounding is done on integers so it
// does not depend on the floating-point rounding mode of the host or device.
LLAMARL_HD uint8_t EncodeFp8E4m3(float f) {
  const uint32_t bits = FloatBits(f);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80u);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) return kFp8E4m3NaN;
  if (abs_bits >= 0x43E00000u) return sign | 0x7E;  // |f| >= 448 (incl. inf): saturate
  const int exponent = static_cast<int>(abs_bits >> 23) - 127;
  if (exponent < -6) {
    // Subnormal range: the code is |f| / 2^-9 rounded; |f| * 512 < 8 is exact in float, and
    // rounding 7.5+ up yields 8 = 0x08, the smallest normal, as the bit layout requires.
    float abs_f;
    memcpy(&abs_f, &abs_bits, sizeof(abs_f));
    const float scaled = abs_f * 512.0f;
    uint32_t q = static_cast<uint32_t>(scaled);
    const float rem = scaled - static_cast<float>(q);
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return sign | static_cast<uint8_t>(q);
  }
  uint32_t mantissa = (abs_bits & 0x7FFFFFu) >> 20;
  const uint32_t rest = abs_bits & 0xFFFFFu;
  uint32_t biased = static_cast<uint32_t>(exponent + 7);
  if (rest > 0x80000u || (rest == 0x80000u && (mantissa & 1u))) ++mantissa;
  if (mantissa == 8u) {
    mantissa = 0;
    ++biased;
  }
  uint32_t code = (biased << 3) | mantissa;
  if (code > 0x7Eu) code = 0x7Eu;  // rounding up past 448 would reach 480 or NaN's code
  return sign | static_cast<uint8_t>(code);
}

// e4m3fn -> f32, exact (every e4m3fn value is representable in f32).
LLAMARL_HD float DecodeFp8E4m3(uint8_t code) {
  const uint32_t sign = static_cast<uint32_t>(code & 0x80u) << 24;
  const uint32_t exponent = (code >> 3) & 0xFu;
  const uint32_t mantissa = code & 0x7u;
  uint32_t bits;
  if (exponent == 0xFu && mantissa == 0x7u) {
    bits = 0x7FC00000u;
  } else if (exponent == 0) {
    float magnitude = static_cast<float>(mantissa) * (1.0f / 512.0f);
    memcpy(&bits, &magnitude, sizeof(bits));
  } else {
    bits = ((exponent - 7 + 127) << 23) | (mantissa << 20);
  }
  bits |= sign;
  float out;
  memcpy(&out, &bits, sizeof(out));
  return out;
}

// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a keyed
// bijection of a 128-bit counter, so stream (key, counter) needs no state and any row or thread
// can jump straight to its own numbers. Known-answer values are checked in tests/kernels.
struct Philox4x32 {
  uint32_t v[4];
};

LLAMARL_HD void MulHiLo32(uint32_t a, uint32_t b, uint32_t* hi, uint32_t* lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  *lo = static_cast<uint32_t>(product);
}

LLAMARL_HD Philox4x32 Philox4x32x10(Philox4x32 counter, uint32_t key0, uint32_t key1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    MulHiLo32(0xD2511F53u, counter.v[0], &hi0, &lo0);
    MulHiLo32(0xCD9E8D57u, counter.v[2], &hi1, &lo1);
    counter = Philox4x32{{hi1 ^ counter.v[1] ^ key0, lo1, hi0 ^ counter.v[3] ^ key1, lo0}};
    key0 += 0x9E3779B9u;
    key1 += 0xBB67AE85u;
  }
  return counter;
}

// The uniform in [0, 1) of draw `offset` for `seed`: the 64-bit seed is the key, the offset the
// counter. 24 random bits make every value exactly representable in float.
LLAMARL_HD float PhiloxUniform(uint64_t seed, uint64_t offset) {
  const Philox4x32 counter{{static_cast<uint32_t>(offset), static_cast<uint32_t>(offset >> 32), 0u, 0u}};
  const Philox4x32 out = Philox4x32x10(counter, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return static_cast<float>(out.v[0] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace llamarl::kernels
