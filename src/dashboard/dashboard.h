// The live dashboard a router serves at `/dashboard`: one self-contained HTML page (no external
// assets) that polls the router's own `/metrics` and `/v1/workers` and draws TTFT/ITL p50/p99,
// request and token rates, queue depths, KV usage per worker and ready replicas per role. When a
// planner is configured, `/dashboard/planner` relays the planner's `/metrics` (fetched in the
// background, never on a request) and the page charts its decisions.
//
//   auto dashboard = std::make_unique<dashboard::Dashboard>(dashboard::DashboardOptions{
//       .planner_url = "http://127.0.0.1:8300"});
//   dashboard->AddRoutes(server);   // before server.Start()
//   ...
//   dashboard.reset();              // after server.Shutdown(): stops the planner poller
//
// Thread-safety: AddRoutes once before the server starts; the handlers are thread-safe.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "absl/time/time.h"
#include "net/http_server.h"

namespace tandem::dashboard {

// The page, compiled in from src/dashboard/dashboard.html.
std::string_view PageHtml();

struct DashboardOptions {
  std::string planner_url;  // http://host:port of a planner; empty: none
  absl::Duration planner_poll = absl::Seconds(2);
  absl::Duration planner_timeout = absl::Seconds(2);
  // A relayed planner snapshot older than this answers 503 (the planner stopped answering).
  absl::Duration planner_stale_after = absl::Seconds(10);
};

class Dashboard {
 public:
  explicit Dashboard(DashboardOptions options);
  ~Dashboard();
  Dashboard(const Dashboard&) = delete;
  Dashboard& operator=(const Dashboard&) = delete;

  // GET /dashboard (the page) and GET /dashboard/planner (the relayed planner metrics: 204
  // without a planner, 503 while none could be read recently).
  void AddRoutes(net::HttpServer& server);

 private:
  void PollPlanner();

  DashboardOptions options_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::string planner_text_;
  absl::Time planner_fetched_ = absl::InfinitePast();
  std::string planner_error_ = "the planner has not been read yet";
  std::thread poller_;
};

}  // namespace tandem::dashboard
