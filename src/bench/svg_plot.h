// Self-contained SVG charts (no external assets, no scripts): line charts for timelines and
// empirical CDFs, several series per chart, axis ticks and a legend. Used by `tandem bench` and
// `tandem sim` to draw their results.
//
//   Chart chart{.title = "TTFT", .x_label = "seconds", .y_label = "fraction"};
//   chart.series.push_back(CdfSeries("disaggregated", ttft_samples));
//   std::string svg = RenderSvg({chart});
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace tandem::bench {

struct Series {
  std::string name;
  std::vector<std::pair<double, double>> points;  // (x, y), drawn in order
  bool step = false;                              // draw as a step function (CDFs)
};

struct Chart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Series> series;
  bool log_x = false;
};

// An empirical CDF of `values` (sorted copy), thinned to at most `max_points` points.
Series CdfSeries(std::string name, std::vector<double> values, size_t max_points = 400);

// Charts stacked vertically in one SVG document.
std::string RenderSvg(const std::vector<Chart>& charts, int width = 760, int chart_height = 300);

}  // namespace tandem::bench
