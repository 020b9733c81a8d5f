#include "core/logging.h"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace llamarl {
namespace {

LogLevel LevelFromEnv() {
  const char* v = std::getenv("LLAMARL_LOG_LEVEL");
  if (!v) return LogLevel::kInfo;
  if (!std::strcmp(v, "debug")) return LogLevel::kDebug;
  if (!std::strcmp(v, "warning")) return LogLevel::kWarning;
  if (!std::strcmp(v, "error")) return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<int> g_level{int(LevelFromEnv())};
std::atomic<int> g_rank{-1};
const auto g_start = std::chrono::steady_clock::now();
std::mutex g_mutex;

}  // namespace

void SetLogLevel(LogLevel level) { g_level = int(level); }
LogLevel GetLogLevel() { return LogLevel(g_level.load()); }
void SetLogRank(int rank) { g_rank = rank; }

void LogMessage(LogLevel level, const std::string& message) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
  const char* tag = level == LogLevel::kWarning ? " warning:" : level == LogLevel::kError ? " error:" : "";
  char prefix[64];
  int rank = g_rank.load();
  if (rank >= 0)
    std::snprintf(prefix, sizeof(prefix), "[llamarl r%d %.1fs]%s ", rank, elapsed, tag);
  else
    std::snprintf(prefix, sizeof(prefix), "[llamarl %.1fs]%s ", elapsed, tag);
  std::lock_guard<std::mutex> lock(g_mutex);
  std::fprintf(stderr, "%s%s\n", prefix, message.c_str());
  std::fflush(stderr);
}

}  // namespace llamarl
