#include "core/host_allocator.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace llamarl {
namespace {

#if defined(__GLIBC__)
TEST(HostAllocator, LargeBlocksComeFromTheHeapNotFreshMmaps) {
  ASSERT_TRUE(TuneHostAllocator());
  const size_t before = mallinfo2().hblks;  // blocks currently served by mmap
  constexpr size_t kBytes = size_t(96) << 20;  // above glibc's largest adaptive threshold (32 MiB)
  void* p = std::malloc(kBytes);
  ASSERT_NE(p, nullptr);
  std::memset(p, 1, kBytes);
  EXPECT_EQ(mallinfo2().hblks, before) << "a 96 MiB block was mmapped: the threshold was not raised";
  std::free(p);
}

TEST(HostAllocator, BlocksFromTheThresholdUpGetTheirOwnMapping) {
  ASSERT_TRUE(TuneHostAllocator());
  const size_t before = mallinfo2().hblks;
  void* p = std::malloc(kHostMmapThreshold + (size_t(16) << 20));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(mallinfo2().hblks, before + 1) << "a block above kHostMmapThreshold came from the heap";
  std::free(p);
  EXPECT_EQ(mallinfo2().hblks, before) << "the block's mapping was not returned on free";
}

TEST(HostAllocator, TheEnvironmentCanLeaveGlibcAlone) {
  ASSERT_EQ(setenv("LLAMARL_HOST_ALLOCATOR", "default", 1), 0);
  EXPECT_FALSE(TuneHostAllocator());
  unsetenv("LLAMARL_HOST_ALLOCATOR");
}
#endif

}  // namespace
}  // namespace llamarl
