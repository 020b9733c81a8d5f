#include "report/jsonl_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string_view>

#include "core/check.h"
#include "core/logging.h"

namespace llamarl {
namespace fs = std::filesystem;

int64_t CutTornTail(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) return 0;
  std::ifstream in(path, std::ios::binary);
  LLAMARL_CHECK(in, "cannot read '", path, "': ", std::strerror(errno));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.empty() || data.back() == '\n') return 0;
  size_t keep = data.rfind('\n');
  keep = keep == std::string::npos ? 0 : keep + 1;
  fs::resize_file(path, keep, ec);
  LLAMARL_CHECK(!ec, "cannot cut the torn last line off '", path, "': ", ec.message());
  return static_cast<int64_t>(data.size() - keep);
}

JsonlAppender::JsonlAppender(const std::string& path, bool append, std::string what)
    : path_(path), what_(std::move(what)) {
  fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  LLAMARL_CHECK(!ec, what_, ": cannot create the directory '", parent.string(), "' for '", path, "': ",
                ec.message());
  if (append) {
    int64_t cut = CutTornTail(path);
    if (cut > 0) LogWarning(what_, ": '", path, "' ended with a torn line (", cut, " bytes, from a crash); cut it off before appending");
  }
  file_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  LLAMARL_CHECK(file_ != nullptr, what_, ": cannot open '", path, "' for writing: ", std::strerror(errno),
                " (check that the run directory is writable)");
}

JsonlAppender::~JsonlAppender() {
  if (file_) std::fclose(file_);
}

// fflush hands the line to the kernel, which keeps it when the process crashes or is killed (the
// failures a training job sees); only a power loss or kernel crash could lose it, which fsync would
// guard against at the cost of a disk round trip per line (milliseconds on network filesystems).
void JsonlAppender::Append(const nlohmann::json& row) {
  std::string line = row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(mutex_);
  bool ok = std::fwrite(line.data(), 1, line.size(), file_) == line.size() && std::fflush(file_) == 0;
  LLAMARL_CHECK(ok, what_, ": writing to '", path_, "' failed: ", std::strerror(errno),
                " (is the disk full?)");
}

JsonlContents ReadJsonl(const std::string& path, const std::string& what) {
  std::ifstream in(path, std::ios::binary);
  LLAMARL_CHECK(in, what, ": cannot read '", path, "': ", std::strerror(errno));
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  JsonlContents out;
  size_t pos = 0;
  int64_t line_number = 0;
  while (pos < data.size()) {
    size_t end = data.find('\n', pos);
    bool terminated = end != std::string::npos;
    if (!terminated) end = data.size();
    std::string_view line(data.data() + pos, end - pos);
    pos = end + 1;
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json row = nlohmann::json::parse(line.begin(), line.end(), nullptr, false);
    if (row.is_discarded() && !terminated) {
      out.torn_tail = true;
      break;
    }
    LLAMARL_CHECK(!row.is_discarded(), what, ": ", path, ":", line_number,
                  " is not valid JSON (only the last line may be torn by a crash; repair or delete this line)");
    LLAMARL_CHECK(row.is_object(), what, ": ", path, ":", line_number, " must be a JSON object, got ",
                  row.dump().substr(0, 80));
    out.rows.push_back(std::move(row));
    out.line_numbers.push_back(line_number);
  }
  return out;
}

}  // namespace llamarl
