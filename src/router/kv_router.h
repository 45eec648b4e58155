// KvRouter: the router's pure decision core in one object. It owns the KV index, the load
// forecast and the seeded RNG, and turns "this prompt, these workers" into a RoutingDecision:
// hash the prompt into blocks, ask the index (and the forecast's in-flight prompts) how much of
// it each worker caches, combine reported and forecast load, and call DecideRoute. The HTTP
// front end and the simulator both drive it; neither the front end's sockets nor the
// simulator's clock reach inside.
//
//   TANDEM_ASSIGN_OR_RETURN(auto router, KvRouter::Create({.routing = config, .seed = 42}));
//   router->ApplyEvent(worker_id, event);               // from each worker's KV event stream
//   TANDEM_ASSIGN_OR_RETURN(RoutingDecision decision,
//                           router->Route(request_id, prompt_tokens, max_tokens, workers));
//   ... router->OnPrefillDone(request_id); ... router->OnFinished(request_id);
//
// Thread-safety: not thread-safe; one thread owns it.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "router/block_hash.h"
#include "router/kv_index.h"
#include "router/load_forecast.h"
#include "router/routing_policy.h"
#include "router/topology.h"

namespace tandem::router {

// A worker as the registry reports it; the load figures are the worker's own latest report
// (they lag: the forecast covers what the router sent since).
struct WorkerInfo {
  WorkerId id = 0;
  WorkerRole role = WorkerRole::kBoth;
  bool ready = true;
  bool draining = false;
  Location location;
  int64_t reported_active_decode_blocks = 0;
  int64_t capacity_blocks = 0;  // 0 = unknown
  int32_t reported_prefill_queue_requests = 0;
  int64_t reported_prefill_queue_tokens = 0;
  int64_t kv_bytes_per_token = 0;  // of its KV cache; 0 = unknown (the routing config's)
};

class KvRouter {
 public:
  struct Options {
    RoutingConfig routing;
    KvIndexOptions index;
    uint64_t seed = 0;  // for softmax sampling and tie breaks
  };
  // Validates the options (kInvalidArgument naming the field).
  static absl::StatusOr<std::unique_ptr<KvRouter>> Create(const Options& options);

  // Hashes `prompt_tokens`, decides, and records the request in the forecast under
  // `request_id` (kAlreadyExists if it is still in flight). Errors are DecideRoute's.
  absl::StatusOr<RoutingDecision> Route(uint64_t request_id, std::span<const int32_t> prompt_tokens,
                                        int64_t max_tokens, std::span<const WorkerInfo> workers);
  // The same with the prompt already hashed (HashPromptBlocks with the configured block size).
  absl::StatusOr<RoutingDecision> RouteHashed(uint64_t request_id,
                                              std::span<const BlockHash> prompt_blocks,
                                              int64_t prompt_tokens, int64_t max_tokens,
                                              std::span<const WorkerInfo> workers);

  void OnPrefillDone(uint64_t request_id) { forecast_.OnPrefillDone(request_id); }
  void OnFinished(uint64_t request_id) { forecast_.OnFinished(request_id); }

  absl::StatusOr<ApplyOutcome> ApplyEvent(WorkerId worker, const KvEvent& event) {
    return index_.Apply(worker, event);
  }
  absl::Status ApplySnapshot(WorkerId worker, const KvSnapshot& snapshot) {
    return index_.ApplySnapshot(worker, snapshot);
  }

  const RoutingConfig& config() const { return options_.routing; }
  KvIndex& index() { return index_; }
  const LoadForecast& forecast() const { return forecast_; }

 private:
  explicit KvRouter(const Options& options);

  Options options_;
  KvIndex index_;
  LoadForecast forecast_;
  std::mt19937_64 rng_;
  // Reused between calls so a decision allocates nothing in the steady state.
  std::vector<BlockHash> hashes_;
  OverlapScores overlap_;
  std::vector<WorkerState> states_;
};

}  // namespace tandem::router
