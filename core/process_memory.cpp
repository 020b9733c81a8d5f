#include "core/process_memory.h"

#include <algorithm>
#include <atomic>
#include <fstream>
#include <string>

namespace llamarl {
namespace {

// The "<key> <n> kB" line of a /proc file, in bytes.
std::atomic<int64_t> lifetime_peak{0};  // the largest window peak taken so far

void RaiseLifetimePeak(int64_t bytes) {
  int64_t seen = lifetime_peak.load();
  while (bytes > seen && !lifetime_peak.compare_exchange_weak(seen, bytes)) {
  }
}

int64_t ReadKibField(const char* path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, key.size(), key) != 0) continue;
    const size_t digits = line.find_first_of("0123456789");
    if (digits == std::string::npos) return 0;
    return std::stoll(line.substr(digits)) * 1024;
  }
  return 0;
}

}  // namespace

int64_t CurrentRssBytes() { return ReadKibField("/proc/self/status", "VmRSS:"); }
int64_t PeakRssBytes() { return ReadKibField("/proc/self/status", "VmHWM:"); }
int64_t HostMemoryTotalBytes() { return ReadKibField("/proc/meminfo", "MemTotal:"); }

int64_t TakeWindowPeakRssBytes() {
  const int64_t peak = PeakRssBytes();
  RaiseLifetimePeak(peak);
  ResetPeakRss();
  return peak;
}

int64_t LifetimePeakRssBytes() {
  RaiseLifetimePeak(PeakRssBytes());
  return lifetime_peak.load();
}

bool ResetPeakRss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return bool(out);
}

}  // namespace llamarl
