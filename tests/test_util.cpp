#include "tests/test_util.h"

#include <unistd.h>

#include <array>
#include <atomic>
#include <cstdio>
#include <filesystem>

namespace llamarl::testing {

std::string SharedDataPath(const std::string& relative) {
  std::filesystem::path p = std::filesystem::path(LLAMARL_SHARED_DATA) / relative;
  return std::filesystem::exists(p) ? p.lexically_normal().string() : "";
}

std::string FixturePath(const std::string& relative) {
  return (std::filesystem::path(LLAMARL_SOURCE_DIR) / "tests" / "fixtures" / relative).string();
}

std::string MakeTempDir(const std::string& tag) {
  static std::atomic<int> counter{0};
  auto dir = std::filesystem::path(LLAMARL_BINARY_DIR) / "Testing" / "tmp" /
             (tag + "-" + std::to_string(getpid()) + "-" + std::to_string(counter++));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

std::string LlamarlBinary() { return (std::filesystem::path(LLAMARL_BINARY_DIR) / "cli" / "llamarl").string(); }

int RunCommand(const std::string& command, std::string* output, bool merge_stderr) {
  std::string full = command + (merge_stderr ? " 2>&1" : "");
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buffer;
  output->clear();
  size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) output->append(buffer.data(), n);
  int status = pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace llamarl::testing
