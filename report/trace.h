// The timeline profiler: every rank appends Chrome trace events (the JSON format that Perfetto and
// chrome://tracing load) to RUN_DIR/trace/rank_<r>.jsonl as it goes, one line per event, flushed, so
// that the timeline of a crashed run survives up to its last finished phase. MergeTrace turns the
// per-rank files into RUN_DIR/trace.json.
//
// Events: a phase is an "X" (complete) event {name: phase, cat: role, ph: "X", ts, dur, pid: rank,
// tid: 0, args}; ts and dur are microseconds. ts counts from the Unix epoch (system_clock), the one
// clock that all ranks on all machines share to within NTP accuracy, so lanes line up in the merged
// trace; dur is measured with steady_clock, so a clock adjustment mid-phase cannot make it negative.
// Each file starts with "M" (metadata) events naming the process "rank <r> (<role>)".
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace llamarl {

class JsonlAppender;

class Tracer {
 public:
  // role: "trainer", "generator" or "colocated" (shown in the lane name). Appends to an existing
  // file (a resumed run continues its timeline; a fresh run has a fresh run directory).
  Tracer(const std::string& run_dir, int rank, std::string role);
  ~Tracer();
  Tracer(const Tracer&) = delete;
  Tracer& operator=(const Tracer&) = delete;

  // RAII span of one phase ("generate", "score", "train", "sync", "wait", "eval", "checkpoint",
  // "sft"): the event is written when the span ends (End() or destruction). A span left by an
  // exception is recorded with args.error = true. Spans must not outlive their Tracer.
  class Span {
   public:
    Span(Span&& other) noexcept;
    Span& operator=(Span&&) = delete;
    Span(const Span&) = delete;
    ~Span();
    // Attaches a value shown with the event (tokens, policy version, ...).
    Span& Arg(const std::string& key, const nlohmann::json& value);
    void End();  // idempotent; errors writing the event are thrown here, logged in the destructor

   private:
    friend class Tracer;
    Span(Tracer* tracer, std::string phase);
    Tracer* tracer_;
    std::string phase_;
    int64_t start_us_;        // system_clock, microseconds since the Unix epoch
    int64_t start_steady_ns_;
    int uncaught_at_start_;
    nlohmann::json args_ = nlohmann::json::object();
  };

  Span Scope(const std::string& phase);
  // A complete event measured by the caller (e.g. on another thread); start_us from NowMicros().
  void Complete(const std::string& phase, int64_t start_us, int64_t dur_us, const nlohmann::json& args = {});
  // A zero-length marker ("ph": "i", process scope): a weight push, a dropped batch, an error.
  void Instant(const std::string& name, const nlohmann::json& args = {});

  int rank() const { return rank_; }
  const std::string& role() const { return role_; }
  const std::string& path() const;
  // Microseconds since the Unix epoch (system_clock): the shared time base of all ranks' events.
  static int64_t NowMicros();

 private:
  int rank_;
  std::string role_;
  std::unique_ptr<JsonlAppender> file_;  // thread-safe: events from several threads never interleave
};

// RUN_DIR/trace/rank_<r>.jsonl of every rank that wrote one, in rank order.
std::vector<std::string> TraceRankFiles(const std::string& run_dir);

// All events of the per-rank files: metadata ("M") first (the last one per process and name), then
// the others sorted by time. Torn last lines are dropped with a warning; an event without a string
// "ph" and "name", an integer "pid", or (for timed events) a numeric "ts" is an Error naming file:line.
std::vector<nlohmann::json> CollectTraceEvents(const std::string& run_dir);

// Writes RUN_DIR/trace.json ({"traceEvents": [...], "displayTimeUnit": "ms"}) atomically from the
// per-rank files. Called by the first trainer rank at the end of a run, and by `llamarl report` when
// trace.json is missing. An Error when RUN_DIR/trace holds no rank file.
void MergeTrace(const std::string& run_dir);

// The events of RUN_DIR/trace.json (an Error naming the file when it is not a Chrome trace object).
std::vector<nlohmann::json> ReadTraceJson(const std::string& path);

}  // namespace llamarl
