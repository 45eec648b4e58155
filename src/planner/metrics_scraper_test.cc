#include "planner/metrics_scraper.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_server.h"

namespace tandem::planner {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

// What a router exposes (names from docs/metrics.md), its counters at given totals.
struct RouterCounters {
  double prompt = 0, cached = 0, generated = 0, requests = 0;
  double ttft_sum = 0, ttft_count = 0, itl_sum = 0, itl_count = 0;
  double active = 0;
  std::string Text() const {
    return absl::StrFormat(
        "# TYPE tandem_router_prompt_tokens_total counter\n"
        "tandem_router_prompt_tokens_total %g\n"
        "tandem_router_cached_prompt_tokens_total %g\n"
        "tandem_router_generated_tokens_total %g\n"
        "tandem_router_requests_total{endpoint=\"/v1/completions\",outcome=\"ok\"} %g\n"
        "tandem_router_ttft_seconds_bucket{le=\"+Inf\"} %g\n"
        "tandem_router_ttft_seconds_sum %g\n"
        "tandem_router_ttft_seconds_count %g\n"
        "tandem_router_itl_seconds_sum %g\n"
        "tandem_router_itl_seconds_count %g\n"
        "tandem_router_active_requests %g\n",
        prompt, cached, generated, requests, ttft_count, ttft_sum, ttft_count, itl_sum, itl_count,
        active);
  }
};

struct WorkerCounters {
  std::string role = "decode";
  std::string epoch = "e1";
  double prompt = 0, cached = 0, generated = 0, generate_requests = 0;
  double ttft_sum = 0, ttft_count = 0, itl_sum = 0, itl_count = 0;
  double running = 0, queue_tokens = 0, kv_blocks = 0;
  bool with_load_gauges = true;
  std::string Text() const {
    std::string text = absl::StrFormat(
        "tandem_worker_info{role=\"%s\",model=\"m\",epoch=\"%s\"} 1\n"
        "tandem_worker_prompt_tokens_total %g\n"
        "tandem_worker_cached_prompt_tokens_total %g\n"
        "tandem_worker_generated_tokens_total %g\n"
        "tandem_worker_requests_total{kind=\"generate\",outcome=\"ok\"} %g\n"
        "tandem_worker_ttft_seconds_sum %g\n"
        "tandem_worker_ttft_seconds_count %g\n"
        "tandem_worker_itl_seconds_sum %g\n"
        "tandem_worker_itl_seconds_count %g\n"
        "tandem_worker_running_requests %g\n",
        role, epoch, prompt, cached, generated, generate_requests, ttft_sum, ttft_count, itl_sum,
        itl_count, running);
    if (with_load_gauges) {
      absl::StrAppendFormat(&text,
                            "tandem_worker_prefill_queue_tokens %g\n"
                            "tandem_worker_active_kv_blocks %g\n",
                            queue_tokens, kv_blocks);
    }
    return text;
  }
};

TargetScrape Scrape(std::string url, const std::string& text, std::string role = "") {
  TargetScrape target;
  target.url = std::move(url);
  target.role = std::move(role);
  target.metrics = ParsePrometheusText(text);
  return target;
}

TargetScrape Unreadable(std::string url) {
  TargetScrape target;
  target.url = std::move(url);
  target.status = absl::UnavailableError("connection refused");
  return target;
}

TEST(ObservationBuilderTest, FirstScrapeIsTheBaselineThenRatesFromDeltas) {
  ObservationBuilder builder;
  RouterCounters router{.prompt = 1000, .cached = 100, .generated = 500, .requests = 10};
  WorkerCounters prefill{.role = "prefill", .queue_tokens = 300};
  WorkerCounters decode{.role = "decode", .running = 4, .kv_blocks = 20};
  auto scrape = [&] {
    return std::vector<TargetScrape>{Scrape("http://r", router.Text()),
                                     Scrape("http://p", prefill.Text()),
                                     Scrape("http://d", decode.Text())};
  };
  absl::StatusOr<Observation> first = builder.Build(100, scrape());
  EXPECT_EQ(first.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(first.status().message(), HasSubstr("baseline"));

  // 10 s later: 20000 prompt tokens (5000 cached) in 40 requests, 4000 generated.
  router.prompt += 20000;
  router.cached += 5000;
  router.generated += 4000;
  router.ttft_sum += 40 * 0.25;
  router.ttft_count += 40;
  router.itl_sum += 4000 * 0.02;
  router.itl_count += 4000;
  prefill.ttft_sum += 40 * 0.2;
  prefill.ttft_count += 40;
  prefill.queue_tokens = 1200;
  decode.itl_sum += 4000 * 0.03;
  decode.itl_count += 4000;
  decode.kv_blocks = 35;
  absl::StatusOr<Observation> o = builder.Build(110, scrape());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->time_seconds, 110);
  EXPECT_EQ(o->prefill_instances, 1);
  EXPECT_EQ(o->decode_instances, 1);
  EXPECT_DOUBLE_EQ(o->prompt_tokens_per_second, 2000);
  EXPECT_DOUBLE_EQ(o->prefix_hit_rate, 0.25);
  EXPECT_DOUBLE_EQ(o->mean_prompt_tokens, 500);
  EXPECT_DOUBLE_EQ(o->output_tokens_per_second, 400);
  EXPECT_DOUBLE_EQ(o->mean_context_tokens, 500 + 100 / 2.0);  // prompt + half the answer
  EXPECT_DOUBLE_EQ(o->ttft_seconds, 0.25);
  EXPECT_DOUBLE_EQ(o->itl_seconds, 0.02);
  EXPECT_DOUBLE_EQ(o->active_sequences, 4);  // the decode workers' running sequences
  ASSERT_EQ(o->prefill_load.size(), 1u);
  EXPECT_DOUBLE_EQ(o->prefill_load[0].active, 1200);
  EXPECT_DOUBLE_EQ(o->prefill_load[0].latency_seconds, 0.2);
  ASSERT_EQ(o->decode_load.size(), 1u);
  EXPECT_DOUBLE_EQ(o->decode_load[0].active, 35);
  EXPECT_DOUBLE_EQ(o->decode_load[0].latency_seconds, 0.03);
  EXPECT_TRUE(ValidateObservation(*o).ok());
}

TEST(ObservationBuilderTest, CounterResetsCountFromZero) {
  ObservationBuilder builder;
  RouterCounters router{.prompt = 50000, .generated = 9000, .requests = 100};
  WorkerCounters decode{.epoch = "first", .itl_sum = 100, .itl_count = 1000, .kv_blocks = 5};
  ASSERT_FALSE(
      builder.Build(0, {Scrape("http://r", router.Text()), Scrape("http://d", decode.Text())})
          .ok());
  // The router restarted: its counters went down; what they hold now accrued since.
  router = RouterCounters{.prompt = 3000, .generated = 600, .requests = 6};
  router.ttft_count = 6;
  router.ttft_sum = 6 * 0.1;
  // The worker restarted too (new epoch) and already passed its old counts: only the epoch says.
  decode.epoch = "second";
  decode.itl_sum = 150;
  decode.itl_count = 1500;
  absl::StatusOr<Observation> o =
      builder.Build(10, {Scrape("http://r", router.Text()), Scrape("http://d", decode.Text())});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_DOUBLE_EQ(o->prompt_tokens_per_second, 300);
  EXPECT_DOUBLE_EQ(o->output_tokens_per_second, 60);
  EXPECT_DOUBLE_EQ(o->mean_prompt_tokens, 500);
  EXPECT_DOUBLE_EQ(o->decode_load[0].latency_seconds, 0.1);  // 150 / 1500, not 50 / 500
}

TEST(ObservationBuilderTest, MissingSeriesAndRouterFallBackToTheWorkers) {
  ObservationBuilder builder;
  WorkerCounters decode_a{.role = "decode", .kv_blocks = 10};
  WorkerCounters decode_b{.role = "decode", .with_load_gauges = false};
  WorkerCounters prefill{.role = "prefill", .queue_tokens = 10};
  auto scrape = [&] {
    return std::vector<TargetScrape>{
        Unreadable("http://router"), Scrape("http://a", decode_a.Text()),
        Scrape("http://b", decode_b.Text()), Scrape("http://p", prefill.Text())};
  };
  ASSERT_FALSE(builder.Build(0, scrape()).ok());
  prefill.prompt += 8000;
  prefill.cached += 2000;
  decode_a.generated += 300;
  decode_a.generate_requests += 10;
  decode_a.ttft_sum += 10 * 0.5;
  decode_a.ttft_count += 10;
  decode_b.generated += 100;
  decode_b.generate_requests += 10;
  absl::StatusOr<Observation> o = builder.Build(5, scrape());
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_DOUBLE_EQ(o->prompt_tokens_per_second, 2000);  // (8000 computed + 2000 cached) / 5 s
  EXPECT_DOUBLE_EQ(o->prefix_hit_rate, 0.2);
  EXPECT_DOUBLE_EQ(o->output_tokens_per_second, 80);
  EXPECT_DOUBLE_EQ(o->mean_prompt_tokens, 500);  // 10000 tokens / 20 generate requests
  EXPECT_DOUBLE_EQ(o->ttft_seconds, 0.5);
  EXPECT_EQ(o->decode_instances, 2);
  EXPECT_EQ(o->decode_load.size(), 1u);  // b has no active_kv_blocks: left out of the load
  EXPECT_THAT(builder.notes(), Contains(HasSubstr("http://router: not read")));
  EXPECT_THAT(builder.notes(), Contains(HasSubstr("http://b: no tandem_worker_active_kv_blocks")));
  EXPECT_THAT(builder.notes(), Contains(HasSubstr("rates are summed from the workers")));
}

TEST(ObservationBuilderTest, AnUnreadableTargetKeepsItsBaseline) {
  ObservationBuilder builder;
  RouterCounters router{.prompt = 0};
  ASSERT_FALSE(builder.Build(0, {Scrape("http://r", router.Text(), "router")}).ok());
  absl::StatusOr<Observation> none = builder.Build(10, {Unreadable("http://r")});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(none.status().message(), HasSubstr("no /metrics could be read (http://r)"));
  router.prompt = 3000;
  absl::StatusOr<Observation> o = builder.Build(20, {Scrape("http://r", router.Text(), "router")});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_DOUBLE_EQ(o->prompt_tokens_per_second, 150);  // over the 20 s since the baseline
  EXPECT_EQ(builder.Build(30, {}).status().code(), absl::StatusCode::kUnavailable);
}

TEST(ObservationBuilderTest, MalformedLinesAreNotedAndTheRestIsUsed) {
  ObservationBuilder builder;
  WorkerCounters decode{.kv_blocks = 7};
  const std::string junk = "tandem_worker_broken{ 1\nnot a metric line\n";
  ASSERT_FALSE(builder.Build(0, {Scrape("http://d", junk + decode.Text())}).ok());
  absl::StatusOr<Observation> o = builder.Build(1, {Scrape("http://d", junk + decode.Text())});
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_DOUBLE_EQ(o->decode_load.at(0).active, 7);
  EXPECT_THAT(builder.notes(), Contains(HasSubstr("http://d/metrics: line 1:")));
  // A process that says nothing about its role is left out, and said so.
  ASSERT_TRUE(
      builder.Build(2, {Scrape("http://x", "some_metric 1\n"), Scrape("http://d", decode.Text())})
          .ok());
  EXPECT_THAT(builder.notes(), Contains(HasSubstr("http://x: neither tandem_worker_info")));
}

TEST(ScrapeHelpersTest, WorkerListsAndUrls) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> workers = ParseWorkerList(
      R"({"workers": [{"url": "http://127.0.0.1:1", "role": "prefill", "state": "ready"},
                      {"url": "127.0.0.1:2", "role": "decode", "ready": true},
                      {"url": "http://127.0.0.1:3", "role": "decode", "draining": true},
                      {"url": "http://127.0.0.1:4", "role": "decode", "ready": false}]})");
  ASSERT_TRUE(workers.ok()) << workers.status();
  ASSERT_EQ(workers->size(), 2u);
  EXPECT_EQ((*workers)[1].first, "127.0.0.1:2");
  EXPECT_TRUE(ParseWorkerList(R"([{"url": "http://h:1", "role": "both"}])").ok());
  EXPECT_EQ(ParseWorkerList("{").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseWorkerList(R"([{"role": "decode"}])").status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseWorkerList(R"({"count": 2})").status().code(), absl::StatusCode::kDataLoss);

  EXPECT_EQ(NormalizeScrapeUrl("127.0.0.1:8101")->second, "http://127.0.0.1:8101/metrics");
  EXPECT_EQ(NormalizeScrapeUrl("http://h:9/")->first, "http://h:9");
  EXPECT_EQ(NormalizeScrapeUrl("http://h:9/custom/metrics")->second, "http://h:9/custom/metrics");
  EXPECT_FALSE(NormalizeScrapeUrl("https://h:9").ok());
}

// The scraper against live HTTP servers: a router that lists its workers, workers, a static
// target, and a router without /v1/workers.
class ScrapingSourceTest : public ::testing::Test {
 protected:
  std::unique_ptr<net::HttpServer> Serve(std::function<void(net::HttpServer&)> routes) {
    auto server = std::make_unique<net::HttpServer>(net::HttpServerOptions{});
    routes(*server);
    EXPECT_TRUE(server->Start().ok());
    return server;
  }
  static std::string Url(const net::HttpServer& server) {
    return absl::StrCat("http://127.0.0.1:", server.port());
  }
};

TEST_F(ScrapingSourceTest, DiscoversWorkersThroughTheRouterAndScrapesStaticTargets) {
  std::atomic<double> blocks{10};
  auto metrics_route = [](std::function<std::string()> text) {
    return [text](std::shared_ptr<net::HttpExchange> x) { x->ReplyText(200, text()); };
  };
  auto decode = Serve([&](net::HttpServer& s) {
    s.Handle("GET", "/metrics", metrics_route([&] {
               WorkerCounters w{.role = "decode", .kv_blocks = blocks.load()};
               return w.Text();
             }));
  });
  auto prefill = Serve([&](net::HttpServer& s) {
    s.Handle("GET", "/metrics",
             metrics_route([] { return WorkerCounters{.role = "prefill"}.Text(); }));
  });
  auto broken = Serve([&](net::HttpServer& s) {
    s.Handle("GET", "/metrics",
             [](std::shared_ptr<net::HttpExchange> x) { x->ReplyText(500, "internal error"); });
  });
  const std::string decode_url = Url(*decode), broken_url = Url(*broken);
  auto router = Serve([&](net::HttpServer& s) {
    s.Handle("GET", "/metrics", metrics_route([] { return RouterCounters{}.Text(); }));
    s.Handle("GET", "/v1/workers", [&](std::shared_ptr<net::HttpExchange> x) {
      x->ReplyJson(200, absl::StrCat(R"([{"url": ")", decode_url, R"(", "role": "decode"},
                                          {"url": ")",
                                     broken_url, R"(", "role": "decode"}])"));
    });
  });
  ScrapingMetricsSource source({.router_url = Url(*router),
                                .static_targets = {Url(*prefill).substr(7)},
                                .timeout = absl::Seconds(2)});
  EXPECT_EQ(source.Collect(0).status().code(), absl::StatusCode::kUnavailable);
  blocks = 30;
  absl::StatusOr<Observation> o = source.Collect(1);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->decode_instances, 2);   // the unreadable one still runs
  EXPECT_EQ(o->prefill_instances, 1);  // its role from tandem_worker_info
  ASSERT_EQ(o->decode_load.size(), 1u);
  EXPECT_EQ(o->decode_load[0].active, 30);
  EXPECT_EQ(source.unreadable(), std::vector<std::string>{broken_url});
  EXPECT_THAT(source.notes(), Contains(HasSubstr("answered HTTP 500")));
}

TEST_F(ScrapingSourceTest, ToleratesARouterWithoutAWorkerList) {
  auto worker = Serve([&](net::HttpServer& s) {
    s.Handle("GET", "/metrics", [](std::shared_ptr<net::HttpExchange> x) {
      x->ReplyText(200, WorkerCounters{.role = "decode", .kv_blocks = 3}.Text());
    });
  });
  auto router = Serve([&](net::HttpServer& s) {
    s.Handle("GET", "/metrics", [](std::shared_ptr<net::HttpExchange> x) {
      x->ReplyText(200, RouterCounters{}.Text());
    });
  });
  ScrapingMetricsSource source({.router_url = Url(*router), .static_targets = {Url(*worker)}});
  EXPECT_FALSE(source.Collect(0).ok());
  EXPECT_THAT(source.notes(), Contains(HasSubstr("404, the router does not list its workers")));
  absl::StatusOr<Observation> o = source.Collect(1);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->decode_instances, 1);
  EXPECT_EQ(o->decode_load.at(0).active, 3);
}

}  // namespace
}  // namespace tandem::planner
