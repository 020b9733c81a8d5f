// `llamarl bench weight-sync`: one policy push from trainer ranks (ZeRO-3 flat f32 master shards) to
// generator ranks (tensor-parallel bf16 shards) under mpirun, three ways in the same run:
//   ddma      every trainer rank writes its bytes straight into the generator shards (ExecuteTransfer);
//   baseline  per parameter: gather on trainer rank 0, cast, broadcast to every generator (old systems);
//   memcpy    one rank copies the same number of bytes in its own memory (the bandwidth ceiling).
// The goals: ddma >= 3x faster than the baseline at 4 ranks, and >= 50% of memcpy bandwidth.
#pragma once

#include "core/communicator.h"

#include <nlohmann/json.hpp>

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace llamarl::bench {

struct WeightSyncBenchOptions {
  std::string model = "100m";  // "100m" (Llama-shaped, ~100M parameters), or a preset: tiny, 8b, 70b, 405b
  int64_t num_layers = 0;      // > 0 replaces the model's layer count (scales the size)
  int num_generators = 0;      // 0: half the world; the rest of the ranks train
  int64_t bucket_bytes = int64_t(32) << 20;  // DDMA bucket per (trainer, generator) pair and round
  int repeats = 3;             // timed pushes per method after one warm-up; the fastest is reported
  bool checksum = false;       // DDMA verifies a hash of every bucket (slower; for debugging)
  // Also time DDMA with the fp8 plan fp8 generators receive (e4m3fn with per-row scales of the full
  // weights, scales computed per push): "ddma_fp8_s", "fp8_bytes" (bits + scales landing on
  // generators), "fp8_speedup_vs_ddma" (ddma_s / ddma_fp8_s).
  bool fp8 = false;
  // Where every rank's shards live; `world` must move tensors of this device (nccl on cuda). The
  // memcpy baseline is then a device-to-device copy.
  c10::Device device = c10::Device(c10::kCPU);
};

// Collective over `world` (2 ranks or more). Print-free; every rank returns the same JSON:
// {"ranks", "bytes" (bf16 bytes landing on generators), "ddma_s", "baseline_s", "memcpy_s",
//  "speedup_vs_baseline" (baseline_s / ddma_s), "fraction_of_memcpy" (memcpy_s / ddma_s), the three
//  GB/s figures, "results_match" (ddma and baseline shards bitwise equal), and the setup}.
nlohmann::json RunWeightSyncBench(Communicator& world, const WeightSyncBenchOptions& options = {});

}  // namespace llamarl::bench
