// Checks the registry's output with Prometheus' own linter, `promtool check metrics`.
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "core/metrics.h"
#include "gtest/gtest.h"

namespace tandem {
namespace {

TEST(MetricsPromtoolTest, PromtoolAcceptsRenderedMetrics) {
  ASSERT_EQ(std::system("command -v promtool >/dev/null"), 0)
      << "promtool is missing: run scripts/install-deps.sh (Debian package 'prometheus')";
  MetricsRegistry registry;
  auto& requests = registry.AddCounter("tandem_router_requests_total",
                                       "Requests answered, by outcome.", {"outcome", "model"});
  requests.Get("ok", "demo").Increment(5);
  requests.Get("rate_limited", "de\"mo\n").Increment();
  registry.AddGauge("tandem_worker_kv_blocks_used", "KV blocks in use.").Get().Set(12);
  auto& ttft = registry.AddHistogram("tandem_router_ttft_seconds", "Time to first token.",
                                     LatencyBucketsSeconds(), {"route"});
  ttft.Get("disaggregated").Observe(0.02);
  ttft.Get("local").Observe(1.5);
  registry.AddCallbackGauge("tandem_worker_busy_ratio", "Engine busy fraction.",
                            [] { return 0.5; });

  std::string path = ::testing::TempDir() + "/tandem_metrics.prom";
  std::ofstream(path) << registry.RenderPrometheus();
  std::string command = "promtool check metrics < " + path + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof(buffer), pipe) != nullptr) output += buffer;
  int rc = pclose(pipe);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_EQ(output, "") << "promtool printed lint problems";
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tandem
