#include "core/launcher.h"

#include <cstdlib>

namespace llamarl {
namespace {

// The first of the launchers' variables that is set, as a number; `fallback` when none is (or the
// value is not a number at least `min`).
int FromEnvironment(const char* const (&names)[3], int min, int fallback) {
  for (const char* name : names) {
    const char* v = std::getenv(name);
    if (!v || !*v) continue;
    char* end = nullptr;
    const long n = std::strtol(v, &end, 10);
    return (*end == '\0' && n >= min) ? int(n) : fallback;
  }
  return fallback;
}

}  // namespace

int LauncherWorldSize() {
  static const char* const kNames[3] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
  return FromEnvironment(kNames, 1, 1);
}

int LauncherWorldRank() {
  static const char* const kNames[3] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
  return FromEnvironment(kNames, 0, 0);
}

}  // namespace llamarl
