// The worker's Prometheus metrics (names and meanings in docs/metrics.md, "Worker"), plus the
// KV transfer metrics of kv/metrics.h in the same registry.
//
// Thread-safety: every member is safe to use from any thread.
#pragma once

#include "absl/strings/string_view.h"

#include "core/metrics.h"
#include "engine/engine.h"
#include "kv/metrics.h"

namespace tandem::worker {

class WorkerMetrics {
  // Declared first: everything below is registered in it.
  MetricsRegistry registry_;

 public:
  WorkerMetrics();
  // tandem_worker_info{role, model, epoch} = 1; called once the model is loaded.
  void SetIdentity(absl::string_view role, absl::string_view model, absl::string_view epoch);

  MetricsRegistry& registry() { return registry_; }
  kv::KvMetrics& kv() { return kv_; }

  // Called about once a second, from one thread, with the engine's statistics since the previous
  // call. `reserved_blocks`: blocks held by open KV import reservations.
  void OnEngineStats(const engine::EngineStats& stats, double window_seconds,
                     int64_t reserved_blocks);

 private:
  kv::KvMetrics kv_;

 public:
  Counter& prompt_tokens;
  Counter& cached_prompt_tokens;
  Counter& generated_tokens;
  Gauge& prefill_queue_tokens;
  Histogram& ttft;
  Histogram& itl;
  Family<Counter>& prefill_fallbacks;  // reason
  Family<Counter>& requests;           // kind, outcome

 private:
  Counter& busy_seconds_;
  Gauge& busy_ratio_;
  Histogram& batch_tokens_;
  Gauge& running_;
  Gauge& waiting_;
  Gauge& active_blocks_;
  Gauge& capacity_blocks_;
  Family<Gauge>& blocks_;
  Gauge& prefix_hit_ratio_;
  int64_t last_steps_ = 0;  // only OnEngineStats' thread
};

}  // namespace tandem::worker
