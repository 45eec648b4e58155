#include "bench/report.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {
namespace {

RequestRecord Ok(double start, double ttft, double e2e, int64_t out, std::vector<double> itl) {
  RequestRecord r;
  r.ok = true;
  r.start_s = start;
  r.ttft_s = ttft;
  r.e2e_s = e2e;
  r.input_tokens = 100;
  r.output_tokens = out;
  r.itl_s = std::move(itl);
  return r;
}

// A hand-made result set whose figures are worked out in the comments.
TEST(ReportTest, GoodputAndPercentilesOnHandMadeSet) {
  std::vector<RequestRecord> records = {
      Ok(0, 0.1, 1.1, 11, {0.1}),  // tpot = (1.1 - 0.1) / 10 = 0.1   -> meets ttft<=0.2,tpot<=0.1
      Ok(1, 0.3, 1.3, 11, {0.1}),  // ttft 0.3 > 0.2                  -> misses
      Ok(2, 0.2, 2.2, 11, {0.2}),  // tpot 0.2 > 0.1                  -> misses
      Ok(3, 0.05, 0.05, 1, {}),    // one token: tpot 0               -> meets
  };
  RequestRecord failed;
  failed.error = "http_429";
  records.push_back(failed);
  Slo slo = *ParseSlo("ttft=200,tpot=100");
  BenchSummary s = Summarize(records, 10.0, slo, {50, 99});
  EXPECT_EQ(s.requests, 5u);
  EXPECT_EQ(s.completed, 4u);
  EXPECT_EQ(s.failures.at("http_429"), 1u);
  EXPECT_EQ(s.good, 2u);
  EXPECT_DOUBLE_EQ(s.goodput, 0.2);         // 2 good / 10 s
  EXPECT_DOUBLE_EQ(s.slo_attainment, 0.4);  // 2 of 5 sent
  EXPECT_EQ(s.total_output_tokens, 34);
  EXPECT_DOUBLE_EQ(s.output_throughput, 3.4);
  // TTFT sorted: 0.05 0.1 0.2 0.3 -> median = 0.15, p99 = 0.2 + 0.97 * 0.1.
  EXPECT_DOUBLE_EQ(s.ttft.median, 0.15);
  EXPECT_NEAR(s.ttft.percentiles.at(99), 0.297, 1e-12);
  // TPOT over requests with > 1 token: 0.1 0.1 0.2.
  EXPECT_NEAR(s.tpot.mean, 0.4 / 3, 1e-12);

  nlohmann::json json = nlohmann::json::parse(ToJson(s, {{"backend", "tandem"}}));
  EXPECT_EQ(json["backend"], "tandem");
  EXPECT_EQ(json["completed"], 4);
  EXPECT_DOUBLE_EQ(json["median_ttft_ms"].get<double>(), 150);
  EXPECT_TRUE(json.contains("p99_ttft_ms"));
  EXPECT_DOUBLE_EQ(json["request_goodput"].get<double>(), 0.2);
  std::string table = FormatTable(s);
  EXPECT_NE(table.find("http_429"), std::string::npos);
  EXPECT_NE(table.find("SLO attainment"), std::string::npos);
  std::string svg = PlotSvg(records, "run");
  EXPECT_NE(svg.find("latency CDFs"), std::string::npos);
}

TEST(ReportTest, KneeIsHighestRateMeetingAttainment) {
  std::vector<SweepPoint> points(4);
  double rates[] = {1, 2, 4, 8};
  double attainment[] = {1.0, 0.95, 0.91, 0.5};
  for (int i = 0; i < 4; ++i) {
    points[i].rate = rates[i];
    points[i].summary.slo_attainment = attainment[i];
  }
  EXPECT_DOUBLE_EQ(GoodputKnee(points), 4);
  EXPECT_DOUBLE_EQ(GoodputKnee(points, 0.99), 1);
  EXPECT_DOUBLE_EQ(GoodputKnee({}), 0);
}

TEST(ReportTest, EmptyRunDoesNotDivideByZero) {
  BenchSummary s = Summarize({}, 0, Slo{}, {99});
  EXPECT_EQ(s.requests, 0u);
  EXPECT_EQ(s.slo_attainment, 0);
  EXPECT_NO_THROW(nlohmann::json::parse(ToJson(s, {})));
}

}  // namespace
}  // namespace tandem::bench
