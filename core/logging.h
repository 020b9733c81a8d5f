// Concise log lines for long-running jobs: "[llamarl r1 12.3s] message". Rank and elapsed time are
// prefixed so that the interleaved output of several ranks stays readable. Thread-safe.
#pragma once

#include "core/check.h"

#include <string>

namespace llamarl {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// Messages below the level are dropped; the default is kInfo, or LLAMARL_LOG_LEVEL=debug|info|warning|error.
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// The rank shown in the prefix (set once the communicator exists); -1 hides it.
void SetLogRank(int rank);
void LogMessage(LogLevel level, const std::string& message);

template <typename... Parts>
void LogInfo(const Parts&... parts) {
  if (GetLogLevel() <= LogLevel::kInfo) LogMessage(LogLevel::kInfo, detail::StrCat(parts...));
}
template <typename... Parts>
void LogWarning(const Parts&... parts) {
  if (GetLogLevel() <= LogLevel::kWarning) LogMessage(LogLevel::kWarning, detail::StrCat(parts...));
}
template <typename... Parts>
void LogDebug(const Parts&... parts) {
  if (GetLogLevel() <= LogLevel::kDebug) LogMessage(LogLevel::kDebug, detail::StrCat(parts...));
}

}  // namespace llamarl
