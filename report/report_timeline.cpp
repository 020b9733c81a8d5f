// The time sections of the report: step time per role (stacked) and the per-rank timeline.
#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "report/report_sections.h"

namespace llamarl::report {
using nlohmann::json;
using svg::Escape;
using svg::FormatNumber;

namespace {

// An activity of a role: the metrics key, and the phase whose colour it takes.
struct Activity {
  const char* key;
  const char* phase;
};

struct RoleStack {
  std::string role;
  std::vector<Activity> activities;
};

std::vector<RoleStack> Roles(const Columns& c, const json& recipe) {
  bool colocated = recipe.is_object() && recipe.value("/placement/mode"_json_pointer, std::string()) == "colocated";
  if (colocated) {
    return {{"every rank (colocated)",
             {{"gen_s", "generate"}, {"score_s", "score"}, {"train_s", "train"}, {"sync_s", "sync"},
              {"offload_s", "offload"}, {"idle_s_trainer", "idle"}}}};
  }
  // Split: the weight push involves both sides, so sync appears in both stacks.
  return {{"generator ranks", {{"gen_s", "generate"}, {"score_s", "score"}, {"sync_s", "sync"}, {"idle_s_generator", "idle"}}},
          {"trainer ranks", {{"train_s", "train"}, {"sync_s", "sync"}, {"idle_s_trainer", "idle"}}}};
}

std::string MeanTable(const Columns& c, const std::vector<RoleStack>& roles) {
  std::ostringstream out;
  out << "<table class=\"steptime\"><tr><th>role</th><th>activity</th><th>metric</th><th>mean s / step</th>"
         "<th>share of the role's time</th></tr>";
  for (const RoleStack& r : roles) {
    std::vector<double> means;
    double total = 0;
    for (const Activity& a : r.activities) {
      std::vector<double> v = c.Get(a.key);
      double sum = 0;
      int n = 0;
      for (double x : v)
        if (std::isfinite(x)) sum += x, ++n;
      means.push_back(n ? sum / n : NAN);
      total += n ? sum / n : 0;
    }
    for (size_t i = 0; i < r.activities.size(); ++i) {
      out << "<tr><td>" << (i == 0 ? Escape(r.role) : "") << "</td><td>" << r.activities[i].phase << "</td><td>"
          << r.activities[i].key << "</td><td class=\"n\">"
          << (std::isfinite(means[i]) ? FormatNumber(means[i]) : "not recorded") << "</td><td class=\"n\">"
          << (std::isfinite(means[i]) && total > 0 ? FormatNumber(std::round(1000 * means[i] / total) / 10) + " %" : "")
          << "</td></tr>";
    }
  }
  out << "</table>";
  return out.str();
}

struct Box {
  int64_t pid;
  double start, end;  // seconds since the first event
  std::string phase, tooltip;
};

std::string TimelineFigure(const std::string& title, const std::vector<Box>& boxes,
                           const std::map<int64_t, std::string>& lanes, double lo, double hi,
                           const std::string& caption) {
  static const char* kOrder[] = {"generate", "score", "train", "sync", "offload", "wait", "eval", "checkpoint", "sft"};
  std::map<std::string, bool> present;
  std::map<int64_t, size_t> lane_of;
  std::vector<svg::TimelineLane> out_lanes;
  for (const auto& [pid, label] : lanes) {
    lane_of[pid] = out_lanes.size();
    out_lanes.push_back({label, {}});
  }
  for (const Box& b : boxes) {
    if (b.end < lo || b.start > hi) continue;
    out_lanes[lane_of[b.pid]].boxes.push_back({std::max(b.start, lo), std::min(b.end, hi), b.phase, b.tooltip});
    present[b.phase] = true;
  }
  std::vector<std::pair<std::string, std::string>> legend;
  for (const char* phase : kOrder)
    if (present.count(phase)) legend.emplace_back(phase, PhaseColor(phase));
  for (const auto& [phase, yes] : present)
    if (std::find(std::begin(kOrder), std::end(kOrder), phase) == std::end(kOrder)) legend.emplace_back(phase, PhaseColor(phase));
  svg::ChartOptions o;
  o.width = 1360;
  o.height = 80 + 38 * static_cast<int>(out_lanes.size());
  o.x_label = "seconds since the first traced event";
  std::string figure = Figure(title, svg::Timeline(o, out_lanes, legend), caption);
  return figure.insert(7, " class=\"wide\"");
}

}  // namespace

std::string StepTimeSection(const Columns& c, const json& recipe) {
  std::vector<RoleStack> roles = Roles(c, recipe);
  std::ostringstream out;
  out << "<div class=\"grid\">";
  for (const RoleStack& r : roles) {
    svg::StackedBars bars;
    bars.x = c.x();
    std::vector<std::string> keys;
    for (const Activity& a : r.activities) {
      keys.push_back(a.key);
      if (!c.Has(a.key)) continue;
      bars.names.push_back(a.phase);
      bars.colors.push_back(PhaseColor(a.phase));
      bars.values.push_back(c.Get(a.key));
    }
    if (bars.values.empty()) {
      out << Missing("step time: " + r.role, keys);
      continue;
    }
    svg::ChartOptions o;
    o.x_label = c.XLabel();
    o.y_label = "seconds";
    out << Figure("step time: " + r.role, svg::StackedBarChart(o, bars),
                  "Seconds each step spent per activity (idle: waiting for the other side).");
  }
  out << "</div>" << MeanTable(c, roles);
  return out.str();
}

std::string TimelineSection(const RunData& run) {
  if (run.trace.empty()) return "<figure class=\"missing\">" + Escape(run.trace_note) + "</figure>";
  std::map<int64_t, std::string> lanes;
  std::vector<Box> boxes;
  double t0 = INFINITY;
  for (const json& e : run.trace)
    if (e["ph"] == "X") t0 = std::min(t0, e["ts"].get<double>());
  for (const json& e : run.trace) {
    int64_t pid = e["pid"].get<int64_t>();
    if (e["ph"] == "M" && e["name"] == "process_name") lanes[pid] = e["args"].value("name", "rank " + std::to_string(pid));
    if (e["ph"] != "X") continue;
    if (!lanes.count(pid)) lanes[pid] = "rank " + std::to_string(pid);
    Box b{pid, (e["ts"].get<double>() - t0) / 1e6, 0, e["name"].get<std::string>(), ""};
    b.end = b.start + e["dur"].get<double>() / 1e6;
    b.tooltip = b.phase + ": " + FormatNumber(b.end - b.start) + " s at " + FormatNumber(b.start) + " s";
    if (e.contains("args")) b.tooltip += " " + e["args"].dump();
    boxes.push_back(std::move(b));
  }
  if (boxes.empty()) return "<figure class=\"missing\">the trace holds no phase (\"X\") events</figure>";
  double end = 0;
  std::vector<double> train_starts;
  for (const Box& b : boxes) {
    end = std::max(end, b.end);
    if (b.phase == "train") train_starts.push_back(b.start);
  }
  std::string out = TimelineFigure("timeline: the whole run", boxes, lanes, 0, end,
                                   "One lane per rank, coloured by phase (hover a box for its duration and details).");
  std::sort(train_starts.begin(), train_starts.end());
  if (train_starts.size() >= 8) {
    double from = train_starts[train_starts.size() - 4];
    out += TimelineFigure("timeline: the last 4 training steps", boxes, lanes, from, end,
                          "A zoom on the end of the run: how generation, training and weight sync overlap.");
  }
  return out;
}

}  // namespace llamarl::report
