#include "core/metrics.h"

#include <cmath>
#include <thread>

#include "gtest/gtest.h"

namespace tandem {
namespace {

TEST(MetricsTest, RendersCountersGaugesWithEscapedLabels) {
  MetricsRegistry registry;
  auto& requests =
      registry.AddCounter("tandem_requests_total", "Requests by outcome.", {"outcome"});
  requests.Get("ok").Increment();
  requests.Get("ok").Increment(2);
  requests.Get("say \"no\"\\\n").Increment();
  registry.AddGauge("tandem_queue_depth", "Queued requests.").Get().Set(7);
  registry.AddCallbackGauge("tandem_pool_used_ratio", "Pool use.", [] { return 0.25; });
  std::string text = registry.RenderPrometheus();
  EXPECT_NE(text.find("# TYPE tandem_requests_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_requests_total{outcome=\"ok\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(tandem_requests_total{outcome="say \"no\"\\\n"} 1)"), std::string::npos)
      << text;
  EXPECT_NE(text.find("tandem_queue_depth 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_pool_used_ratio 0.25\n"), std::string::npos) << text;
}

TEST(MetricsTest, HistogramBucketsAreCumulativeAndEndWithInf) {
  MetricsRegistry registry;
  auto& latency = registry.AddHistogram("tandem_latency_seconds", "Latency.", {0.1, 0.5, 1});
  for (double v : {0.05, 0.1, 0.3, 0.7, 5.0}) latency.Get().Observe(v);
  std::string text = registry.RenderPrometheus();
  EXPECT_NE(text.find("tandem_latency_seconds_bucket{le=\"0.1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tandem_latency_seconds_bucket{le=\"0.5\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("tandem_latency_seconds_bucket{le=\"1\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("tandem_latency_seconds_bucket{le=\"+Inf\"} 5\n"), std::string::npos);
  EXPECT_NE(text.find("tandem_latency_seconds_count 5\n"), std::string::npos);
  EXPECT_NE(text.find("tandem_latency_seconds_sum 6.15\n"), std::string::npos) << text;
}

TEST(MetricsTest, QuantileInterpolatesInsideBucket) {
  Histogram histogram({1, 2, 3, 4});
  EXPECT_TRUE(std::isnan(histogram.Quantile(0.5)));
  for (int i = 0; i < 100; ++i) histogram.Observe(1.5);  // all in (1, 2]
  EXPECT_DOUBLE_EQ(histogram.Quantile(0.5), 1.5);
  EXPECT_DOUBLE_EQ(histogram.Quantile(1.0), 2.0);
  histogram.Observe(100);  // +Inf bucket answers the highest finite bound
  EXPECT_DOUBLE_EQ(histogram.Quantile(1.0), 4.0);
}

TEST(MetricsTest, SameRegistrationReturnsSameFamily) {
  MetricsRegistry registry;
  auto& a = registry.AddCounter("tandem_x_total", "x", {"a"});
  auto& b = registry.AddCounter("tandem_x_total", "x", {"a"});
  EXPECT_EQ(&a, &b);
  EXPECT_DEATH(registry.AddGauge("tandem_x_total", "x", {"a"}), "registered twice");
  EXPECT_DEATH(registry.AddCounter("bad name", "x"), "invalid metric name");
  EXPECT_DEATH(a.Get("1", "2"), "label values");
  EXPECT_DEATH(a.Get("1").Increment(-1), "must be >= 0");
}

TEST(MetricsTest, ConcurrentUpdatesAreNotLost) {
  MetricsRegistry registry;
  auto& counter = registry.AddCounter("tandem_c_total", "c").Get();
  auto& histogram = registry.AddHistogram("tandem_h", "h", {1.0}).Get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 10000; ++i) {
        counter.Increment();
        histogram.Observe(0.5);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.Value(), 40000);
  EXPECT_EQ(histogram.Take().count, 40000u);
}

TEST(MetricsTest, FormatsValuesLikePrometheus) {
  EXPECT_EQ(FormatMetricValue(1.0), "1");
  EXPECT_EQ(FormatMetricValue(0.1), "0.1");
  EXPECT_EQ(FormatMetricValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatMetricValue(NAN), "NaN");
  EXPECT_TRUE(IsValidLabelName("outcome"));
  EXPECT_FALSE(IsValidLabelName("__reserved"));
  EXPECT_FALSE(IsValidMetricName("9lives"));
}

}  // namespace
}  // namespace tandem
