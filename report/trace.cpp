#include "report/trace.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>

#include "core/check.h"
#include "core/logging.h"
#include "report/jsonl_file.h"

namespace llamarl {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int64_t SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

json Metadata(const char* name, int rank, json args) {
  return {{"name", name}, {"ph", "M"}, {"pid", rank}, {"tid", 0}, {"args", std::move(args)}};
}

void CheckEvent(const json& e, const std::string& where) {
  auto is_string = [&](const char* k) { return e.contains(k) && e[k].is_string(); };
  LLAMARL_CHECK(is_string("ph") && is_string("name"), "trace: ", where,
                " is not a trace event (needs string \"ph\" and \"name\"): ", e.dump().substr(0, 120));
  LLAMARL_CHECK(e.contains("pid") && e["pid"].is_number_integer(), "trace: ", where,
                " needs an integer \"pid\" (the rank): ", e.dump().substr(0, 120));
  if (e["ph"] != "M") {
    LLAMARL_CHECK(e.contains("ts") && e["ts"].is_number(), "trace: ", where,
                  " needs a numeric \"ts\" (microseconds): ", e.dump().substr(0, 120));
  }
  if (e["ph"] == "X") {
    LLAMARL_CHECK(e.contains("dur") && e["dur"].is_number() && e["dur"].get<double>() >= 0, "trace: ", where,
                  " is a complete event and needs a numeric \"dur\" >= 0 (microseconds): ", e.dump().substr(0, 120));
  }
}

}  // namespace

int64_t Tracer::NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Tracer::Tracer(const std::string& run_dir, int rank, std::string role) : rank_(rank), role_(std::move(role)) {
  LLAMARL_CHECK(rank >= 0, "Tracer: rank must be >= 0, got ", rank);
  LLAMARL_CHECK(!role_.empty(), "Tracer: role must name the rank's role (trainer, generator, colocated), got ''");
  std::string path = (fs::path(run_dir) / "trace" / ("rank_" + std::to_string(rank) + ".jsonl")).string();
  file_ = std::make_unique<JsonlAppender>(path, /*append=*/true, "trace");
  file_->Append(Metadata("process_name", rank, {{"name", "rank " + std::to_string(rank) + " (" + role_ + ")"}}));
  file_->Append(Metadata("process_sort_index", rank, {{"sort_index", rank}}));
}

Tracer::~Tracer() = default;

const std::string& Tracer::path() const { return file_->path(); }

Tracer::Span Tracer::Scope(const std::string& phase) {
  LLAMARL_CHECK(!phase.empty(), "Tracer::Scope: the phase name must not be empty");
  return Span(this, phase);
}

void Tracer::Complete(const std::string& phase, int64_t start_us, int64_t dur_us, const json& args) {
  LLAMARL_CHECK(dur_us >= 0, "Tracer::Complete: duration of '", phase, "' must be >= 0 us, got ", dur_us);
  json event = {{"name", phase}, {"cat", role_}, {"ph", "X"},  {"ts", start_us},
                {"dur", dur_us}, {"pid", rank_}, {"tid", 0}};
  if (!args.is_null() && !args.empty()) event["args"] = args;
  file_->Append(event);
}

void Tracer::Instant(const std::string& name, const json& args) {
  json event = {{"name", name}, {"cat", role_}, {"ph", "i"}, {"s", "p"}, {"ts", NowMicros()}, {"pid", rank_}, {"tid", 0}};
  if (!args.is_null() && !args.empty()) event["args"] = args;
  file_->Append(event);
}

Tracer::Span::Span(Tracer* tracer, std::string phase)
    : tracer_(tracer),
      phase_(std::move(phase)),
      start_us_(NowMicros()),
      start_steady_ns_(SteadyNanos()),
      uncaught_at_start_(std::uncaught_exceptions()) {}

Tracer::Span::Span(Span&& other) noexcept
    : tracer_(other.tracer_),
      phase_(std::move(other.phase_)),
      start_us_(other.start_us_),
      start_steady_ns_(other.start_steady_ns_),
      uncaught_at_start_(other.uncaught_at_start_),
      args_(std::move(other.args_)) {
  other.tracer_ = nullptr;
}

Tracer::Span& Tracer::Span::Arg(const std::string& key, const json& value) {
  args_[key] = value;
  return *this;
}

