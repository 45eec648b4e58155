// The Prometheus HTTP API source: answer parsing, then a real Prometheus server (the Debian
// `prometheus` binary) scraping three local exporters that expose router and worker metrics
// growing at known rates, queried through /api/v1/query and /api/v1/query_range.
#include "planner/prometheus_source.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_client.h"
#include "net/http_server.h"

namespace tandem::planner {
namespace {

using ::testing::HasSubstr;

TEST(PrometheusResponseTest, ParsesVectorsMatricesScalarsAndErrors) {
  absl::StatusOr<std::vector<PrometheusSeries>> vector = ParsePrometheusResponse(
      R"({"status":"success","data":{"resultType":"vector","result":[
          {"metric":{"instance":"a:1"},"value":[1700000000.5,"12.5"]},
          {"metric":{},"value":[1700000000.5,"NaN"]}]}})");
  ASSERT_TRUE(vector.ok()) << vector.status();
  ASSERT_EQ(vector->size(), 2u);
  EXPECT_EQ((*vector)[0].labels.at("instance"), "a:1");
  EXPECT_EQ((*vector)[0].points[0].second, 12.5);
  EXPECT_TRUE(std::isnan((*vector)[1].points[0].second));
  absl::StatusOr<std::vector<PrometheusSeries>> matrix = ParsePrometheusResponse(
      R"({"status":"success","data":{"resultType":"matrix","result":[
          {"metric":{"role":"decode"},"values":[[1,"1"],[2,"+Inf"]]}]}})");
  ASSERT_TRUE(matrix.ok()) << matrix.status();
  EXPECT_EQ((*matrix)[0].points.size(), 2u);
  absl::StatusOr<std::vector<PrometheusSeries>> scalar = ParsePrometheusResponse(
      R"({"status":"success","data":{"resultType":"scalar","result":[5,"3"]}})");
  ASSERT_TRUE(scalar.ok()) << scalar.status();
  EXPECT_EQ((*scalar)[0].points[0].second, 3);
  absl::StatusOr<std::vector<PrometheusSeries>> error = ParsePrometheusResponse(
      R"({"status":"error","errorType":"bad_data","error":"parse error at char 5"})");
  EXPECT_EQ(error.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(error.status().message(), HasSubstr("bad_data: parse error at char 5"));
  for (const char* bad :
       {"<html>", R"({"status":"success"})", R"({"status":"success","data":{"resultType":"string",
        "result":[1,"x"]}})",
        R"({"status":"success","data":{"resultType":"vector",
        "result":[{"value":[1,2]}]}})"}) {
    EXPECT_EQ(ParsePrometheusResponse(bad).status().code(), absl::StatusCode::kDataLoss) << bad;
  }
}

