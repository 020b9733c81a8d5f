#include "report/svg.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace llamarl::svg {
namespace {

constexpr int kLeft = 58, kRight = 14, kTop = 30, kBottom = 40;  // plot margins: labels, legend
constexpr double kCharWidth = 6.6;                                // 12px sans-serif, for legend layout
const char* kGrey = "#9aa0a6";

// Maps data coordinates to pixels inside the plot area. Invariant: x1 > x0 and y1 > y0.
struct Frame {
  double x0, x1, y0, y1;
  double left, top, width, height;
  double X(double x) const { return left + (x - x0) / (x1 - x0) * width; }
  double Y(double y) const { return top + height - (y - y0) / (y1 - y0) * height; }
};

std::string Num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f", v);
  return buf;
}

struct Range {
  double lo = std::numeric_limits<double>::infinity(), hi = -std::numeric_limits<double>::infinity();
  void Add(double v) {
    if (!std::isfinite(v)) return;
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  bool Empty() const { return lo > hi; }
};

// Widens a degenerate or empty range so that ticks exist, then snaps it outward to nice ticks.
std::vector<double> AxisTicks(Range& r, int target) {
  if (r.Empty()) r.lo = 0, r.hi = 1;
  if (r.hi - r.lo < 1e-12) {
    double pad = std::max(std::abs(r.lo) * 0.1, 1e-3);
    r.lo -= pad, r.hi += pad;
  }
  // A little headroom, so that a line at the extreme (staleness at the bound) is not hidden by the frame.
  double pad = 0.02 * (r.hi - r.lo);
  r.hi += pad;
  if (r.lo != 0) r.lo -= pad;
  std::vector<double> ticks = NiceTicks(r.lo, r.hi, target);
  double step = ticks.size() > 1 ? ticks[1] - ticks[0] : r.hi - r.lo;
  r.lo = std::floor(r.lo / step + 1e-9) * step;
  r.hi = std::ceil(r.hi / step - 1e-9) * step;
  return NiceTicks(r.lo, r.hi, target);
}

void Axes(std::ostringstream& out, const Frame& f, const ChartOptions& o, const std::vector<double>& xt,
          const std::vector<double>& yt) {
  out << "<g class=\"axes\" font-size=\"11\" fill=\"#444\">";
  for (double y : yt) {
    out << "<line x1=\"" << Num(f.left) << "\" x2=\"" << Num(f.left + f.width) << "\" y1=\"" << Num(f.Y(y))
        << "\" y2=\"" << Num(f.Y(y)) << "\" stroke=\"#e3e3e3\"/>"
        << "<text x=\"" << Num(f.left - 6) << "\" y=\"" << Num(f.Y(y) + 4) << "\" text-anchor=\"end\">"
        << FormatNumber(y) << "</text>";
  }
  for (double x : xt) {
    out << "<line x1=\"" << Num(f.X(x)) << "\" x2=\"" << Num(f.X(x)) << "\" y1=\"" << Num(f.top + f.height)
        << "\" y2=\"" << Num(f.top + f.height + 4) << "\" stroke=\"#666\"/>"
        << "<text class=\"tick\" x=\"" << Num(f.X(x)) << "\" y=\"" << Num(f.top + f.height + 16)
        << "\" text-anchor=\"middle\">" << FormatNumber(x) << "</text>";
  }
  out << "<rect x=\"" << Num(f.left) << "\" y=\"" << Num(f.top) << "\" width=\"" << Num(f.width) << "\" height=\""
      << Num(f.height) << "\" fill=\"none\" stroke=\"#999\"/>";
  out << "<text class=\"xlabel\" x=\"" << Num(f.left + f.width / 2) << "\" y=\"" << Num(f.top + f.height + 33)
      << "\" text-anchor=\"middle\" font-size=\"12\">" << Escape(o.x_label) << "</text>";
  out << "<text class=\"ylabel\" transform=\"translate(13," << Num(f.top + f.height / 2)
      << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"12\">" << Escape(o.y_label) << "</text></g>";
}

// One row of swatches above the plot, right-aligned.
void Legend(std::ostringstream& out, const ChartOptions& o,
            const std::vector<std::pair<std::string, std::string>>& items) {
  double total = 0;
  for (const auto& [name, color] : items) total += 18 + name.size() * kCharWidth + 14;
  double x = std::max<double>(kLeft, o.width - kRight - total);
  out << "<g class=\"legend\" font-size=\"12\" fill=\"#333\">";
  for (const auto& [name, color] : items) {
    out << "<rect x=\"" << Num(x) << "\" y=\"9\" width=\"12\" height=\"12\" rx=\"2\" fill=\"" << Escape(color)
        << "\"/><text x=\"" << Num(x + 17) << "\" y=\"19\">" << Escape(name) << "</text>";
    x += 18 + name.size() * kCharWidth + 14;
  }
  out << "</g>";
}

std::string Open(const ChartOptions& o) {
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << o.width << "\" height=\"" << o.height
    << "\" viewBox=\"0 0 " << o.width << ' ' << o.height << "\" font-family=\"sans-serif\">";
  return s.str();
}

Frame MakeFrame(const ChartOptions& o, const Range& x, const Range& y) {
  return {x.lo, x.hi, y.lo, y.hi, double(kLeft), double(kTop), double(o.width - kLeft - kRight),
          double(o.height - kTop - kBottom)};
}

void Shades(std::ostringstream& out, const Frame& f, const std::vector<Shade>& shades) {
  for (const Shade& s : shades) {
    double a = std::clamp(f.X(s.x0), f.left, f.left + f.width), b = std::clamp(f.X(s.x1), f.left, f.left + f.width);
    out << "<g class=\"shade\" data-name=\"" << Escape(s.label) << "\"><rect x=\"" << Num(a) << "\" y=\""
        << Num(f.top) << "\" width=\"" << Num(std::max(0.0, b - a)) << "\" height=\"" << Num(f.height)
        << "\" fill=\"" << Escape(s.color) << "\"/><text x=\"" << Num(a + 4) << "\" y=\"" << Num(f.top + 13)
        << "\" font-size=\"11\" fill=\"#555\">" << Escape(s.label) << "</text></g>";
  }
}

// Index runs [begin, end) of consecutive finite values: a NaN breaks a line or band.
std::vector<std::pair<size_t, size_t>> FiniteRuns(const Series& s, bool band) {
  std::vector<std::pair<size_t, size_t>> runs;
  size_t n = s.x.size(), begin = 0;
  auto ok = [&](size_t i) {
    return std::isfinite(s.x[i]) && std::isfinite(s.y[i]) &&
           (!band || (std::isfinite(s.band_lo[i]) && std::isfinite(s.band_hi[i])));
  };
  for (size_t i = 0; i <= n; ++i) {
    if (i < n && ok(i)) continue;
    if (i > begin) runs.emplace_back(begin, i);
    begin = i + 1;
  }
  return runs;
}

void DrawSeries(std::ostringstream& out, const Frame& f, const Series& s) {
  std::string name = Escape(s.name), color = Escape(s.color);
  bool band = !s.band_lo.empty() && s.band_lo.size() == s.x.size() && s.band_hi.size() == s.x.size();
  if (band) {
    for (auto [b, e] : FiniteRuns(s, true)) {
      out << "<path class=\"band\" data-name=\"" << name << "\" fill=\"" << color << "\" fill-opacity=\"0.18\" d=\"";
      for (size_t i = b; i < e; ++i) out << (i == b ? 'M' : 'L') << Num(f.X(s.x[i])) << ',' << Num(f.Y(s.band_hi[i]));
      for (size_t i = e; i-- > b;) out << 'L' << Num(f.X(s.x[i])) << ',' << Num(f.Y(s.band_lo[i]));
      out << "Z\"/>";
    }
  }
  if (s.kind == Series::Kind::kPoints) {
    out << "<g class=\"points\" data-name=\"" << name << "\" fill=\"" << color << "\">";
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      out << "<circle cx=\"" << Num(f.X(s.x[i])) << "\" cy=\"" << Num(f.Y(s.y[i])) << "\" r=\"4\" stroke=\"#fff\"><title>"
          << name << " at " << FormatNumber(s.x[i]) << ": " << FormatNumber(s.y[i]) << "</title></circle>";
    }
    out << "</g>";
    return;
  }
  out << "<path class=\"series\" data-name=\"" << name << "\" fill=\"none\" stroke=\"" << color
      << "\" stroke-width=\"2\" stroke-linejoin=\"round\"" << (s.kind == Series::Kind::kDashed ? " stroke-dasharray=\"5,3\"" : "")
      << " d=\"";
  for (auto [b, e] : FiniteRuns(s, false)) {
    for (size_t i = b; i < e; ++i) out << (i == b ? 'M' : 'L') << Num(f.X(s.x[i])) << ',' << Num(f.Y(s.y[i]));
    if (e - b == 1) out << 'h' << 0.1;  // a lone point still shows (round cap below)
  }
  out << "\" stroke-linecap=\"round\"/>";
}

}  // namespace

