#include "bench/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace tandem::bench {
namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#17becf"};

std::string Escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string Number(double value) {
  if (value == 0) return "0";
  double magnitude = std::fabs(value);
  if (magnitude >= 1e5 || magnitude < 1e-3) return absl::StrFormat("%.1e", value);
  if (magnitude >= 100) return absl::StrFormat("%.0f", value);
  if (magnitude >= 1) return absl::StrFormat("%.3g", value);
  return absl::StrFormat("%.3g", value);
}

// "Nice" tick positions covering [low, high].
std::vector<double> Ticks(double low, double high, int target = 6) {
  std::vector<double> ticks;
  double span = high - low;
  if (!(span > 0)) return {low};
  double raw = span / target;
  double power = std::pow(10, std::floor(std::log10(raw)));
  double step = power;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (raw <= m * power) {
      step = m * power;
      break;
    }
  }
  for (double t = std::ceil(low / step) * step; t <= high + step * 1e-9; t += step) {
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0 : t);
  }
  return ticks;
}

}  // namespace

Series CdfSeries(std::string name, std::vector<double> values, size_t max_points) {
  Series series;
  series.name = std::move(name);
  series.step = true;
  values.erase(
      std::remove_if(values.begin(), values.end(), [](double v) { return !std::isfinite(v); }),
      values.end());
  std::sort(values.begin(), values.end());
  size_t n = values.size();
  if (n == 0) return series;
  size_t stride = std::max<size_t>(1, n / std::max<size_t>(1, max_points));
  for (size_t i = 0; i < n; i += stride) {
    series.points.emplace_back(values[i], static_cast<double>(i + 1) / n);
  }
  if (series.points.back().second < 1) series.points.emplace_back(values.back(), 1.0);
  return series;
}

std::string RenderSvg(const std::vector<Chart>& charts, int width, int chart_height) {
  const int left = 70, right = 170, top = 34, bottom = 46;
  int height = static_cast<int>(charts.size()) * chart_height;
  std::string svg = absl::StrFormat(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
      "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"11\">\n"
      "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
      width, height, width, height);
  for (size_t c = 0; c < charts.size(); ++c) {
    const Chart& chart = charts[c];
    int y0 = static_cast<int>(c) * chart_height;
    int plot_w = width - left - right, plot_h = chart_height - top - bottom;
    double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min;
    double y_min = x_min, y_max = -x_min;
    for (const Series& s : chart.series) {
      for (auto [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y) || (chart.log_x && x <= 0)) continue;
        x_min = std::min(x_min, x);
        x_max = std::max(x_max, x);
        y_min = std::min(y_min, y);
        y_max = std::max(y_max, y);
      }
    }
    absl::StrAppendFormat(
        &svg, "<text x=\"%d\" y=\"%d\" font-size=\"14\" font-weight=\"bold\">%s</text>\n", left,
        y0 + 20, Escape(chart.title));
    if (!std::isfinite(x_min)) {
      absl::StrAppendFormat(&svg, "<text x=\"%d\" y=\"%d\">no data</text>\n", left,
                            y0 + top + plot_h / 2);
      continue;
    }
    y_min = std::min(y_min, 0.0);
    if (y_max <= y_min) y_max = y_min + 1;
    if (x_max <= x_min) x_max = x_min + (x_min == 0 ? 1 : std::fabs(x_min) * 0.1);
    auto fx = [&](double x) {
      if (chart.log_x) {
        return left + plot_w * (std::log10(x) - std::log10(x_min)) /
                          std::max(1e-12, std::log10(x_max) - std::log10(x_min));
      }
      return left + plot_w * (x - x_min) / (x_max - x_min);
    };
    auto fy = [&](double y) { return y0 + top + plot_h * (1 - (y - y_min) / (y_max - y_min)); };
    absl::StrAppendFormat(&svg,
                          "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
                          "stroke=\"#999\"/>\n",
                          left, y0 + top, plot_w, plot_h);
    for (double t : Ticks(y_min, y_max)) {
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#eee\"/>"
                            "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                            left, left + plot_w, fy(t), fy(t), left - 5, fy(t) + 4, Number(t));
    }
    std::vector<double> x_ticks;
    if (chart.log_x) {
      for (double p = std::floor(std::log10(x_min)); p <= std::ceil(std::log10(x_max)); ++p) {
        double t = std::pow(10, p);
        if (t >= x_min && t <= x_max) x_ticks.push_back(t);
      }
    } else {
      x_ticks = Ticks(x_min, x_max);
    }
    for (double t : x_ticks) {
      absl::StrAppendFormat(&svg,
                            "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#eee\"/>"
                            "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                            fx(t), fx(t), y0 + top, y0 + top + plot_h, fx(t),
                            y0 + top + plot_h + 15, Number(t));
    }
    absl::StrAppendFormat(&svg,
                          "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n"
                          "<text transform=\"translate(%d,%d) rotate(-90)\" "
                          "text-anchor=\"middle\">%s</text>\n",
                          left + plot_w / 2, y0 + chart_height - 12, Escape(chart.x_label), 16,
                          y0 + top + plot_h / 2, Escape(chart.y_label));
    for (size_t s = 0; s < chart.series.size(); ++s) {
      const Series& series = chart.series[s];
      const char* color = kColors[s % (sizeof(kColors) / sizeof(kColors[0]))];
      std::string path;
      double last_y = 0;
      bool first = true;
      for (auto [x, y] : series.points) {
        if (!std::isfinite(x) || !std::isfinite(y) || (chart.log_x && x <= 0)) continue;
        if (first) {
          absl::StrAppendFormat(&path, "M%.1f %.1f", fx(x), fy(y));
        } else if (series.step) {
          absl::StrAppendFormat(&path, " L%.1f %.1f L%.1f %.1f", fx(x), fy(last_y), fx(x), fy(y));
        } else {
          absl::StrAppendFormat(&path, " L%.1f %.1f", fx(x), fy(y));
        }
        first = false;
        last_y = y;
      }
      absl::StrAppendFormat(&svg,
                            "<path d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"/>\n"
                            "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" "
                            "stroke-width=\"3\"/><text x=\"%d\" y=\"%d\">%s</text>\n",
                            path, color, width - right + 10, width - right + 30,
                            y0 + top + 10 + static_cast<int>(s) * 16,
                            y0 + top + 10 + static_cast<int>(s) * 16, color, width - right + 35,
                            y0 + top + 14 + static_cast<int>(s) * 16, Escape(series.name));
    }
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace tandem::bench
