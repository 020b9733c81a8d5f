// Random draws whose results are fixed by the C++ standard (mt19937_64 is; the std distributions and
// std::shuffle are not), so that shuffles and generated tasks are identical on every rank, compiler
// and standard library.
#pragma once

#include <cstdint>
#include <random>

namespace llamarl::controller {

// splitmix64: decorrelates nearby seeds (seed, seed + 1, epoch numbers) before they seed a generator.
inline uint64_t MixSeed(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Uniform in [0, bound), bound > 0, by rejection (no modulo bias).
inline uint64_t DrawBelow(std::mt19937_64& rng, uint64_t bound) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
  uint64_t r = rng();
  while (r >= limit) r = rng();
  return r % bound;
}

// Uniform in [lo, hi].
inline int64_t DrawBetween(std::mt19937_64& rng, int64_t lo, int64_t hi) {
  return lo + int64_t(DrawBelow(rng, uint64_t(hi - lo) + 1));
}

// Uniform in [0, 1) with 53 random bits.
inline double DrawUnit(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }

}  // namespace llamarl::controller
