// Append-only JSON-lines files that a crash of their writer cannot corrupt beyond the last line:
// metrics.jsonl and the per-rank trace files (report/metrics.h, report/trace.h).
//
// Crash model: a line is written with one fwrite and flushed, so after a crash the file holds whole
// lines plus at most one torn (unterminated) tail. Readers drop that tail with a warning; writers that
// reopen the file (resume) cut it off first, so that the next line does not glue onto it and turn a
// torn tail into a malformed middle line.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

namespace llamarl {

class JsonlAppender {
 public:
  // Creates the parent directory. append = false truncates; append = true keeps the whole lines
  // already there (cutting a torn tail). `what` names the file in errors ("metrics", "trace").
  JsonlAppender(const std::string& path, bool append, std::string what);
  ~JsonlAppender();
  JsonlAppender(const JsonlAppender&) = delete;
  JsonlAppender& operator=(const JsonlAppender&) = delete;

  // Writes `row` as one line and flushes it to the kernel. Thread-safe (one mutex per file), so
  // concurrent writers never interleave inside a line.
  void Append(const nlohmann::json& row);
  const std::string& path() const { return path_; }

 private:
  std::string path_, what_;
  std::FILE* file_ = nullptr;
  std::mutex mutex_;
};

struct JsonlContents {
  std::vector<nlohmann::json> rows;       // every whole line, each a JSON object
  std::vector<int64_t> line_numbers;      // 1-based line of each row, for error messages
  bool torn_tail = false;                 // an unterminated, unparseable last line was dropped
};

// Reads a JSON-lines file of objects. Blank lines are skipped. A torn last line is dropped (and
// reported in torn_tail); any other line that is not a JSON object is an Error naming path:line.
JsonlContents ReadJsonl(const std::string& path, const std::string& what);

// Cuts an unterminated last line off `path`; returns the number of bytes removed (0 when the file
// ends with a newline, is empty or is absent).
int64_t CutTornTail(const std::string& path);

}  // namespace llamarl
