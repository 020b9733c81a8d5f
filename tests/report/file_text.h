// Whole-file reads and writes for the run-directory tests (metrics, trace, report).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace llamarl::testing {

inline std::string ReadFileText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void WriteFileText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

}  // namespace llamarl::testing
