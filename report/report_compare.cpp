// `llamarl report RUN_A RUN_B`: two runs on shared charts (report/report.h), typically the same
// recipe asynchronous and synchronous (what `llamarl bench async` writes under RUN_DIR/async and
// RUN_DIR/sync). The x axes are RL steps or wall-clock seconds since RL started (SFT excluded), so
// the two runs line up whatever their warm starts took.
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "core/check.h"
#include "report/report.h"
#include "report/report_sections.h"

namespace llamarl {
namespace fs = std::filesystem;
using nlohmann::json;
using svg::Escape;
using svg::FormatNumber;
using svg::Series;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
const char* const kColors[2] = {"#1a73e8", "#e8710a"};

// One run's RL rows as columns: step, seconds since RL started, and any metric.
struct RlColumns {
  std::string tag;    // "A" or "B": the legend's name of the run
  std::string label;  // "A: async" (with the run's directory name)
  std::vector<json> rows;
  std::vector<double> step, seconds;

  explicit RlColumns(const RunData& run, const std::string& run_tag) : tag(run_tag) {
    std::string name = fs::path(run.run_dir).lexically_normal().filename().string();
    if (name.empty()) name = fs::path(run.run_dir).lexically_normal().parent_path().filename().string();
    label = tag + ": " + name;
    for (const json& row : run.rows)
      if (row.value("phase", "rl") == "rl") rows.push_back(row);
    LLAMARL_CHECK(!rows.empty(), "report: ", run.run_dir, "/metrics.jsonl has no RL rows to compare (only SFT); ",
                  "compare runs that reached RL");
    const double start = rows.front().value("time_s", 0.0) - rows.front().value("step_s", 0.0);
    for (const json& row : rows) {
      step.push_back(row.value("rl_step", double(step.size())));
      seconds.push_back(row.value("time_s", kNaN) - start);
    }
  }

  std::vector<double> Get(const std::string& key) const {
    std::vector<double> v;
    for (const json& row : rows) v.push_back(row.contains(key) && row[key].is_number() ? row[key].get<double>() : kNaN);
    return v;
  }
  double Sum(const std::string& key) const {
    double s = 0;
    for (double v : Get(key)) s += std::isfinite(v) ? v : 0.0;
    return s;
  }
};

// A chart of `key` for both runs against steps or seconds; the held-out reward joins as points.
std::string CompareFigure(const RlColumns* runs, const std::string& title, const std::string& key,
                          const std::string& y_label, bool by_seconds, const std::string& caption) {
  std::vector<Series> series;
  for (int i = 0; i < 2; ++i) {
    const std::vector<double>& x = by_seconds ? runs[i].seconds : runs[i].step;
    series.push_back(Series{runs[i].tag + " " + key, kColors[i], Series::Kind::kLine, x, runs[i].Get(key), {}, {}});
    if (key == "reward_mean") {
      series.push_back(Series{runs[i].tag + " eval_reward_mean", kColors[i], Series::Kind::kPoints, x,
                              runs[i].Get("eval_reward_mean"), {}, {}});
    }
  }
  svg::ChartOptions o;
  o.x_label = by_seconds ? "seconds since RL started" : "RL step";
  o.y_label = y_label;
  o.y_from_zero = key != "reward_mean";
  return report::Figure(title, svg::LineChart(o, series), caption);
}

// Throughput and outcome of each run over all its RL steps.
std::string ComparisonTable(const RlColumns* runs) {
  const char* const heads[] = {"run", "RL steps", "RL wall time (s)", "trained samples", "trained tokens",
                               "trained tokens/s", "samples/s", "mean response (tokens)", "stale trained",
                               "dropped", "held-out reward start → end"};
  std::ostringstream out;
  out << "<table class=\"compare\"><tr>";
  for (const char* h : heads) out << "<th>" << h << "</th>";
  out << "</tr>";
  for (int i = 0; i < 2; ++i) {
    const RlColumns& r = runs[i];
    const double wall = r.Sum("step_s"), samples = r.Sum("samples"), tokens = r.Sum("tokens");
    std::vector<double> eval;
    for (double v : r.Get("eval_reward_mean"))
      if (std::isfinite(v)) eval.push_back(v);
    const std::string reward =
        eval.empty() ? "—" : FormatNumber(eval.front()) + " → " + FormatNumber(eval.back());
    out << "<tr><td style=\"color:" << kColors[i] << "\">" << Escape(r.label) << "</td>";
    for (double v : {double(r.rows.size()), wall, samples, tokens, tokens / wall, samples / wall,
                     samples > 0 ? r.Sum("response_len_mean") / double(r.rows.size()) : kNaN, r.Sum("stale_trained"),
                     r.Sum("dropped_stale")})
      out << "<td class=\"n\">" << (std::isfinite(v) ? FormatNumber(v) : "—") << "</td>";
    out << "<td class=\"n\">" << Escape(reward) << "</td></tr>";
  }
  out << "</table>";
  return out.str();
}

}  // namespace

std::string RenderComparison(const RunData& a, const RunData& b) {
  const RlColumns runs[2] = {RlColumns(a, "A"), RlColumns(b, "B")};
  std::ostringstream out;
  out << "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>llamarl — "
      << Escape(runs[0].label) << " vs " << Escape(runs[1].label) << "</title><style>" << report::PageCss()
      << "</style></head><body>\n";
  out << "<h1>llamarl runs <code>" << Escape(runs[0].label) << "</code> vs <code>" << Escape(runs[1].label)
      << "</code></h1><div class=\"sub\">" << Escape(a.run_dir) << " · " << Escape(b.run_dir) << "</div>\n";
  out << ComparisonTable(runs) << "\n<div class=\"grid\">";
  out << CompareFigure(runs, "reward against wall-clock time", "reward_mean", "reward", true,
                       "training reward per step (lines) and held-out reward (points), against seconds since RL "
                       "started: the run further left reaches a reward sooner");
  out << CompareFigure(runs, "reward against step", "reward_mean", "reward", false,
                       "the same rewards per RL step: what each step's update bought");
  out << CompareFigure(runs, "step time", "step_s", "seconds", false, "wall-clock seconds of each RL step");
  out << CompareFigure(runs, "trained response length", "response_len_mean", "tokens", false,
                       "mean response length of the samples each step trained on: a run that drops long "
                       "responses shows up here");
  out << "</div>\n</body></html>\n";
  return out.str();
}

std::string WriteComparison(const std::string& run_a, const std::string& run_b, const std::string& out) {
  const RunData a = LoadRun(run_a), b = LoadRun(run_b);
  const std::string path = out.empty() ? (fs::path(run_a) / "compare.html").string() : out;
  report::WriteHtmlFile(path, RenderComparison(a, b));
  return path;
}

}  // namespace llamarl
