#include "planner/prometheus_text.h"

#include <cmath>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::planner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(PrometheusTextTest, ParsesTheExpositionFormat) {
  const Exposition e = ParsePrometheusText(
      "# HELP tandem_worker_info Identity.\n"
      "# TYPE tandem_worker_info gauge\n"
      "tandem_worker_info{role=\"decode\",model=\"m\",epoch=\"ab12\"} 1\n"
      "# a free comment\n"
      "\n"
      "tandem_router_requests_total{endpoint=\"/v1/completions\",outcome=\"ok\"} 12\r\n"
      "tandem_router_requests_total{outcome=\"error\",endpoint=\"/v1/completions\",} 3 "
      "1700000000000\n"
      "  tandem_x{path=\"a\\\\b \\\"q\\\"\\nz\"}\t-1.5e3\n"
      "tandem_h_bucket{le=\"+Inf\"} +Inf\n"
      "tandem_nan NaN\n"
      "tandem_gauge 42\n"
      "# EOF\n");
  EXPECT_TRUE(e.errors.empty()) << e.errors.front();
  ASSERT_EQ(e.samples.size(), 7u);
  EXPECT_EQ(e.types.at("tandem_worker_info"), "gauge");
  EXPECT_EQ(e.Label("tandem_worker_info", "role"), "decode");
  EXPECT_EQ(e.Label("tandem_worker_info", "epoch"), "ab12");
  EXPECT_EQ(e.Sum("tandem_router_requests_total"), 15);
  EXPECT_EQ(e.Sum("tandem_router_requests_total", {{"outcome", "ok"}}), 12);
  EXPECT_EQ(e.Find("tandem_router_requests_total", {{"outcome", "error"}})[0]->timestamp_ms,
            1700000000000);
  const MetricSample* escaped = e.Find("tandem_x")[0];
  EXPECT_EQ(escaped->labels.at("path"), "a\\b \"q\"\nz");
  EXPECT_EQ(escaped->value, -1500);
  EXPECT_TRUE(std::isinf(e.Sum("tandem_h_bucket")));
  EXPECT_TRUE(std::isnan(e.Find("tandem_nan")[0]->value));
  EXPECT_EQ(e.Sum("tandem_gauge"), 42);
  EXPECT_EQ(e.Sum("tandem_missing"), 0);
  EXPECT_FALSE(e.Has("tandem_missing"));
  EXPECT_EQ(e.Label("tandem_missing", "role"), std::nullopt);
  // Label order does not matter for the series key.
  EXPECT_EQ(e.Find("tandem_router_requests_total", {{"outcome", "error"}})[0]->SeriesKey(),
            "tandem_router_requests_total{endpoint=\"/v1/completions\",outcome=\"error\"}");
}

TEST(PrometheusTextTest, ReportsEachMalformedLineAndKeepsTheRest) {
  const Exposition e = ParsePrometheusText(
      "good_one 1\n"             // 1
      "9bad 1\n"                 // 2
      "x{a=\"1\" 2\n"            // 3: no ',' or '}'
      "x{a=1} 2\n"               // 4: unquoted value
      "x{a=\"1\",a=\"2\"} 3\n"   // 5: repeated label
      "x abc\n"                  // 6: not a number
      "x 1 2 3\n"                // 7: trailing text
      "x\n"                      // 8: no value
      "x{a=\"\\q\"} 1\n"         // 9: bad escape
      "x{a=\"open} 1\n"          // 10: unterminated value
      "good_one 2\n"             // 11: the same series again
      "x 1 1.5\n"                // 12: timestamp not an integer
      "x{__name__=\"y\"} 1\n"    // 13: reserved label
      "# TYPE\n"                 // 14: TYPE without a name
      "good_two{k=\"v\"} 2\n");  // 15
  ASSERT_EQ(e.samples.size(), 2u);
  EXPECT_EQ(e.Sum("good_one"), 1);
  EXPECT_EQ(e.Sum("good_two"), 2);
  ASSERT_EQ(e.errors.size(), 13u);
  EXPECT_THAT(e.errors[0], HasSubstr("line 2: bad metric name"));
  EXPECT_THAT(e.errors[1], HasSubstr("line 3: x: expected ',' or '}' after label 'a'"));
  EXPECT_THAT(e.errors[2], HasSubstr("line 4: x: label 'a': value must be a double-quoted"));
  EXPECT_THAT(e.errors[3], HasSubstr("line 5: x: label 'a' appears twice"));
  EXPECT_THAT(e.errors[4], HasSubstr("line 6: x: value 'abc' is not a number"));
  EXPECT_THAT(e.errors[5], HasSubstr("line 7: x: unexpected text '3'"));
  EXPECT_THAT(e.errors[6], HasSubstr("line 8: x: no value"));
  EXPECT_THAT(e.errors[7], HasSubstr("line 9: x: label 'a': unknown escape"));
  EXPECT_THAT(e.errors[8], HasSubstr("line 10: x: label 'a': unterminated value"));
  EXPECT_THAT(e.errors[9], HasSubstr("line 11: series good_one{} appears twice"));
  EXPECT_THAT(e.errors[10], HasSubstr("line 12: x: timestamp '1.5' is not an integer"));
  EXPECT_THAT(e.errors[11], HasSubstr("line 13: x: label '__name__': names starting with '__'"));
  EXPECT_THAT(e.errors[12], HasSubstr("line 14: '# TYPE' needs a metric name and a type"));
}

TEST(PrometheusTextTest, SurvivesArbitraryBytes) {
  // Binary junk, an HTML error page, a truncated line: errors, never a crash.
  for (std::string text :
       {std::string("\x00\xff{}\"\\", 7), std::string("<html><body>502</body></html>"),
        std::string("tandem_x{a=\""), std::string("{} 1\n=\n\"\n")}) {
    Exposition e = ParsePrometheusText(text);
    EXPECT_TRUE(e.samples.empty());
    EXPECT_FALSE(e.errors.empty());
  }
  EXPECT_THAT(ParsePrometheusText("").samples, ElementsAre());
}

}  // namespace
}  // namespace tandem::planner
