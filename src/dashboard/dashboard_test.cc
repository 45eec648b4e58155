#include "dashboard/dashboard.h"

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "net/http_client.h"
#include "net/http_server.h"

namespace tandem::dashboard {
namespace {

std::string Url(const net::HttpServer& server, const std::string& path) {
  return absl::StrCat("http://127.0.0.1:", server.port(), path);
}

TEST(DashboardPage, IsSelfContainedAndReadsTheDocumentedMetrics) {
  const std::string page(PageHtml());
  ASSERT_GT(page.size(), 1000u);
  EXPECT_EQ(page.rfind("<!doctype html>", 0), 0u);
  // No external assets: every fetch and resource is same-origin.
  EXPECT_EQ(page.find("http://"), std::string::npos);
  EXPECT_EQ(page.find("https://"), std::string::npos);
  EXPECT_EQ(page.find("src=\""), std::string::npos);
  // The metric names of docs/metrics.md that the charts read.
  for (const char* name :
       {"tandem_router_ttft_seconds", "tandem_router_itl_seconds", "tandem_router_requests_total",
        "tandem_router_generated_tokens_total", "tandem_router_queue_depth",
        "tandem_router_active_requests", "tandem_planner_replicas",
        "tandem_planner_decisions_total", "/v1/workers"}) {
    EXPECT_NE(page.find(name), std::string::npos) << name;
  }
}

TEST(Dashboard, ServesThePageAndSaysWhenNoPlannerIsConfigured) {
  net::HttpServer server({});
  Dashboard dashboard({});
  dashboard.AddRoutes(server);
  ASSERT_TRUE(server.Start().ok());
  absl::StatusOr<net::HttpResult> page = net::HttpClient::Fetch({.url = Url(server, "/dashboard")});
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  ASSERT_NE(page->Header("content-type"), nullptr);
  EXPECT_NE(page->Header("content-type")->find("text/html"), std::string::npos);
  EXPECT_EQ(page->body, std::string(PageHtml()));
  absl::StatusOr<net::HttpResult> planner =
      net::HttpClient::Fetch({.url = Url(server, "/dashboard/planner")});
  ASSERT_TRUE(planner.ok());
  EXPECT_EQ(planner->status, 204);
  server.Shutdown(absl::ZeroDuration());
}

TEST(Dashboard, RelaysThePlannerAndReportsItGone) {
  auto planner = std::make_unique<net::HttpServer>(net::HttpServerOptions{});
  planner->Handle("GET", "/metrics", [](std::shared_ptr<net::HttpExchange> exchange) {
    exchange->ReplyText(200, "tandem_planner_replicas{role=\"decode\",kind=\"target\"} 2\n");
  });
  ASSERT_TRUE(planner->Start().ok());
  const int planner_port = planner->port();

  net::HttpServer server({});
  Dashboard dashboard({.planner_url = absl::StrCat("http://127.0.0.1:", planner_port, "/"),
                       .planner_poll = absl::Milliseconds(50),
                       .planner_timeout = absl::Milliseconds(500),
                       .planner_stale_after = absl::Milliseconds(400)});
  dashboard.AddRoutes(server);
  ASSERT_TRUE(server.Start().ok());

  auto fetch = [&] { return net::HttpClient::Fetch({.url = Url(server, "/dashboard/planner")}); };
  absl::StatusOr<net::HttpResult> relayed;
  for (int i = 0; i < 100; ++i) {
    relayed = fetch();
    if (relayed.ok() && relayed->status == 200) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(relayed.ok());
  ASSERT_EQ(relayed->status, 200);
  EXPECT_NE(relayed->body.find("tandem_planner_replicas"), std::string::npos);

  // The planner goes away: once the last good snapshot is stale the relay answers 503.
  planner->Shutdown(absl::ZeroDuration());
  planner.reset();
  for (int i = 0; i < 100; ++i) {
    relayed = fetch();
    if (relayed.ok() && relayed->status == 503) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(relayed.ok());
  EXPECT_EQ(relayed->status, 503);
  EXPECT_NE(relayed->body.find("planner unavailable"), std::string::npos);
  server.Shutdown(absl::ZeroDuration());
}

}  // namespace
}  // namespace tandem::dashboard
