#include "worker/worker_metrics.h"

#include <algorithm>
#include <string>

namespace tandem::worker {

WorkerMetrics::WorkerMetrics()
    : kv_(registry_),
      prompt_tokens(registry_
                        .AddCounter("tandem_worker_prompt_tokens_total",
                                    "Prompt tokens computed here (not cached, not imported).")
                        .Get()),
      cached_prompt_tokens(registry_
                               .AddCounter("tandem_worker_cached_prompt_tokens_total",
                                           "Prompt tokens found in the local prefix cache.")
                               .Get()),
      generated_tokens(
          registry_.AddCounter("tandem_worker_generated_tokens_total", "Tokens sampled.").Get()),
      prefill_queue_tokens(registry_
                               .AddGauge("tandem_worker_prefill_queue_tokens",
                                         "Uncached prompt tokens queued or running.")
                               .Get()),
      ttft(registry_
               .AddHistogram("tandem_worker_ttft_seconds",
                             "Per request on this worker: arrival to first token.",
                             LatencyBucketsSeconds())
               .Get()),
      itl(registry_
              .AddHistogram("tandem_worker_itl_seconds",
                            "Per token on this worker: gap between tokens.",
                            LatencyBucketsSeconds())
              .Get()),
      prefill_fallbacks(registry_.AddCounter("tandem_worker_prefill_fallbacks_total",
                                             "Remote prefill failed; prefilled locally.",
                                             {"reason"})),
      requests(registry_.AddCounter("tandem_worker_requests_total", "Requests by outcome.",
                                    {"kind", "outcome"})),
      busy_seconds_(registry_
                        .AddCounter("tandem_worker_busy_seconds_total",
                                    "Wall time the engine spent in steps.")
                        .Get()),
      busy_ratio_(registry_
                      .AddGauge("tandem_worker_busy_ratio",
                                "Busy fraction over the last sampling interval.")
                      .Get()),
      batch_tokens_(registry_
                        .AddHistogram("tandem_worker_batch_tokens", "Tokens per engine step.",
                                      ExponentialBuckets(1, 2, 14))
                        .Get()),
      running_(
          registry_.AddGauge("tandem_worker_running_requests", "Sequences in the batch.").Get()),
      waiting_(registry_
                   .AddGauge("tandem_worker_waiting_requests",
                             "Sequences waiting for KV or a batch slot.")
                   .Get()),
      active_blocks_(registry_
                         .AddGauge("tandem_worker_active_kv_blocks",
                                   "KV blocks referenced by running sequences and reservations.")
                         .Get()),
      capacity_blocks_(
          registry_.AddGauge("tandem_worker_kv_capacity_blocks", "Blocks in the KV pool.").Get()),
      blocks_(registry_.AddGauge("tandem_worker_kv_blocks", "KV pool occupancy.", {"state"})),
      prefix_hit_ratio_(registry_
                            .AddGauge("tandem_worker_prefix_hit_ratio",
                                      "Cached / looked-up prompt blocks since start.")
                            .Get()) {
  for (const char* reason : {"unreachable", "refused", "timeout", "overloaded", "prefill_error",
                             "lease_expired", "corrupt", "transfer_failed", "reserve_failed"}) {
    prefill_fallbacks.Get(reason);
  }
  for (const char* kind : {"generate", "prefill"}) {
    for (const char* outcome : {"ok", "client_error", "rejected", "cancelled", "error"}) {
      requests.Get(kind, outcome);
    }
  }
}

void WorkerMetrics::SetIdentity(absl::string_view role, absl::string_view model,
                                absl::string_view epoch) {
  registry_.AddGauge("tandem_worker_info", "Worker identity.", {"role", "model", "epoch"})
      .Get(role, model, epoch)
      .Set(1);
}

void WorkerMetrics::OnEngineStats(const engine::EngineStats& stats, double window_seconds,
                                  int64_t reserved_blocks) {
  busy_ratio_.Set(stats.busy_fraction);
  if (window_seconds > 0) busy_seconds_.Increment(stats.busy_fraction * window_seconds);
  // The engine reports the mean step size of the window: one observation of it per step.
  const int64_t steps = std::min<int64_t>(stats.steps - last_steps_, 1'000'000);
  last_steps_ = stats.steps;
  for (int64_t i = 0; i < steps; ++i) batch_tokens_.Observe(stats.mean_batch_tokens);
  running_.Set(static_cast<double>(stats.running));
  waiting_.Set(static_cast<double>(stats.waiting));
  const engine::BlockPoolStats& pool = stats.pool;
  active_blocks_.Set(static_cast<double>(pool.referenced_blocks));
  capacity_blocks_.Set(static_cast<double>(pool.total_blocks));
  const int64_t reserved = std::min(reserved_blocks, pool.referenced_blocks);
  blocks_.Get("used").Set(static_cast<double>(pool.referenced_blocks - reserved));
  blocks_.Get("reserved").Set(static_cast<double>(reserved));
  blocks_.Get("cached").Set(static_cast<double>(pool.cached_blocks));
  blocks_.Get("free").Set(static_cast<double>(pool.free_blocks));
  prefix_hit_ratio_.Set(stats.prefix_hit_rate);
}

}  // namespace tandem::worker
