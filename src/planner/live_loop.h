// PlannerLoop: the live planner. Every interval it collects an observation, lets the pure
// planner decide, logs the decision (one structured line), records it in the planner's metrics
// and, unless in advisory mode, applies it through the connector.
//
//   PlannerLoop loop(std::move(planner), source, connector, {.listen = "127.0.0.1:8090"});
//   TANDEM_RETURN_IF_ERROR(loop.StartServer());   // /metrics, /health, /ready, /v1/decision
//   while (!loop.stop_requested()) { loop.Evaluate(now_seconds); wait for the interval; }
//   loop.Shutdown();
//
// Nothing that fails outside the planner stops it: an interval without an observation (no
// /metrics readable, the first scrape, a Prometheus error) is logged, counted
// (tandem_planner_skipped_intervals_total) and skipped, the counts stay as they are. A failed
// scale call is logged, counted (tandem_planner_scale_errors_total{connector}) and retried at
// the next evaluation when the new decision does not supersede it. The current counts come from
// the connector (what was asked for) when it can tell, else from the observation.
//
// HTTP (on `listen`): GET /metrics (Prometheus text), GET /health ({"status": "ok", "epoch"}),
// GET /ready (200 once the first evaluation ran, 503 while stopping), GET /v1/decision (the last
// decision as JSON; advisory mode publishes it here without acting), POST /admin/drain (stop
// after the current evaluation, as SIGTERM does).
//
// Thread-safety: Evaluate runs on one thread (the loop's); the HTTP handlers run on the
// server's thread and only read what is guarded here or thread-safe (the metrics registry).
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "core/metrics.h"
#include "planner/interfaces.h"
#include "planner/planner.h"
#include "planner/report.h"

namespace tandem::net {
class HttpServer;
}

namespace tandem::planner {

struct PlannerLoopOptions {
  std::string listen;  // host:port of the HTTP server; empty = none
  // Roles whose current count the connector reports (the roles some scale target holds).
  bool connector_holds_prefill = true;
  bool connector_holds_decode = true;
};

// What one evaluation did.
struct Evaluation {
  absl::Status observation;  // why there was none, OK when there was
  bool decided = false;
  Decision decision;
  bool applied = false;       // the connector took it (or a retried earlier one)
  absl::Status apply_status;  // the connector's error, if any
};

class PlannerLoop {
 public:
  // `source` and `connector` must outlive the loop.
  PlannerLoop(Planner planner, MetricsSource& source, ScaleConnector& connector,
              PlannerLoopOptions options);
  ~PlannerLoop();

  absl::Status StartServer();
  int port() const;  // the HTTP server's port (0 without one)

  Evaluation Evaluate(double now_seconds);

  void RequestStop() { stop_requested_.store(true); }
  bool stop_requested() const { return stop_requested_.load(); }
  // /ready answers 503 from here on; the server stops.
  void Shutdown();

  MetricsRegistry& registry() { return registry_; }
  const Planner& planner() const { return planner_; }

 private:
  Planner planner_;
  MetricsSource& source_;
  ScaleConnector& connector_;
  PlannerLoopOptions options_;
  MetricsRegistry registry_;
  DecisionMetrics decision_metrics_;
  Family<Counter>& scale_errors_;
  Family<Counter>& scrape_errors_;
  Family<Counter>& skipped_intervals_;
  Family<Counter>& evaluations_;
  Family<Gauge>& last_evaluation_;
  std::unique_ptr<net::HttpServer> server_;
  std::string epoch_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> evaluated_once_{false};
  std::atomic<bool> shut_down_{false};
  std::optional<Decision> unapplied_;
  std::vector<std::string> last_notes_;  // the last decision the connector failed to apply
  absl::Mutex mu_;
  std::string last_decision_json_ ABSL_GUARDED_BY(mu_);
};

}  // namespace tandem::planner