std::string Escape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatNumber(double v) {
  if (!std::isfinite(v)) return std::isnan(v) ? "n/a" : (v > 0 ? "inf" : "-inf");
  char buf[32];
  double a = std::abs(v);
  if (a >= 1e9) {
    std::snprintf(buf, sizeof(buf), "%.3gG", v / 1e9);
  } else if (a >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.3gM", v / 1e6);
  } else if (a >= 1e4) {
    std::snprintf(buf, sizeof(buf), "%.3gk", v / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.4g", a < 1e-12 ? 0.0 : v);
  }
  return buf;
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi) || target < 1) return {lo};
  double raw = (hi - lo) / target;
  double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double norm = raw / mag;
  double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  std::vector<double> ticks;
  for (double t = std::ceil(lo / step - 1e-9) * step; t <= hi + step * 1e-9; t += step) {
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  return ticks;
}

std::string LineChart(const ChartOptions& o, const std::vector<Series>& series) {
  Range xr, yr;
  std::vector<std::pair<std::string, std::string>> legend;
  for (const Series& s : series) {
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      xr.Add(s.x[i]);
      yr.Add(s.y[i]);
      if (i < s.band_lo.size()) yr.Add(s.band_lo[i]);
      if (i < s.band_hi.size()) yr.Add(s.band_hi[i]);
    }
    // A line and its points may share a name: one legend entry.
    if (std::none_of(legend.begin(), legend.end(), [&](const auto& l) { return l.first == s.name; }))
      legend.emplace_back(s.name, s.color);
  }
  for (const Shade& s : o.shades) xr.Add(s.x0), xr.Add(s.x1);
  if (o.y_from_zero) yr.Add(0);
  std::vector<double> yt = AxisTicks(yr, 5);
  if (xr.Empty() || xr.hi - xr.lo < 1e-12) xr.Add(xr.Empty() ? 0 : xr.lo), xr.hi = xr.lo + 1;
  Frame f = MakeFrame(o, xr, yr);
  std::ostringstream out;
  out << Open(o);
  Shades(out, f, o.shades);
  Axes(out, f, o, NiceTicks(xr.lo, xr.hi, 8), yt);
  for (const Series& s : series) DrawSeries(out, f, s);
  Legend(out, o, legend);
  out << "</svg>";
  return out.str();
}

