#include "dashboard/dashboard.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "net/http_client.h"

namespace tandem::dashboard {

Dashboard::Dashboard(DashboardOptions options) : options_(std::move(options)) {
  while (!options_.planner_url.empty() && options_.planner_url.back() == '/') {
    options_.planner_url.pop_back();
  }
  if (!options_.planner_url.empty()) poller_ = std::thread([this] { PollPlanner(); });
}

Dashboard::~Dashboard() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  if (poller_.joinable()) poller_.join();
}

void Dashboard::PollPlanner() {
  std::unique_lock lock(mutex_);
  while (!stop_) {
    lock.unlock();
    absl::StatusOr<net::HttpResult> result =
        net::HttpClient::Fetch({.method = "GET",
                                .url = options_.planner_url + "/metrics",
                                .timeout = options_.planner_timeout,
                                .max_response_bytes = 4 << 20});
    lock.lock();
    if (result.ok() && result->status == 200) {
      planner_text_ = std::move(result->body);
      planner_fetched_ = absl::Now();
      planner_error_.clear();
    } else {
      const std::string why = result.ok() ? absl::StrCat("the planner answered ", result->status)
                                          : std::string(result.status().message());
      if (why != planner_error_) {
        LogWarn("dashboard: cannot read the planner's metrics",
                {{"planner", options_.planner_url}, {"error", why}});
      }
      planner_error_ = why;
    }
    wake_.wait_for(lock, absl::ToChronoMilliseconds(options_.planner_poll),
                   [this] { return stop_; });
  }
}

void Dashboard::AddRoutes(net::HttpServer& server) {
  server.Handle("GET", "/dashboard", [](std::shared_ptr<net::HttpExchange> exchange) {
    net::HttpResponse response;
    response.status = 200;
    response.content_type = "text/html; charset=utf-8";
    response.headers.push_back({"cache-control", "no-cache"});
    response.headers.push_back(
        {"content-security-policy",
         "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
         "connect-src 'self'; img-src 'self' data:"});
    response.body = std::string(PageHtml());
    exchange->Reply(std::move(response));
  });
  server.Handle("GET", "/dashboard/planner", [this](std::shared_ptr<net::HttpExchange> exchange) {
    if (options_.planner_url.empty()) {  // nothing to relay: no content, not an error
      exchange->Reply({.status = 204, .content_type = "text/plain", .body = ""});
      return;
    }
    std::string text, error;
    {
      std::lock_guard lock(mutex_);
      if (absl::Now() - planner_fetched_ <= options_.planner_stale_after) {
        text = planner_text_;
      } else {
        error = planner_error_.empty() ? "the planner's metrics are stale" : planner_error_;
      }
    }
    if (!error.empty()) {
      exchange->ReplyError(503, absl::StrCat("planner unavailable: ", error), "unavailable");
      return;
    }
    exchange->ReplyText(200, std::move(text), "text/plain; version=0.0.4");
  });
}

}  // namespace tandem::dashboard
