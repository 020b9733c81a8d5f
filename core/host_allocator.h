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
// LLAMARL_HOST_ALLOCATOR=default leaves glibc's behaviour untouched.
#pragma once

namespace llamarl {

// Returns true when the tuning was applied (glibc, not disabled by the environment).
bool TuneHostAllocator();

}  // namespace llamarl
