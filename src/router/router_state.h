// RouterState: the router's shared decision state behind one lock — the worker registry, the
// KV index with the load forecast (KvRouter), and how many streams the router has open on each
// worker. HTTP handlers, worker streams, KV event streams and the housekeeping thread all go
// through it; each call holds the lock briefly and does no I/O.
//
//   RouterState state(options);
//   absl::StatusOr<RouteResult> route = state.Route(id, prompt, max_tokens, /*excluded=*/{});
//   ... state.PrefillDone(id); state.Finished(id);
//
// Thread-safety: thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "router/kv_router.h"
#include "router/worker_registry.h"

namespace tandem::router {

struct RouteResult {
  RoutingDecision decision;
  std::string decode_url;
  std::string prefill_url;  // empty when aggregated
};

// Where the KV bytes per token of a transfer's cost come from (docs/routing.md "KV bytes per
// token").
enum class KvBytesSource : uint8_t {
  kFlag,             // the operator's value (--kv-bytes-per-token), for every worker
  kWorker,           // the worker's own KV layout, from its /v1/info
  kLargestReported,  // it reported none: the largest any registered worker reported
  kDefault,          // no worker reported one: RoutingConfig::kv_bytes_per_token
};
// "flag", "worker", "largest_reported", "default".
std::string_view KvBytesSourceName(KvBytesSource source);

struct KvBytesPerToken {
  int64_t value = 0;
  KvBytesSource source = KvBytesSource::kDefault;
};

// The KV bytes per token Route costs transfers with: into each registered worker, and into a
// worker that reported none.
struct KvBytesPerTokenInUse {
  KvBytesPerToken fallback;
  absl::flat_hash_map<WorkerId, KvBytesPerToken> workers;
};

// What a KV event stream should follow: one worker incarnation.
struct KvSource {
  WorkerId id = 0;
  std::string url;
  uint64_t epoch = 0;
};

class RouterState {
 public:
  struct Options {
    KvRouter::Options routing;
    RegistryOptions registry;
    // Streams the router keeps open on one decode worker at most; 0: no limit (the worker's
    // KV capacity, when reported, still bounds it).
    int max_streams_per_worker = 0;
    // Transfers into a worker are costed with the KV bytes per token of its own layout
    // (LearnKvLayout); false: routing.routing.kv_bytes_per_token for every worker (the operator
    // set it).
    bool learn_kv_bytes_per_token = true;
  };
  static absl::StatusOr<std::unique_ptr<RouterState>> Create(const Options& options);

  // Decides where a request runs and records it (forecast, stream counts) under `route_id`.
  // Workers in `excluded` are not considered (they failed this request before).
  absl::StatusOr<RouteResult> Route(uint64_t route_id, std::span<const int32_t> prompt_tokens,
                                    int64_t max_tokens, std::span<const WorkerId> excluded);
  void PrefillDone(uint64_t route_id);
  // Ends what Route recorded; harmless for unknown ids.
  void Finished(uint64_t route_id);

  // Registry updates. A retired or expired incarnation's KV index entries are dropped.
  absl::StatusOr<RegistryChange> Report(const WorkerReport& report, int64_t now_micros,
                                        bool from_static_list);
  // Takes the KV layout of a worker's /v1/info answer (WorkerRegistry::LearnKvLayout).
  KvLayoutChange LearnKvLayout(const WorkerReport& info);
  void MarkFailed(WorkerId id);
  std::vector<WorkerId> Expire(int64_t now_micros);
  std::vector<RegisteredWorker> Workers() const;
  std::vector<KvSource> KvSources() const;
  bool IsLive(WorkerId id, uint64_t epoch) const;
  // True when some decode-capable worker is ready and not draining.
  bool CanServe() const;

  // KV index feed. Returns the outcome; kNeedsResync means the caller must resynchronise.
  absl::StatusOr<ApplyOutcome> ApplyKvEvent(WorkerId id, const KvEvent& event);
  absl::Status ApplyKvSnapshot(WorkerId id, const KvSnapshot& snapshot);
  // Forgets a worker's KV blocks (before a resync from scratch).
  void ForgetKv(WorkerId id);

  int streams_on(WorkerId id) const;
  KvIndexStats kv_stats() const;
  int block_size() const { return block_size_; }
  // The KV bytes per token Route uses now.
  KvBytesPerTokenInUse kv_bytes_per_token() const;
  bool learns_kv_bytes_per_token() const { return options_.learn_kv_bytes_per_token; }

 private:
  explicit RouterState(const Options& options, std::unique_ptr<KvRouter> router);
  // For a worker that reported none, among `workers` as the registry fills them in.
  KvBytesPerToken FallbackKvBytesPerToken(std::span<const WorkerInfo> workers) const;
  // For `worker` as the registry fills it in.
  KvBytesPerToken KvBytesPerTokenOf(const WorkerInfo& worker,
                                    const KvBytesPerToken& fallback) const;

  const Options options_;
  const int block_size_;
  mutable absl::Mutex mu_;
  WorkerRegistry registry_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<KvRouter> router_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<WorkerId, int> streams_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, WorkerId> route_worker_ ABSL_GUARDED_BY(mu_);
  std::vector<WorkerInfo> infos_ ABSL_GUARDED_BY(mu_);  // reused between decisions
};

}  // namespace tandem::router
