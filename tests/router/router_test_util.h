// Helpers for the router's tests: a router in this process with fake workers that register
// themselves, and small HTTP clients (blocking and streaming) that speak to it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fake_worker.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"
#include "router/server.h"

namespace tandem::router::testing {

// Non-control token ids of the random:tiny demo vocabulary (what fake workers generate).
const std::vector<int32_t>& TinyTextTokens();

RouterServerOptions TestRouterOptions();

class RouterHarness {
 public:
  // Starts a router with `options` (model random:tiny unless set).
  explicit RouterHarness(RouterServerOptions options = TestRouterOptions());
  ~RouterHarness();

  // Starts a fake worker that heartbeats to this router; returns it (owned by the harness).
  FakeWorker& AddWorker(FakeWorkerOptions options);
  // Waits until the router lists `count` ready workers.
  bool WaitForReadyWorkers(int count, absl::Duration timeout = absl::Seconds(10));

  std::string url() const;
  RouterServer& router() { return *router_; }
  std::vector<std::unique_ptr<FakeWorker>>& workers() { return workers_; }

  absl::StatusOr<net::HttpResult> Post(const std::string& path, const nlohmann::json& body,
                                       net::HeaderList headers = {});
  absl::StatusOr<net::HttpResult> Get(const std::string& path, net::HeaderList headers = {});
  // The value of one sample of the router's /metrics ("name{labels}"), or -1 when absent.
  double Metric(const std::string& sample);

 private:
  net::HeaderList WithKey(net::HeaderList headers) const;

  std::string api_key_;  // sent when a call gives no authorization of its own
  std::unique_ptr<RouterServer> router_;
  std::vector<std::unique_ptr<FakeWorker>> workers_;
};

// A streaming request to the router collected as it arrives.
struct StreamResult {
  int http_status = 0;
  absl::Status status;
  std::vector<nlohmann::json> chunks;  // parsed data events, without [DONE]
  bool saw_done = false;
  std::string error_body;
  // Concatenated text of choice `index` (completions: text; chat: delta.content).
  std::string Text(int index = 0) const;
  std::string FinishReason(int index = 0) const;
};

class StreamCollector {
 public:
  // Opens the stream on `loop`; `cancel_after_events` > 0 closes it after that many events.
  StreamCollector(net::EventLoop& loop, const std::string& url, const nlohmann::json& body,
                  int cancel_after_events = 0, net::HeaderList headers = {});
  bool Wait(absl::Duration timeout);
  StreamResult result();
  int events() const;

 private:
  std::shared_ptr<net::SseClient> client_;
  mutable absl::Mutex mu_;
  StreamResult result_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  int events_ ABSL_GUARDED_BY(mu_) = 0;
  int cancel_after_ = 0;
};

// Polls `condition` until true or `timeout`.
template <typename Condition>
bool WaitUntil(Condition condition, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return condition();
}

}  // namespace tandem::router::testing