std::string StackedBarChart(const ChartOptions& o, const StackedBars& bars) {
  Range xr, yr;
  yr.Add(0);
  for (size_t i = 0; i < bars.x.size(); ++i) {
    double total = 0;
    for (const auto& layer : bars.values) total += std::isfinite(layer[i]) ? layer[i] : 0;
    xr.Add(bars.x[i]);
    yr.Add(total);
  }
  double spacing = bars.x.size() > 1 ? (xr.hi - xr.lo) / double(bars.x.size() - 1) : 1.0;
  if (!xr.Empty()) xr.lo -= spacing / 2, xr.hi += spacing / 2;
  if (xr.Empty()) xr.lo = 0, xr.hi = 1;
  std::vector<double> yt = AxisTicks(yr, 5);
  Frame f = MakeFrame(o, xr, yr);
  double bar_w = std::max(1.0, f.width / std::max<double>(1, (xr.hi - xr.lo) / spacing) * 0.8);
  std::ostringstream out;
  out << Open(o);
  Axes(out, f, o, NiceTicks(xr.lo + spacing / 2, xr.hi - spacing / 2, 8), yt);
  std::vector<double> base(bars.x.size(), 0.0);
  std::vector<std::pair<std::string, std::string>> legend;
  for (size_t l = 0; l < bars.values.size(); ++l) {
    std::string name = Escape(bars.names[l]);
    out << "<g class=\"layer\" data-name=\"" << name << "\" fill=\"" << Escape(bars.colors[l]) << "\">";
    for (size_t i = 0; i < bars.x.size(); ++i) {
      double v = bars.values[l][i];
      if (!std::isfinite(v) || v <= 0) continue;
      double top = f.Y(base[i] + v), bottom = f.Y(base[i]);
      out << "<rect x=\"" << Num(f.X(bars.x[i]) - bar_w / 2) << "\" y=\"" << Num(top) << "\" width=\"" << Num(bar_w)
          << "\" height=\"" << Num(bottom - top) << "\"><title>" << name << " at " << FormatNumber(bars.x[i]) << ": "
          << FormatNumber(v) << "</title></rect>";
      base[i] += v;
    }
    out << "</g>";
    legend.emplace_back(bars.names[l], bars.colors[l]);
  }
  Legend(out, o, legend);
  out << "</svg>";
  return out.str();
}

