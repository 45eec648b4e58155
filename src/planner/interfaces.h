// The planner's edges: where observations come from and where decisions go. The pure core
// (planner.h) sits between them; the live loop is
//
//   Observation observation = *source.Collect(now);
//   Decision decision = planner.Decide(observation);
//   LogDecision(decision); metrics.Record(decision);
//   if (!decision.advisory) connector.Apply(decision);
//
// Sources: SnapshotMetricsSource (a fixed history, for `--once` and tests), ScrapingMetricsSource
// (the roles' /metrics, metrics_scraper.h), PrometheusMetricsSource (a Prometheus server's HTTP
// API, prometheus_source.h). Connectors: AdvisoryConnector (records decisions, acts on nothing),
// LocalScaleConnector (the local orchestrator's scale API, local_connector.h),
// KubernetesScaleConnector (scale subresources, kubernetes_connector.h). The live loop is
// PlannerLoop (live_loop.h).
//
// Thread-safety: implementations are used from the planner's one loop thread.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "planner/planner.h"

namespace tandem::planner {

class MetricsSource {
 public:
  virtual ~MetricsSource() = default;
  // The cluster's state over the interval ending at `now_seconds`. kUnavailable when the
  // metrics cannot be read this time (the loop skips the interval and keeps the counts).
  virtual absl::StatusOr<Observation> Collect(double now_seconds) = 0;
  // What the last Collect could not use, one line each (for logs).
  virtual std::vector<std::string> notes() const { return {}; }
  // The processes or servers the last Collect could not read (URLs, for the per-target error
  // counter).
  virtual std::vector<std::string> unreadable() const { return {}; }
};

// Planner instances (TP groups) per role.
struct ReplicaCounts {
  int prefill = 0;
  int decode = 0;
};

// The current replica counts and the way to change them.
class ScaleConnector {
 public:
  virtual ~ScaleConnector() = default;
  // Sets each role to its target count. Must be idempotent: the same decision applied twice
  // changes nothing the second time.
  virtual absl::Status Apply(const Decision& decision) = 0;
  // The counts asked for so far (what is starting counts, what is draining does not), so that a
  // decision compares with what was already requested; kUnimplemented when the connector cannot
  // tell (the loop then counts the workers it scraped).
  virtual absl::StatusOr<ReplicaCounts> Current() {
    return absl::UnimplementedError("this connector does not report replica counts");
  }
  // For logs and the `connector` label of tandem_planner_scale_errors_total.
  virtual std::string name() const = 0;
};

// Replays a recorded history, one observation per Collect, then kOutOfRange.
class SnapshotMetricsSource : public MetricsSource {
 public:
  explicit SnapshotMetricsSource(std::vector<Observation> history) : history_(std::move(history)) {}
  absl::StatusOr<Observation> Collect(double now_seconds) override;

 private:
  std::vector<Observation> history_;
  size_t next_ = 0;
};

// Advisory mode: keeps every decision, acts on nothing.
class AdvisoryConnector : public ScaleConnector {
 public:
  absl::Status Apply(const Decision& decision) override {
    decisions_.push_back(decision);
    return absl::OkStatus();
  }
  const std::vector<Decision>& decisions() const { return decisions_; }
  std::string name() const override { return "advisory"; }

 private:
  std::vector<Decision> decisions_;
};

}  // namespace tandem::planner
