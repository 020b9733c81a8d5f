// This process's resident memory, as Linux reports it in /proc/self/status, for the per-step memory
// metrics and `llamarl train --dry-run`'s check against the machine. LibTorch-free.
//   VmRSS  resident now (anonymous + file-backed pages mapped in, e.g. touched checkpoint pages)
//   VmHWM  the peak of VmRSS since the process started or since the last ResetPeakRss()
// All figures are bytes; 0 when /proc is not available (not Linux).
#pragma once

#include <cstdint>

namespace llamarl {

int64_t CurrentRssBytes();
int64_t PeakRssBytes();
// Starts a new peak window (writes "5" to /proc/self/clear_refs, Linux >= 4.0): the next
// PeakRssBytes() is the peak since now. Returns false when the kernel refused (the peak then stays
// the process's lifetime peak).
bool ResetPeakRss();
// The peak since the previous call (the process's start for the first), then a new window starts
// (ResetPeakRss). Per-step metrics call it once per step. Thread-safe.
int64_t TakeWindowPeakRssBytes();
// The peak over the whole process, across windows.
int64_t LifetimePeakRssBytes();
// MemTotal of /proc/meminfo: the machine's memory.
int64_t HostMemoryTotalBytes();

}  // namespace llamarl
