// The metric charts of the report: reward, staleness, importance weights, optimization, throughput,
// multi-turn episodes.
#include <cmath>
#include <limits>
#include <sstream>

#include "report/report_sections.h"

namespace llamarl::report {
using nlohmann::json;
using svg::Escape;
using svg::Series;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

Series Line(const Columns& c, const std::string& key, const std::string& color,
            Series::Kind kind = Series::Kind::kLine) {
  Series s;
  s.name = key;
  s.color = color;
  s.kind = kind;
  s.x = c.x();
  s.y = c.Get(key);
  return s;
}

// A figure of the keys that exist, or a note naming the keys the run did not record.
std::string LinesFigure(const Columns& c, const std::string& title, const std::string& y_label,
                        const std::vector<std::pair<std::string, std::string>>& keys, const std::string& caption,
                        bool from_zero = false) {
  std::vector<Series> series;
  std::vector<std::string> names;
  for (size_t i = 0; i < keys.size(); ++i) {
    names.push_back(keys[i].first);
    if (c.Has(keys[i].first)) series.push_back(Line(c, keys[i].first, keys[i].second, i == 0 ? Series::Kind::kLine : Series::Kind::kDashed));
  }
  if (series.empty()) return Missing(title, names);
  svg::ChartOptions o;
  o.x_label = c.XLabel();
  o.y_label = y_label;
  o.y_from_zero = from_zero;
  o.shades = c.PhaseShades();
  return Figure(title, svg::LineChart(o, series), caption);
}

}  // namespace

Columns::Columns(const std::vector<json>& rows) : rows_(rows) {
  double max_sft = -std::numeric_limits<double>::infinity(), min_rl = std::numeric_limits<double>::infinity();
  for (const json& row : rows) {
    double step = row["step"].get<double>();
    if (row.value("phase", "rl") == "sft") {
      ++num_sft_;
      max_sft = std::max(max_sft, step);
    } else {
      min_rl = std::min(min_rl, step);
    }
  }
  shifted_ = num_sft_ > 0 && min_rl <= max_sft;
  for (const json& row : rows) {
    double step = row["step"].get<double>();
    x_.push_back(shifted_ && row.value("phase", "rl") != "sft" ? step - min_rl + max_sft + 1 : step);
  }
}

std::vector<double> Columns::Get(const std::string& key) const {
  std::vector<double> out;
  out.reserve(rows_.size());
  for (const json& row : rows_) {
    auto it = row.find(key);
    out.push_back(it != row.end() && it->is_number() ? it->get<double>() : kNaN);
  }
  return out;
}

bool Columns::Has(const std::string& key) const {
  for (const json& row : rows_) {
    auto it = row.find(key);
    if (it != row.end() && it->is_number()) return true;
  }
  return false;
}

std::string Columns::XLabel() const {
  return shifted_ ? "step (RL steps counted on from the last SFT step)" : "step";
}

std::vector<svg::Shade> Columns::PhaseShades() const {
  if (num_sft_ == 0) return {};
  double lo = x_[0], hi = x_[0];
  for (size_t i = 0; i < rows_.size(); ++i) {
    if (rows_[i].value("phase", "rl") != "sft") continue;
    lo = std::min(lo, x_[i]);
    hi = std::max(hi, x_[i]);
  }
  return {{lo - 0.5, hi + 0.5, "SFT warm-start", "#e8f0fe"}};
}

const char* PhaseColor(const std::string& phase) {
  static const std::pair<const char*, const char*> kColors[] = {
      {"generate", "#4e79a7"}, {"score", "#f28e2b"}, {"train", "#59a14f"},      {"sync", "#e15759"},
      {"wait", "#c9c9c9"},     {"idle", "#c9c9c9"},  {"eval", "#b07aa1"},       {"checkpoint", "#9c755f"},
      {"sft", "#76b7b2"},      {"offload", "#ff9da7"}, {"reward", "#4e79a7"},    {"eval_reward", "#e15759"},
  };
  for (const auto& [name, color] : kColors)
    if (phase == name) return color;
  return "#edc948";
}

std::string Figure(const std::string& title, const std::string& svg, const std::string& caption) {
  return "<figure><h3>" + Escape(title) + "</h3>" + svg + "<figcaption>" + Escape(caption) + "</figcaption></figure>";
}

std::string Missing(const std::string& title, const std::vector<std::string>& keys) {
  std::string list;
  for (const auto& k : keys) list += (list.empty() ? "" : ", ") + k;
  return "<figure class=\"missing\"><h3>" + Escape(title) + "</h3>not recorded by this run (metrics " + Escape(list) +
         " are absent)</figure>";
}