std::string Timeline(const ChartOptions& o, const std::vector<TimelineLane>& lanes,
                     const std::vector<std::pair<std::string, std::string>>& phase_colors) {
  Range xr;
  for (const auto& lane : lanes)
    for (const auto& b : lane.boxes) xr.Add(b.start), xr.Add(b.end);
  if (xr.Empty() || xr.hi - xr.lo < 1e-12) xr.Add(xr.Empty() ? 0 : xr.lo), xr.hi = xr.lo + 1;
  ChartOptions wide = o;
  Frame f = MakeFrame(wide, xr, {0, 1});
  // Lane labels need more room than numeric ticks.
  f.left = 118;
  f.width = o.width - f.left - kRight;
  double lane_h = f.height / std::max<size_t>(1, lanes.size());
  std::ostringstream out;
  out << Open(o);
  Axes(out, f, o, NiceTicks(xr.lo, xr.hi, 10), {});
  for (size_t l = 0; l < lanes.size(); ++l) {
    double y = f.top + l * lane_h;
    out << "<g class=\"lane\" data-name=\"" << Escape(lanes[l].label) << "\"><text x=\"" << Num(f.left - 6)
        << "\" y=\"" << Num(y + lane_h / 2 + 4) << "\" text-anchor=\"end\" font-size=\"12\">"
        << Escape(lanes[l].label) << "</text>";
    for (const auto& b : lanes[l].boxes) {
      std::string color = kGrey;
      for (const auto& [phase, c] : phase_colors)
        if (phase == b.phase) color = c;
      double x0 = f.X(b.start), x1 = f.X(b.end);
      out << "<rect class=\"span\" data-phase=\"" << Escape(b.phase) << "\" x=\"" << Num(x0) << "\" y=\""
          << Num(y + lane_h * 0.15) << "\" width=\"" << Num(std::max(0.6, x1 - x0)) << "\" height=\""
          << Num(lane_h * 0.7) << "\" fill=\"" << Escape(color) << "\"><title>" << Escape(b.tooltip)
          << "</title></rect>";
    }
    out << "</g>";
  }
  Legend(out, o, phase_colors);
  out << "</svg>";
  return out.str();
}

}  // namespace llamarl::svg
