// Publishing decisions: one structured log line per decision and Prometheus gauges for what was
// predicted, chosen and observed, so every decision can be explained after the fact.
//
//   MetricsRegistry registry;
//   DecisionMetrics metrics(registry);
//   metrics.Record(decision);   // tandem_planner_* gauges
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
  Family<Gauge>& current_;
  Family<Gauge>& target_;
  Family<Gauge>& observed_load_;
  Family<Gauge>& predicted_load_;
  Family<Gauge>& capacity_;
  Family<Gauge>& correction_;
  Family<Gauge>& observed_latency_;
  Family<Gauge>& predicted_latency_;
  Family<Gauge>& gpus_;
  Family<Gauge>& advisory_;
  Family<Counter>& decisions_;
};

void LogDecision(const Decision& decision);

}  // namespace tandem::planner