std::string RewardFigure(const Columns& c, const json& recipe) {
  if (!c.Has("reward_mean") && !c.Has("eval_reward_mean")) return Missing("reward", {"reward_mean", "eval_reward_mean"});
  std::vector<Series> series;
  if (c.Has("reward_mean")) {
    Series s = Line(c, "reward_mean", PhaseColor("reward"));
    std::vector<double> std_dev = c.Get("reward_std");
    for (size_t i = 0; i < s.y.size(); ++i) {
      s.band_lo.push_back(s.y[i] - std_dev[i]);
      s.band_hi.push_back(s.y[i] + std_dev[i]);
    }
    if (c.Has("reward_std")) s.name = "reward_mean ± reward_std";
    series.push_back(std::move(s));
  }
  if (c.Has("eval_reward_mean")) {
    Series dashed = Line(c, "eval_reward_mean", PhaseColor("eval_reward"), Series::Kind::kDashed);
    Series points = dashed;
    // Eval rows are sparse: drop the gaps so the dashed line joins consecutive evaluations.
    Series joined = dashed;
    joined.x.clear(), joined.y.clear();
    for (size_t i = 0; i < dashed.x.size(); ++i)
      if (std::isfinite(dashed.y[i])) joined.x.push_back(dashed.x[i]), joined.y.push_back(dashed.y[i]);
    joined.name = "eval_reward_mean (held-out, greedy)";
    points.kind = Series::Kind::kPoints;
    points.name = joined.name;
    series.push_back(joined);
    series.push_back(points);
  }
  svg::ChartOptions o;
  o.width = 1360;
  o.height = 300;
  o.x_label = c.XLabel();
  o.y_label = "reward";
  o.shades = c.PhaseShades();
  std::string caption = "Mean reward of each step's rollouts (band: ± one standard deviation across samples) and the "
                        "held-out evaluation (greedy) every few steps.";
  if (recipe.is_object() && recipe.contains("reward")) caption += " Reward: " + recipe["reward"].value("name", "?") + ".";
  std::string figure = Figure("reward", svg::LineChart(o, series), caption);
  return figure.insert(7, " class=\"wide\"");  // after "<figure"
}

std::string StalenessFigures(const Columns& c, const json& recipe) {
  std::vector<Series> series;
  if (c.Has("staleness_mean")) series.push_back(Line(c, "staleness_mean", "#4e79a7"));
  if (c.Has("staleness_max")) series.push_back(Line(c, "staleness_max", "#e15759", Series::Kind::kDashed));
  std::string caption = "Policy versions between the trainer and the tokens it trains on.";
  if (recipe.is_object() && recipe.contains("max_policy_lag") && recipe["max_policy_lag"].is_number()) {
    Series bound;
    bound.name = "max_policy_lag (bound)";
    bound.color = "#9aa0a6";
    bound.kind = Series::Kind::kDashed;
    bound.x = c.x();
    bound.y.assign(c.size(), recipe["max_policy_lag"].get<double>());
    if (!series.empty()) series.push_back(bound);
    caption += " Rollouts beyond the bound are dropped.";
  }
  std::string out = series.empty() ? Missing("staleness", {"staleness_mean", "staleness_max"}) : [&] {
    svg::ChartOptions o;
    o.x_label = c.XLabel();
    o.y_label = "versions behind";
    o.y_from_zero = true;
    o.shades = c.PhaseShades();
    return Figure("staleness", svg::LineChart(o, series), caption);
  }();
  if (!c.Has("dropped_stale")) return out + Missing("dropped stale rollouts", {"dropped_stale"});
  svg::StackedBars bars{c.x(), {"dropped_stale"}, {"#e15759"}, {c.Get("dropped_stale")}};
  svg::ChartOptions o;
  o.x_label = c.XLabel();
  o.y_label = "rollouts";
  return out + Figure("dropped stale rollouts", svg::StackedBarChart(o, bars),
                      "Rollouts discarded per step because their tokens were older than the bound.");
}

std::string ImportanceFigures(const Columns& c) {
  return LinesFigure(c, "importance weights", "weight", {{"iw_mean", "#4e79a7"}, {"iw_max", "#e15759"}},
                     "Ratio of trainer to generator token probabilities; large values are truncated.", true) +
         LinesFigure(c, "importance-weight health", "fraction",
                     {{"iw_ess", "#59a14f"}, {"iw_truncated_fraction", "#f28e2b"}},
                     "Effective sample size (normalised) and the fraction of tokens whose weight was truncated.", true);
}

std::string OptimizationFigures(const Columns& c) {
  return LinesFigure(c, "loss", "loss", {{"loss", "#4e79a7"}}, "The objective minimised (SFT: cross-entropy).") +
         LinesFigure(c, "KL to the reference", "kl", {{"kl", "#b07aa1"}}, "KL estimate of the policy from the reference.",
                     true) +
         LinesFigure(c, "entropy", "nats / token", {{"entropy", "#59a14f"}}, "Mean token entropy of the policy.", true) +
         LinesFigure(c, "gradient norm", "norm", {{"grad_norm", "#f28e2b"}}, "Global gradient norm before clipping.",
                     true);
}

std::string ThroughputFigures(const Columns& c) {
  return LinesFigure(c, "generation throughput", "tokens / s", {{"tokens_per_s", "#4e79a7"}},
                     "Generated tokens per second of the generator ranks.", true) +
         LinesFigure(c, "response length", "tokens", {{"response_len_mean", "#f28e2b"}},
                     "Mean number of generated tokens per response.", true);
}

std::string EpisodeFigures(const Columns& c) {
  return LinesFigure(c, "turns per episode", "model turns", {{"turns_mean", "#4e79a7"}},
                     "Mean model turns of the step's trained episodes (a tool call and its answer are two).", true) +
         LinesFigure(c, "tool latency", "seconds", {{"tool_s_mean", "#59a14f"}, {"tool_s_max", "#e15759"}},
                     "Seconds of one environment step (a tool call, or scoring the answer): the step's mean and its "
                     "slowest. Episodes at their tools do not block the decoding of others.",
                     true);
}

}  // namespace llamarl::report
