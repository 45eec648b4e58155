// The router's metrics, with exactly the names of docs/metrics.md ("Router"): the dashboard,
// the planner and `tandem bench` read them.
//
// Thread-safety: the families are thread-safe; references stay valid as long as the registry.
#pragma once

#include <string_view>

#include "core/metrics.h"

namespace tandem::router {

struct RouterMetrics {
  explicit RouterMetrics(MetricsRegistry& registry);

  Family<Counter>& requests;  // endpoint, outcome
  Histogram& ttft;
  Histogram& itl;
  Histogram& e2e;
  Family<Histogram>& span;  // span
  Counter& prompt_tokens;
  Counter& cached_prompt_tokens;
  Counter& generated_tokens;
  Gauge& active_requests;
  Family<Gauge>& queue_depth;          // worker
  Family<Counter>& routing_decisions;  // decision
  Family<Counter>& migrations;         // outcome
  Family<Gauge>& workers;              // role, state
  Counter& kv_events;
  Counter& kv_resyncs;
};

}  // namespace tandem::router
