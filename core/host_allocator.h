// Host allocator tuning for the process (the CLI and the test main call it once, first thing).
//
// glibc serves every allocation above its mmap threshold (at most 32 MiB when left to adapt) with a
// fresh mmap and unmaps it on free, so the next tensor of that size faults in every page again. A
// trainer step allocates its flat gradient, Adam and gather buffers (tens to hundreds of MiB) every
// step: perf showed a third of the trainer's time in page faults, and on this 2-core VM raising the
// threshold made `llamarl bench train`'s unit workload 2.8x faster (10 s vs 28 s, measured
// alternately in one session). Large blocks are then carved from the heap and kept after free, the
// way jemalloc or tcmalloc keep them: the process's resident memory stays at its peak rather than
// shrinking between steps.
//
// Blocks of kHostMmapThreshold and more still get their own mapping, returned on free: at a real
// model's shapes these are the few vocabulary-sized transients ([V, D] in bf16 or f32: 272 and 545 MB
// for Qwen2.5-0.5B) that a step makes once or twice, where a fault per page costs less than the heap
// holding them forever and fragmenting around them. On the 0.5B split recipe cut to 2 prompts x 4
// samples x 16 tokens the trainer's peak RSS fell from 10.6 GB (threshold 1 GiB) to 9.8 GB; at the
// recipe's full 8 x 4 x 64 no gain was shown (11.18 GB over 3 steps, against 11.03 GB for one step
// with 1 GiB). Blocks the trainer reuses every step at that size (the ZeRO-3 flat gradient) are kept
// by the trainer itself.
//
// LLAMARL_HOST_ALLOCATOR=default leaves glibc's behaviour untouched.
#pragma once

#include <cstddef>

namespace llamarl {

inline constexpr size_t kHostMmapThreshold = size_t(256) << 20;
// Freed heap memory up to this much stays with the process (M_TRIM_THRESHOLD) for the next step, so
// a trainer's resident memory can sit up to that much above its live bytes: on the 0.5B split recipe the heap's
// live peak was 9.36 GB (heaptrack) and the RSS 11.1 GB, 10.9 GB of it anonymous. The memory plan
// counts it for trainer ranks (plan/plan_rank_memory.h, allocator_retained_bytes).
inline constexpr size_t kHostTrimThreshold = size_t(1) << 30;

// Returns true when the tuning was applied (glibc, not disabled by the environment).
bool TuneHostAllocator();
// Whether TuneHostAllocator applied the tuning in this process.
bool HostAllocatorTuned();

}  // namespace llamarl
