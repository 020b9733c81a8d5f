// Inline SVG charts for `llamarl report`: line charts with bands, points and shaded regions, stacked
// bars, and a timeline with one lane per rank. Plain strings out, no scripts, no external fonts, so
// the page renders offline in any browser. Elements carry class and data-name attributes so that
// tests (and readers of the HTML) can find each series.
//
// NaN values are gaps: a line breaks there, a point or bar is not drawn. Every chart has axes with
// "nice" ticks (1, 2, 5 x 10^k) and labels.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace llamarl::svg {

// Text escaped for HTML/XML element content and attribute values (& < > " ').
std::string Escape(const std::string& text);
// Short human number for labels: 0, 0.125, 3.5, 1.2k, 45M, 1e-05.
std::string FormatNumber(double value);
// Round tick values covering [lo, hi] (lo <= hi), about `target` of them, step 1, 2 or 5 x 10^k.
std::vector<double> NiceTicks(double lo, double hi, int target = 5);

struct Series {
  enum class Kind { kLine, kDashed, kPoints };
  std::string name;   // legend text and data-name
  std::string color;  // any CSS colour
  Kind kind = Kind::kLine;
  std::vector<double> x, y;
  std::vector<double> band_lo, band_hi;  // optional shaded band around the line (same size as x)
};

// A shaded vertical region with a label at its top (the SFT warm-start, ...).
struct Shade {
  double x0 = 0, x1 = 0;
  std::string label, color;
};

struct ChartOptions {
  std::string x_label, y_label;
  int width = 660, height = 250;  // pixels, the whole SVG
  bool y_from_zero = false;       // include 0 in the y range (counts, seconds)
  std::vector<Shade> shades;
};

std::string LineChart(const ChartOptions& options, const std::vector<Series>& series);

struct StackedBars {
  std::vector<double> x;                    // one bar per x
  std::vector<std::string> names, colors;   // one per layer, bottom first
  std::vector<std::vector<double>> values;  // values[layer][bar]; NaN counts as 0
};
std::string StackedBarChart(const ChartOptions& options, const StackedBars& bars);

struct TimelineBox {
  double start = 0, end = 0;  // x units (seconds)
  std::string phase;          // colour key and data-phase
  std::string tooltip;
};
struct TimelineLane {
  std::string label;
  std::vector<TimelineBox> boxes;
};
// phase_colors: the legend, in order; a box whose phase is not listed is drawn grey.
std::string Timeline(const ChartOptions& options, const std::vector<TimelineLane>& lanes,
                     const std::vector<std::pair<std::string, std::string>>& phase_colors);

}  // namespace llamarl::svg
