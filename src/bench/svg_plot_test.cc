#include "bench/svg_plot.h"

#include <cmath>

#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

TEST(SvgPlotTest, CdfIsMonotoneAndEndsAtOne) {
  Series cdf = CdfSeries("x", {3, 1, 2, NAN, 5, 4}, 400);
  ASSERT_EQ(cdf.points.size(), 5u);
  for (size_t i = 1; i < cdf.points.size(); ++i) {
    EXPECT_GE(cdf.points[i].first, cdf.points[i - 1].first);
    EXPECT_GT(cdf.points[i].second, cdf.points[i - 1].second);
  }
  EXPECT_DOUBLE_EQ(cdf.points.back().second, 1.0);
  std::vector<double> many(100000);
  for (size_t i = 0; i < many.size(); ++i) many[i] = i;
  EXPECT_LE(CdfSeries("y", many, 400).points.size(), 402u);
}

TEST(SvgPlotTest, RendersEscapedSelfContainedSvg) {
  Chart chart{.title = "TTFT <p99>", .x_label = "s", .y_label = "fraction"};
  chart.series.push_back(CdfSeries("a & b", {0.1, 0.2, 0.3}));
  chart.series.push_back(Series{"line", {{0, 1}, {1, 2}, {2, 1.5}}, false});
  Chart empty{.title = "empty"};
  std::string svg = RenderSvg({chart, empty});
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_NE(svg.find("TTFT &lt;p99&gt;"), std::string::npos);
  EXPECT_NE(svg.find("a &amp; b"), std::string::npos);
  EXPECT_NE(svg.find("no data"), std::string::npos);
  EXPECT_EQ(svg.find("http://", svg.find("xmlns") + 40), std::string::npos);  // no external refs
  EXPECT_EQ(svg.find("nan"), std::string::npos);
}

}  // namespace
}  // namespace tandem::bench
