#include "router/router_metrics.h"

namespace tandem::router {

RouterMetrics::RouterMetrics(MetricsRegistry& registry)
    : requests(registry.AddCounter("tandem_router_requests_total",
                                   "Requests by endpoint and by how they ended.",
                                   {"endpoint", "outcome"})),
      ttft(registry
               .AddHistogram("tandem_router_ttft_seconds", "Request arrival to first token sent.",
                             LatencyBucketsSeconds())
               .Get()),
      itl(registry
              .AddHistogram("tandem_router_itl_seconds", "Gap between consecutive tokens sent.",
                            LatencyBucketsSeconds())
              .Get()),
      e2e(registry
              .AddHistogram("tandem_router_e2e_seconds", "Request arrival to last byte.",
                            LatencyBucketsSeconds())
              .Get()),
      span(registry.AddHistogram("tandem_router_span_seconds",
                                 "Per-request breakdown of the time to first token.",
                                 LatencyBucketsSeconds(), {"span"})),
      prompt_tokens(
          registry.AddCounter("tandem_router_prompt_tokens_total", "Prompt tokens received.")
              .Get()),
      cached_prompt_tokens(registry
                               .AddCounter("tandem_router_cached_prompt_tokens_total",
                                           "Prompt tokens served from a prefix cache.")
                               .Get()),
      generated_tokens(
          registry.AddCounter("tandem_router_generated_tokens_total", "Completion tokens sent.")
              .Get()),
      active_requests(
          registry.AddGauge("tandem_router_active_requests", "Admitted, not finished.").Get()),
      queue_depth(registry.AddGauge("tandem_router_queue_depth",
                                    "Requests waiting for a worker slot.", {"worker"})),
      routing_decisions(registry.AddCounter("tandem_router_routing_decisions_total",
                                            "Where prefill ran.", {"decision"})),
      migrations(registry.AddCounter("tandem_router_migrations_total",
                                     "Streams moved off a dead decode worker.", {"outcome"})),
      workers(registry.AddGauge("tandem_router_workers", "Registered workers.", {"role", "state"})),
      kv_events(registry.AddCounter("tandem_router_kv_events_total", "KV events ingested.").Get()),
      kv_resyncs(registry
                     .AddCounter("tandem_router_kv_resyncs_total",
                                 "Snapshots taken after a gap or a new epoch.")
                     .Get()) {
  // Children that exist from the start, so dashboards see zeros rather than nothing.
  queue_depth.Get("all");
  for (const char* decision : {"aggregated", "disaggregated"}) routing_decisions.Get(decision);
  for (const char* outcome : {"ok", "failed"}) migrations.Get(outcome);
  for (const char* name : {"queue", "prefill", "kv_transfer", "first_decode"}) span.Get(name);
}

}  // namespace tandem::router
