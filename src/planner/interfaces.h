// The planner's edges: where observations come from and where decisions go. The pure core
// (planner.h) sits between them; the live loop is
//
//   Observation observation = *source.Collect(now);
//   Decision decision = planner.Decide(observation);
//   LogDecision(decision); metrics.Record(decision);
//   if (!decision.advisory) connector.Apply(decision);
//
// Implementations: SnapshotMetricsSource (a fixed history, for `--once` and tests) and
// AdvisoryConnector (records decisions, acts on nothing). Scraping the roles' /metrics or the
// Prometheus HTTP API, and the local-orchestrator and Kubernetes connectors, implement these
// interfaces once the worker, router and orchestrator exist (docs/planner.md, "Status").
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
};

// The current replica counts and the way to change them.
class ScaleConnector {
 public:
  virtual ~ScaleConnector() = default;
  // Sets each role to its target count. Must be idempotent: the same decision applied twice
  // changes nothing the second time.
  virtual absl::Status Apply(const Decision& decision) = 0;
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

 private:
  std::vector<Decision> decisions_;
};

}  // namespace tandem::planner
