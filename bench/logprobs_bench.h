// `llamarl bench logprobs`: peak memory and time of the tiled TokenLogprobs forward+backward against
// the plain composition log_softmax(hidden @ weight^T).gather(targets) + backward, both measured in
// the same run on CPU. The goal: >= 4x less memory at <= 1.5x the time.
#pragma once

#include <nlohmann/json.hpp>

#include <c10/core/Device.h>

#include <cstdint>
#include <string>

namespace llamarl::bench {

struct LogprobsBenchOptions {
  int64_t tokens = 4096;          // T
  int64_t vocab = 151936;         // V (Qwen2's vocabulary)
  int64_t hidden = 1024;          // D
  std::string dtype = "float32";  // float32 | bfloat16
  int64_t repeats = 1;            // timed forward+backward passes per variant; the fastest is reported
  int64_t token_chunk = 1024;     // TokenLogprobsOptions of the fused variant
  int64_t vocab_chunk = 8192;
  uint64_t seed = 0;
  // On a GPU both variants run in this process and the peak is the CUDA caching allocator's.
  c10::Device device = c10::Device(c10::kCPU);
};

// Runs each variant in a forked child process (see logprobs_bench.cpp for why) and returns
// {"fused_peak_bytes", "naive_peak_bytes", "memory_ratio" (naive / fused), "time_ratio" (fused /
// naive), "fused_seconds", "naive_seconds", "max_abs_logprob_diff", and the options}. Throws when a
// child fails (for example when the naive variant runs out of memory), naming the variant.
// Must be called before this process has run parallel LibTorch work (libgomp's thread pool does not
// survive fork), as `llamarl bench logprobs` does.
nlohmann::json RunLogprobsBench(const LogprobsBenchOptions& options = {});

}  // namespace llamarl::bench
