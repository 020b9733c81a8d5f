// The resident-memory figures behind the per-step memory metrics: a peak that sees pages the
// process touched, and windows that start over (clear_refs) while the lifetime peak is kept.
#include "core/process_memory.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

namespace llamarl {
namespace {

constexpr size_t kBytes = size_t(256) << 20;

// Touches `kBytes` of fresh anonymous memory, then returns it to the kernel (munmap: the allocator
// cannot keep it, so the resident set really drops).
void TouchAndRelease() {
  void* p = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  std::memset(p, 1, kBytes);
  munmap(p, kBytes);
}

TEST(ProcessMemoryTest, PeakSeesTouchedPagesAndWindowsStartOver) {
  const int64_t rss = CurrentRssBytes();
  ASSERT_GT(rss, 0) << "/proc/self/status has no VmRSS";
  ASSERT_GT(HostMemoryTotalBytes(), rss);
  TakeWindowPeakRssBytes();  // a window starting now
  TouchAndRelease();
  const int64_t window = TakeWindowPeakRssBytes();
  EXPECT_GE(window, rss + int64_t(kBytes) * 9 / 10) << "the window's peak includes the touched 256 MiB";
  EXPECT_LT(CurrentRssBytes(), window - int64_t(kBytes) / 2) << "munmap returned the pages";
  if (!ResetPeakRss()) GTEST_SKIP() << "the kernel refused /proc/self/clear_refs; windows cannot start over";
  EXPECT_LT(TakeWindowPeakRssBytes(), window - int64_t(kBytes) / 2) << "a new window forgets the old peak";
  EXPECT_GE(LifetimePeakRssBytes(), window) << "the lifetime peak keeps it";
}

}  // namespace
}  // namespace llamarl
