#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "core/check.h"
#include "core/config.h"
#include "core/logging.h"
#include "report/metrics.h"
#include "report/report_sections.h"
#include "report/trace.h"

namespace llamarl {
namespace fs = std::filesystem;
using nlohmann::json;
using svg::Escape;
using svg::FormatNumber;

namespace {

const char* const kCss = R"(
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px auto;
       padding: 0 24px; color: #202124; background: #f6f7f9; max-width: 1360px; }
h1 { font-size: 22px; margin: 0 0 4px; } h1 code { font-size: 19px; }
h2 { font-size: 17px; margin: 26px 0 10px; border-bottom: 1px solid #dde; padding-bottom: 4px; }
.sub { color: #5f6368; font-size: 13px; margin-bottom: 14px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 12px 0; }
.card { flex: 1 1 auto; background: #fff; border: 1px solid #dadce0; border-radius: 8px; padding: 10px 14px; }
.card .v { font-size: 20px; font-weight: 600; white-space: nowrap; } .card .k { font-size: 12px; color: #5f6368; margin-top: 2px; }
.up { color: #188038; } .down { color: #c5221f; }
table { border-collapse: collapse; font-size: 13px; background: #fff; }
td, th { border: 1px solid #e0e0e0; padding: 4px 10px; text-align: left; }
th { background: #f1f3f4; font-weight: 600; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: grid; grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 14px; }
figure svg { display: block; width: 100%; height: auto; }
figure { background: #fff; border: 1px solid #dadce0; border-radius: 8px; margin: 0; padding: 8px 8px 6px; }
figure.wide { grid-column: 1 / -1; }
figure h3 { font-size: 14px; margin: 2px 4px 0; } figcaption { font-size: 12px; color: #5f6368; margin: 2px 4px; }
figure.missing { color: #5f6368; font-size: 13px; padding: 14px; }
details { margin-top: 10px; font-size: 13px; } pre { background: #fff; border: 1px solid #dadce0; padding: 10px; overflow: auto; }
)";

std::string Str(const json& recipe, const char* pointer, const std::string& fallback = "—") {
  json::json_pointer p(pointer);
  if (!recipe.is_object() || !recipe.contains(p)) return fallback;
  const json& v = recipe.at(p);
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string Duration(double seconds) {
  if (!std::isfinite(seconds)) return "—";
  char buf[48];
  long s = std::lround(seconds);
  if (seconds < 60) {
    std::snprintf(buf, sizeof(buf), "%.1f s", seconds);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof(buf), "%ldm %02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%ldh %02ldm", s / 3600, (s % 3600) / 60);
  }
  return buf;
}

// Finite values of a column among RL rows, in step order.
std::vector<double> RlValues(const report::Columns& c, const std::string& key) {
  std::vector<double> v = c.Get(key), out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isfinite(v[i]) && c.row(i).value("phase", "rl") != "sft") out.push_back(v[i]);
  }
  return out;
}

// Means of the first and the last `fraction` of a column's RL values (at least one value each):
// one step's training reward is a noisy sample, a tenth of the run is not.
bool FirstLast(const report::Columns& c, const std::string& key, double fraction, double* first, double* last) {
  const std::vector<double> v = RlValues(c, key);
  if (v.empty()) return false;
  const auto n = std::ptrdiff_t(std::max<size_t>(1, size_t(double(v.size()) * fraction)));
  *first = std::accumulate(v.begin(), v.begin() + n, 0.0) / double(n);
  *last = std::accumulate(v.end() - n, v.end(), 0.0) / double(n);
  return true;
}

double MeanOf(const std::vector<double>& v) {
  double sum = 0;
  int n = 0;
  for (double x : v)
    if (std::isfinite(x)) sum += x, ++n;
  return n ? sum / n : NAN;
}

std::string Card(const std::string& value, const std::string& label, const std::string& cls = "") {
  return "<div class=\"card\"><div class=\"v" + (cls.empty() ? "" : " " + cls) + "\">" + value +
         "</div><div class=\"k\">" + Escape(label) + "</div></div>";
}

std::string Cards(const report::Columns& c) {
  std::ostringstream out;
  out << "<div class=\"cards\">";
  double first, last;
  if (FirstLast(c, "eval_reward_mean", 0.0, &first, &last)) {
    double d = last - first;
    out << Card(FormatNumber(first) + " → " + FormatNumber(last), "held-out reward, start of RL → end")
        << Card((d >= 0 ? "+" : "") + FormatNumber(d), "held-out reward change", d >= 0 ? "up" : "down");
  }
  if (FirstLast(c, "reward_mean", 0.1, &first, &last))
    out << Card(FormatNumber(first) + " → " + FormatNumber(last), "training reward, first → last tenth of RL");
  std::vector<double> t = c.Get("time_s");
  double wall = NAN;
  for (double v : t)
    if (std::isfinite(v)) wall = v;
  out << Card(Duration(wall), "wall time (last step)");
  out << Card(std::to_string(c.size()), "steps recorded");
  double tps = MeanOf(c.Get("tokens_per_s"));
  if (std::isfinite(tps)) out << Card(FormatNumber(tps), "tokens/s (mean)");
  std::vector<double> dropped = c.Get("dropped_stale");
  if (c.Has("dropped_stale")) {
    double total = 0;
    for (double v : dropped) total += std::isfinite(v) ? v : 0;
    out << Card(FormatNumber(total), "rollouts dropped as stale");
  }
  out << "</div>";
  return out.str();
}

std::string ModelText(const json& r) {
  if (Str(r, "/model/source", "") == "hf") return "HF checkpoint " + Str(r, "/model/path");
  if (Str(r, "/model/source", "") == "tiny") {
    return "tiny Llama (hidden " + Str(r, "/model/hidden_size") + ", " + Str(r, "/model/num_layers") + " layers, " +
           Str(r, "/model/num_heads") + " heads, " + Str(r, "/model/num_kv_heads") + " kv heads)";
  }
  return Str(r, "/model");
}

std::string PlacementText(const json& r) {
  std::string mode = Str(r, "/placement/mode");
  if (mode != "split") return mode;
  return "split: " + Str(r, "/placement/generator_ranks", "?") + " generator rank(s), " +
         Str(r, "/placement/trainer_ranks", "?") + " trainer rank(s), tp " + Str(r, "/placement/tp_size", "1");
}

std::string SummaryTable(const RunData& run, const report::Columns& c) {
  const json& r = run.recipe;
  size_t num_sft = 0;
  for (size_t i = 0; i < c.size(); ++i) num_sft += c.row(i).value("phase", "rl") == "sft";
  std::vector<std::pair<std::string, std::string>> rows;
  if (r.is_object()) {
    rows = {{"model", ModelText(r)},
            {"task", Str(r, "/data/source") + " (reward: " + Str(r, "/reward/name") + ")"},
            {"algorithm", Str(r, "/trainer/algorithm")},
            {"placement", PlacementText(r)},
            {"mode", Str(r, "/mode")},
            {"max_policy_lag", Str(r, "/max_policy_lag")},
            {"rollout", Str(r, "/rollout/prompts_per_step") + " prompts × " + Str(r, "/rollout/group_size") +
                            " samples, ≤ " + Str(r, "/rollout/max_new_tokens") + " new tokens, temperature " +
                            Str(r, "/rollout/temperature")},
            {"planned steps", Str(r, "/sft/steps", "0") + " SFT + " + Str(r, "/steps") + " RL"}};
  } else {
    rows = {{"recipe", "no recipe.json in the run directory"}};
  }
  rows.emplace_back("recorded steps", std::to_string(num_sft) + " SFT + " + std::to_string(c.size() - num_sft) + " RL");
  if (c.Has("turns_mean")) {  // multi-turn episodes
    std::vector<double> step_max = c.Get("tool_s_max");
    double slowest = NAN;
    for (double v : step_max)
      if (std::isfinite(v) && (std::isnan(slowest) || v > slowest)) slowest = v;
    rows.emplace_back("environment", Str(r, "/env/name", "?") + ", ≤ " + Str(r, "/env/max_turns", "?") + " turns");
    rows.emplace_back("turns per episode (mean over steps)", FormatNumber(MeanOf(c.Get("turns_mean"))));
    rows.emplace_back("tool latency (mean of steps' means / slowest)",
                      FormatNumber(MeanOf(c.Get("tool_s_mean")) * 1e3) + " ms / " + FormatNumber(slowest * 1e3) + " ms");
  }
  std::ostringstream out;
  out << "<table class=\"summary\">";
  for (const auto& [k, v] : rows) out << "<tr><th>" << Escape(k) << "</th><td>" << Escape(v) << "</td></tr>";
  out << "</table>";
  return out.str();
}

// Rows keyed by (phase, step); a later row replaces an earlier one (a resumed run reruns steps).
std::vector<json> OrderRows(const std::vector<json>& rows) {
  std::vector<std::string> phase_order;
  std::map<std::string, std::map<int64_t, json>> by_phase;
  for (const json& row : rows) {
    std::string phase = row.value("phase", "rl");
    if (!by_phase.count(phase)) phase_order.push_back(phase);
    by_phase[phase][row["step"].get<int64_t>()] = row;
  }
  std::vector<json> out;
  for (const std::string& phase : phase_order)
    for (auto& [step, row] : by_phase[phase]) out.push_back(std::move(row));
  return out;
}

void LoadTrace(RunData& run) {
  fs::path merged = fs::path(run.run_dir) / "trace.json";
  std::vector<std::string> rank_files = TraceRankFiles(run.run_dir);
  std::error_code ec;
  bool stale = !fs::exists(merged, ec);
  for (const std::string& f : rank_files)
    if (!stale && fs::last_write_time(f, ec) > fs::last_write_time(merged, ec)) stale = true;
  try {
    if (!rank_files.empty() && stale) MergeTrace(run.run_dir);
    if (fs::exists(merged, ec)) run.trace = ReadTraceJson(merged.string());
    if (run.trace.empty()) run.trace_note = "no trace recorded (no trace.json and no trace/rank_<r>.jsonl)";
  } catch (const Error& e) {
    run.trace_note = std::string("the trace could not be read: ") + e.what();
    LogWarning("report: ", run.trace_note);
  }
}

}  // namespace

RunData LoadRun(const std::string& run_dir) {
  std::error_code ec;
  LLAMARL_CHECK(fs::is_directory(run_dir, ec), "run directory '", run_dir, "' does not exist or is not a directory "
                "(pass the RUN_DIR that `llamarl train` wrote, e.g. runs/tiny_grpo)");
  RunData run;
  run.run_dir = run_dir;
  std::string metrics = (fs::path(run_dir) / "metrics.jsonl").string();
  LLAMARL_CHECK(fs::exists(metrics, ec), "no metrics.jsonl in '", run_dir, "': this is not a run directory, or the "
                "run stopped before its first step (check the path, or the run's log)");
  run.rows = OrderRows(ReadMetrics(metrics));
  LLAMARL_CHECK(!run.rows.empty(), "'", metrics, "' has no metrics rows: the run stopped before its first step "
                "finished; nothing to report yet");
  std::string recipe = (fs::path(run_dir) / "recipe.json").string();
  if (fs::exists(recipe, ec)) {
    run.recipe = ReadJsonFile(recipe);
    LLAMARL_CHECK(run.recipe.is_object(), "'", recipe, "' must hold a JSON object (the resolved recipe), got ",
                  DescribeJson(run.recipe));
  }
  LoadTrace(run);
  return run;
}

std::string RenderReport(const RunData& run) {
  report::Columns c(run.rows);
  std::string name = fs::path(run.run_dir).lexically_normal().filename().string();
  if (name.empty()) name = fs::path(run.run_dir).lexically_normal().parent_path().filename().string();
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>llamarl report — "
      << Escape(name) << "</title><style>" << kCss << "</style></head><body>\n";
  out << "<h1>llamarl run <code>" << Escape(name) << "</code></h1><div class=\"sub\">" << Escape(run.run_dir);
  if (run.recipe.is_object()) {
    out << " · algorithm " << Escape(Str(run.recipe, "/trainer/algorithm")) << " · " << Escape(Str(run.recipe, "/mode"))
        << " · " << Escape(Str(run.recipe, "/placement/mode")) << " placement";
  }
  out << "</div>\n";
  out << Cards(c) << SummaryTable(run, c) << "\n";
  out << "<h2 id=\"reward\">Reward</h2><div class=\"grid\">" << report::RewardFigure(c, run.recipe) << "</div>\n";
  out << "<h2 id=\"off-policy\">Off-policy: staleness and importance weights</h2><div class=\"grid\">"
      << report::StalenessFigures(c, run.recipe) << report::ImportanceFigures(c) << "</div>\n";
  out << "<h2 id=\"optimization\">Optimization</h2><div class=\"grid\">" << report::OptimizationFigures(c) << "</div>\n";
  out << "<h2 id=\"time\">Where the time goes</h2>" << report::StepTimeSection(c, run.recipe) << "\n";
  out << "<h2 id=\"throughput\">Throughput</h2><div class=\"grid\">" << report::ThroughputFigures(c) << "</div>\n";
  if (c.Has("turns_mean")) {
    out << "<h2 id=\"episodes\">Episodes: turns and tools</h2><div class=\"grid\">" << report::EpisodeFigures(c)
        << "</div>\n";
  }
  out << "<h2 id=\"timeline\">Timeline</h2>" << report::TimelineSection(run) << "\n";
  if (run.recipe.is_object()) {
    out << "<details><summary>resolved recipe (recipe.json)</summary><pre>" << Escape(run.recipe.dump(2))
        << "</pre></details>\n";
  }
  out << "</body></html>\n";
  return out.str();
}

const char* report::PageCss() { return kCss; }

void report::WriteHtmlFile(const std::string& path, const std::string& html) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  LLAMARL_CHECK(file, "cannot write the report to '", path, "' (check that its directory exists and is writable, "
                "or pass --out FILE)");
  file << html;
  file.flush();
  LLAMARL_CHECK(file.good(), "writing the report to '", path, "' failed (is the disk full?)");
}

std::string WriteReport(const std::string& run_dir, const std::string& out) {
  RunData run = LoadRun(run_dir);
  std::string path = out.empty() ? (fs::path(run_dir) / "report.html").string() : out;
  report::WriteHtmlFile(path, RenderReport(run));
  return path;
}

}  // namespace llamarl
