// Helpers shared by the test suites.
#pragma once

#include <string>

namespace llamarl::testing {

// Path under ../shared/data, or "" when that data is not present (the caller then GTEST_SKIPs).
std::string SharedDataPath(const std::string& relative);
// Path of a file checked into tests/fixtures.
std::string FixturePath(const std::string& relative);
// A fresh empty directory under the build tree's Testing/tmp, unique per process and call.
std::string MakeTempDir(const std::string& tag);
// The built llamarl program.
std::string LlamarlBinary();
// Runs a shell command, returns its exit status and fills *output with stdout (and stderr when
// merge_stderr).
int RunCommand(const std::string& command, std::string* output, bool merge_stderr = false);

}  // namespace llamarl::testing

// Skips the current test with a message when shared data is absent.
#define LLAMARL_REQUIRE_SHARED_DATA(var, relative)                                          \
  std::string var = ::llamarl::testing::SharedDataPath(relative);                          \
  if (var.empty()) GTEST_SKIP() << "../shared/data/" << relative << " not present; skipping"