TEST(PrometheusResponseTest, ExpressionsCarryTheWindowAndSelector) {
  PrometheusMetricsSource source(
      {.url = "http://p:9090", .window_seconds = 30, .selector = "namespace=\"serving\""});
  EXPECT_EQ(source.Expression("router_prompt"),
            "sum(rate(tandem_router_prompt_tokens_total{namespace=\"serving\"}[30s]))");
  EXPECT_EQ(source.Expression("decode_active"),
            "tandem_worker_active_kv_blocks{namespace=\"serving\"} and on(instance) "
            "tandem_worker_info{role=~\"decode\",namespace=\"serving\"}");
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

class RealPrometheusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::access("/usr/bin/prometheus", X_OK) != 0) {
      GTEST_SKIP() << "no prometheus binary (scripts/install-deps.sh installs Debian's)";
    }
    char pattern[] = "/tmp/tandem-prometheus-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    start_ = absl::Now();
  }
  void TearDown() override {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
    for (auto& server : servers_) server->Shutdown(absl::ZeroDuration());
    if (!dir_.empty()) std::system(("rm -rf " + dir_).c_str());
  }

  // An exporter whose text is computed from the seconds since the test started.
  std::string Export(std::function<std::string(double)> text) {
    auto server = std::make_unique<net::HttpServer>(net::HttpServerOptions{});
    server->Handle("GET", "/metrics", [this, text](std::shared_ptr<net::HttpExchange> x) {
      x->ReplyText(200, text(absl::ToDoubleSeconds(absl::Now() - start_)),
                   "text/plain; version=0.0.4");
    });
    EXPECT_TRUE(server->Start().ok());
    const std::string address = absl::StrCat("127.0.0.1:", server->port());
    servers_.push_back(std::move(server));
    return address;
  }

  std::string StartPrometheus(const std::vector<std::string>& targets) {
    std::string list;
    for (const std::string& target : targets)
      absl::StrAppend(&list, list.empty() ? "" : ", ", "'", target, "'");
    std::ofstream(dir_ + "/prometheus.yml")
        << "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        << "scrape_configs:\n  - job_name: tandem\n    static_configs: [{targets: [" << list
        << "]}]\n";
    const std::string listen = absl::StrCat("127.0.0.1:", FreePort());
    pid_ = ::fork();
    if (pid_ == 0) {
      std::freopen((dir_ + "/prometheus.log").c_str(), "w", stderr);
      ::execl("/usr/bin/prometheus", "prometheus",
              ("--config.file=" + dir_ + "/prometheus.yml").c_str(),
              ("--storage.tsdb.path=" + dir_ + "/data").c_str(),
              ("--web.listen-address=" + listen).c_str(), nullptr);
      ::_exit(127);
    }
    return "http://" + listen;
  }

  std::string dir_;
  absl::Time start_;
  pid_t pid_ = 0;
  std::vector<std::unique_ptr<net::HttpServer>> servers_;
};

TEST_F(RealPrometheusTest, ObservesRatesMeansAndPerInstanceLoad) {
  // Router: 1000 prompt tokens/s (250 cached) in 10 requests/s, 200 generated tokens/s,
  // TTFT 0.2 s, ITL 0.03 s.
  const std::string router = Export([](double t) {
    return absl::StrFormat(
        "tandem_router_prompt_tokens_total %f\ntandem_router_cached_prompt_tokens_total %f\n"
        "tandem_router_generated_tokens_total %f\n"
        "tandem_router_ttft_seconds_sum %f\ntandem_router_ttft_seconds_count %f\n"
        "tandem_router_itl_seconds_sum %f\ntandem_router_itl_seconds_count %f\n",
        1000 * t, 250 * t, 200 * t, 0.2 * 10 * t, 10 * t, 0.03 * 200 * t, 200 * t);
  });
  const std::string prefill = Export([](double t) {
    return absl::StrFormat(
        "tandem_worker_info{role=\"prefill\",model=\"m\",epoch=\"1\"} 1\n"
        "tandem_worker_prefill_queue_tokens 1500\n"
        "tandem_worker_ttft_seconds_sum %f\ntandem_worker_ttft_seconds_count %f\n",
        0.3 * 10 * t, 10 * t);
  });
  const std::string decode = Export([](double t) {
    return absl::StrFormat(
        "tandem_worker_info{role=\"decode\",model=\"m\",epoch=\"1\"} 1\n"
        "tandem_worker_active_kv_blocks 30\ntandem_worker_running_requests 6\n"
        "tandem_worker_itl_seconds_sum %f\ntandem_worker_itl_seconds_count %f\n",
        0.025 * 100 * t, 100 * t);
  });
  const std::string url = StartPrometheus({router, prefill, decode});
  PrometheusMetricsSource source({.url = url, .window_seconds = 3});
  absl::StatusOr<Observation> o;
  const absl::Time deadline = absl::Now() + absl::Seconds(40);
  // Until Prometheus has scraped every target for longer than the rate window (rate() of a
  // window holding fewer samples extrapolates from them).
  absl::Time first_data = absl::InfiniteFuture();
  while (absl::Now() < deadline) {
    o = source.Collect(7);
    if (o.ok() && o->prompt_tokens_per_second > 0 && first_data == absl::InfiniteFuture()) {
      first_data = absl::Now();
    }
    if (o.ok() && absl::Now() - first_data > absl::Seconds(4) && o->decode_load.size() == 1 &&
        o->prefill_load.size() == 1 && o->decode_load[0].latency_seconds > 0 &&
        o->prefill_load[0].latency_seconds > 0) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(500));
  }
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->time_seconds, 7);
  EXPECT_NEAR(o->prompt_tokens_per_second, 1000, 100);
  EXPECT_NEAR(o->prefix_hit_rate, 0.25, 0.01);
  EXPECT_NEAR(o->mean_prompt_tokens, 100, 5);
  EXPECT_NEAR(o->output_tokens_per_second, 200, 20);
  EXPECT_NEAR(o->mean_context_tokens, 100 + 20 / 2.0, 5);
  EXPECT_NEAR(o->ttft_seconds, 0.2, 0.001);
  EXPECT_NEAR(o->itl_seconds, 0.03, 0.001);
  EXPECT_EQ(o->active_sequences, 6);
  EXPECT_EQ(o->prefill_instances, 1);
  EXPECT_EQ(o->decode_instances, 1);
  ASSERT_EQ(o->prefill_load.size(), 1u);
  EXPECT_EQ(o->prefill_load[0].active, 1500);
  EXPECT_NEAR(o->prefill_load[0].latency_seconds, 0.3, 0.001);
  ASSERT_EQ(o->decode_load.size(), 1u);
  EXPECT_EQ(o->decode_load[0].active, 30);
  EXPECT_NEAR(o->decode_load[0].latency_seconds, 0.025, 0.001);
  EXPECT_TRUE(ValidateObservation(*o).ok());

  // The same through query_range: one observation per step, oldest first, on the planner clock.
  absl::StatusOr<std::vector<Observation>> history = source.History(100, 3, 1);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_GE(history->size(), 3u);
  for (size_t i = 1; i < history->size(); ++i) {
    EXPECT_GT((*history)[i].time_seconds, (*history)[i - 1].time_seconds);
  }
  EXPECT_NEAR(history->back().time_seconds, 100, 1);
  EXPECT_NEAR(history->back().prompt_tokens_per_second, 1000, 100);
  EXPECT_EQ(history->back().decode_load.size(), 1u);

  // A query Prometheus refuses comes back with its message; a server that is gone is
  // kUnavailable and named.
  PrometheusMetricsSource bad({.url = url, .window_seconds = 3, .selector = "=broken"});
  absl::StatusOr<Observation> refused = bad.Collect(8);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("bad_data"));
  EXPECT_EQ(bad.unreadable(), std::vector<std::string>{url});
  PrometheusMetricsSource gone(
      {.url = "http://127.0.0.1:1", .window_seconds = 5, .timeout = absl::Seconds(1)});
  EXPECT_EQ(gone.Collect(9).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tandem::planner
