// Sections of the `llamarl report` page (report/report.h); internal to the report.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

#include "report/report.h"
#include "report/svg.h"

namespace llamarl::report {

// The metrics rows as columns over one step axis. SFT rows come first; when RL numbers its steps
// from 0 again, RL steps are shifted to continue after the last SFT step so the phases do not overlap.
class Columns {
 public:
  explicit Columns(const std::vector<nlohmann::json>& rows);
  const std::vector<double>& x() const { return x_; }
  // The values of `key`, NaN where a row lacks it (or holds null / a non-number).
  std::vector<double> Get(const std::string& key) const;
  bool Has(const std::string& key) const;  // some row holds a number for it
  bool HasSft() const { return num_sft_ > 0; }
  std::string XLabel() const;
  // The SFT warm-start as a shaded region (empty without SFT rows).
  std::vector<svg::Shade> PhaseShades() const;
  size_t size() const { return x_.size(); }
  const nlohmann::json& row(size_t i) const { return rows_[i]; }

 private:
  const std::vector<nlohmann::json>& rows_;
  std::vector<double> x_;
  size_t num_sft_ = 0;
  bool shifted_ = false;
};

// The page's style sheet (shared by the one-run report and the two-run comparison).
const char* PageCss();
// Writes a page; errors name the path and the fix.
void WriteHtmlFile(const std::string& path, const std::string& html);

// Colours shared by the charts and the timeline legend: one per phase / role activity.
const char* PhaseColor(const std::string& phase);

// A titled figure around an SVG, with a one-line caption saying how to read it.
std::string Figure(const std::string& title, const std::string& svg, const std::string& caption);
// The figure that stands in for a chart whose metrics the run did not record.
std::string Missing(const std::string& title, const std::vector<std::string>& keys);

std::string RewardFigure(const Columns& c, const nlohmann::json& recipe);
std::string StalenessFigures(const Columns& c, const nlohmann::json& recipe);
std::string ImportanceFigures(const Columns& c);
std::string OptimizationFigures(const Columns& c);
std::string ThroughputFigures(const Columns& c);
// Multi-turn episodes (runs with an env): turns per episode and tool latency per step.
std::string EpisodeFigures(const Columns& c);
// Stacked per-role step times and the table of mean seconds per step and share of each activity.
std::string StepTimeSection(const Columns& c, const nlohmann::json& recipe);
// One lane per rank coloured by phase: the whole run and a zoom on its last training steps.
std::string TimelineSection(const RunData& run);

}  // namespace llamarl::report