void Tracer::Span::End() {
  if (!tracer_) return;
  Tracer* tracer = tracer_;
  tracer_ = nullptr;  // first, so that a failed write is not retried by the destructor
  if (std::uncaught_exceptions() > uncaught_at_start_) args_["error"] = true;
  int64_t dur_us = (SteadyNanos() - start_steady_ns_) / 1000;
  tracer->Complete(phase_, start_us_, dur_us, args_);
}

Tracer::Span::~Span() {
  try {
    End();
  } catch (const std::exception& e) {
    // A lost timeline event must not turn into std::terminate (the span may be unwinding already).
    LogWarning("trace: could not record phase '", phase_, "': ", e.what());
  }
}

std::vector<std::string> TraceRankFiles(const std::string& run_dir) {
  fs::path dir = fs::path(run_dir) / "trace";
  std::vector<std::pair<long, std::string>> found;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};
  static const std::regex kRankFile(R"(rank_(\d{1,9})\.jsonl)");
  for (const auto& entry : fs::directory_iterator(dir)) {
    std::smatch m;
    std::string name = entry.path().filename().string();
    if (std::regex_match(name, m, kRankFile)) found.emplace_back(std::stol(m[1]), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [rank, path] : found) out.push_back(std::move(path));
  return out;
}

std::vector<json> CollectTraceEvents(const std::string& run_dir) {
  std::map<std::pair<int64_t, std::string>, json> metadata;  // last per (pid, name): resumes repeat it
  std::vector<json> timed;
  for (const std::string& path : TraceRankFiles(run_dir)) {
    JsonlContents contents = ReadJsonl(path, "trace");
    if (contents.torn_tail) LogWarning("trace: the last line of '", path, "' is torn (that rank was interrupted); ignoring it");
    for (size_t i = 0; i < contents.rows.size(); ++i) {
      json& e = contents.rows[i];
      CheckEvent(e, path + ":" + std::to_string(contents.line_numbers[i]));
      if (e["ph"] == "M") {
        std::pair<int64_t, std::string> key{e["pid"].get<int64_t>(), e["name"].get<std::string>()};
        metadata[key] = std::move(e);  // C++17 sequences the right side first: key before the move
      } else {
        timed.push_back(std::move(e));
      }
    }
  }
  std::stable_sort(timed.begin(), timed.end(), [](const json& a, const json& b) {
    return a["ts"].get<double>() < b["ts"].get<double>();
  });
  std::vector<json> out;
  out.reserve(metadata.size() + timed.size());
  for (auto& [key, e] : metadata) out.push_back(std::move(e));
  for (auto& e : timed) out.push_back(std::move(e));
  return out;
}

void MergeTrace(const std::string& run_dir) {
  LLAMARL_CHECK(!TraceRankFiles(run_dir).empty(), "MergeTrace: no per-rank trace files in '",
                (fs::path(run_dir) / "trace").string(), "' (expected rank_<r>.jsonl, written by each rank's Tracer)");
  json trace = {{"traceEvents", CollectTraceEvents(run_dir)}, {"displayTimeUnit", "ms"}};
  fs::path path = fs::path(run_dir) / "trace.json";
  fs::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << trace.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    out.flush();
    LLAMARL_CHECK(out.good(), "MergeTrace: cannot write '", tmp.string(), "' (is the run directory writable?)");
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  LLAMARL_CHECK(!ec, "MergeTrace: cannot replace '", path.string(), "': ", ec.message());
}

std::vector<json> ReadTraceJson(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LLAMARL_CHECK(in, "trace: cannot read '", path, "'");
  json trace = json::parse(in, nullptr, false);
  LLAMARL_CHECK(!trace.is_discarded(), "trace: '", path, "' is not valid JSON (delete it: `llamarl report` "
                "merges it again from RUN_DIR/trace/)");
  LLAMARL_CHECK(trace.is_object() && trace.contains("traceEvents") && trace["traceEvents"].is_array(), "trace: '",
                path, "' must be an object with a \"traceEvents\" array (Chrome trace format)");
  std::vector<json> events = trace["traceEvents"].get<std::vector<json>>();
  for (size_t i = 0; i < events.size(); ++i) CheckEvent(events[i], path + " event " + std::to_string(i));
  return events;
}

}  // namespace llamarl
