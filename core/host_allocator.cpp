#include "core/host_allocator.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llamarl {
namespace {
bool tuned = false;
}  // namespace

bool HostAllocatorTuned() { return tuned; }

bool TuneHostAllocator() {
  const char* choice = std::getenv("LLAMARL_HOST_ALLOCATOR");
  if (choice && std::strcmp(choice, "default") == 0) return tuned = false;
#if defined(__GLIBC__)
  // A fixed threshold also stops glibc's dynamic adjustment; the trim threshold keeps freed memory
  // at the top of the heap for the next step instead of returning it to the kernel.
  const bool mmap_ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kHostMmapThreshold)) == 1;
  const bool trim_ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(kHostTrimThreshold)) == 1;
  return tuned = mmap_ok && trim_ok;
#else
  return false;
#endif
}

}  // namespace llamarl
