// `llamarl report RUN_DIR`: one self-contained HTML page about a run (inline CSS and SVG, no scripts,
// no network, no external fonts): the recipe summary, the reward curve with its band and held-out
// evaluations, staleness, importance weights, loss/KL/entropy, the step-time breakdown per role,
// throughput, and the timeline of every rank's phases from the trace.
//
// Input, all under RUN_DIR: metrics.jsonl (required, report/metrics.h), recipe.json (optional:
// the summary says "no recipe.json" without it), trace.json or trace/rank_<r>.jsonl (optional; when
// only the per-rank files exist they are merged into trace.json first, as MergeTrace does).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace llamarl {

struct RunData {
  std::string run_dir;
  nlohmann::json recipe;              // null without recipe.json
  std::vector<nlohmann::json> rows;   // one per (phase, step): SFT rows first, then RL rows, by step
  std::vector<nlohmann::json> trace;  // Chrome trace events; empty without a trace
  std::string trace_note;             // why there is no timeline (shown in its place)
};

// Reads a run directory. Errors (naming the path and the fix): RUN_DIR missing or not a directory,
// no metrics.jsonl, no metrics rows, a malformed recipe.json or metrics line.
RunData LoadRun(const std::string& run_dir);

// The HTML page. Every string from the run (recipe values, phase and rank names) is escaped.
std::string RenderReport(const RunData& run);

// LoadRun + RenderReport, written to `out` ("" = RUN_DIR/report.html). Returns the path written.
std::string WriteReport(const std::string& run_dir, const std::string& out = "");

// `llamarl report RUN_A RUN_B`: both runs on shared charts (reward against wall-clock seconds since
// RL started and against RL step, step time, trained response length) and a table of what each
// trained (samples, tokens, tokens/s, stale and dropped groups, held-out reward). Errors name the
// run whose metrics have no RL rows.
std::string RenderComparison(const RunData& a, const RunData& b);
// LoadRun of both + RenderComparison, written to `out` ("" = RUN_A/compare.html). Returns the path.
std::string WriteComparison(const std::string& run_a, const std::string& run_b, const std::string& out = "");

}  // namespace llamarl
