// Publishing decisions: one structured log line per decision and the planner's Prometheus
// metrics (names: docs/metrics.md, "Planner"), so every decision can be explained after the fact.
//
//   MetricsRegistry registry;
//   DecisionMetrics metrics(registry);
//   metrics.Record(decision);   // tandem_planner_* gauges and the decision counter
//   LogDecision(decision);      // "planner decision" with its fields and reasons
//
// Thread-safety: Record may be called from any thread (the registry is thread-safe); the
// planner's loop calls it from one.
#pragma once

#include "core/metrics.h"
#include "planner/planner.h"

namespace tandem::planner {

class DecisionMetrics {
 public:
  explicit DecisionMetrics(MetricsRegistry& registry);
  void Record(const Decision& decision);

 private:
  Family<Gauge>& replicas_;  // role, kind: current, proposed, target
  Family<Gauge>& observed_load_;
  Family<Gauge>& predicted_load_;
  Family<Gauge>& capacity_;
  Family<Gauge>& correction_;
  Family<Gauge>& latency_;  // role, kind: observed, predicted
  Family<Gauge>& gpus_;
  Family<Gauge>& advisory_;
  Family<Counter>& decisions_;  // role, action: up, down, hold; reason
};

// "up", "down" or "hold": where `role` moves.
const char* ActionOf(const RoleDecision& role);

void LogDecision(const Decision& decision);

}  // namespace tandem::planner
