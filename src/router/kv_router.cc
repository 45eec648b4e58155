#include "router/kv_router.h"

#include <algorithm>

namespace tandem::router {

absl::StatusOr<std::unique_ptr<KvRouter>> KvRouter::Create(const Options& options) {
  absl::Status status = ValidateRoutingConfig(options.routing);
  if (!status.ok()) return status;
  status = KvIndex::ValidateOptions(options.index);
  if (!status.ok()) return status;
  return std::unique_ptr<KvRouter>(new KvRouter(options));
}

KvRouter::KvRouter(const Options& options)
    : options_(options), index_(options.index), rng_(options.seed) {}

absl::StatusOr<RoutingDecision> KvRouter::Route(uint64_t request_id,
                                                std::span<const int32_t> prompt_tokens,
                                                int64_t max_tokens,
                                                std::span<const WorkerInfo> workers) {
  HashPromptBlocks(prompt_tokens, options_.routing.block_size, &hashes_);
  return RouteHashed(request_id, hashes_, static_cast<int64_t>(prompt_tokens.size()), max_tokens,
                     workers);
}

absl::StatusOr<RoutingDecision> KvRouter::RouteHashed(uint64_t request_id,
                                                      std::span<const BlockHash> prompt_blocks,
                                                      int64_t prompt_tokens, int64_t max_tokens,
                                                      std::span<const WorkerInfo> workers) {
  index_.FindOverlap(prompt_blocks, &overlap_);
  forecast_.MergePredictedOverlap(prompt_blocks, &overlap_);

  states_.clear();
  states_.reserve(workers.size());
  for (const WorkerInfo& info : workers) {
    WorkerState state;
    state.id = info.id;
    state.role = info.role;
    state.ready = info.ready;
    state.draining = info.draining;
    state.location = info.location;
    state.capacity_blocks = info.capacity_blocks;
    state.kv_bytes_per_token = info.kv_bytes_per_token;
    // The worker's report includes the router's requests once they run, so take the larger of
    // report and forecast rather than their sum.
    const LoadForecast::WorkerLoad forecast = forecast_.LoadOf(info.id);
    state.active_decode_blocks =
        std::max(info.reported_active_decode_blocks, forecast.decode_blocks);
    state.prefill_queue_requests =
        std::max(info.reported_prefill_queue_requests, forecast.prefill_requests);
    state.prefill_queue_tokens =
        std::max(info.reported_prefill_queue_tokens, forecast.prefill_tokens);
    states_.push_back(state);
  }
  // Overlap lists are short (workers holding the first block); fill them in by id.
  for (const auto& [worker, blocks] : overlap_.blocks) {
    for (WorkerState& state : states_) {
      if (state.id == worker) {
        state.overlap_blocks = blocks;
        break;
      }
    }
  }

  const RouteRequest request{.prompt_tokens = prompt_tokens, .max_tokens = max_tokens};
  absl::StatusOr<RoutingDecision> decision = DecideRoute(request, states_, options_.routing, rng_);
  if (!decision.ok()) return decision;

  RoutedLoad load;
  load.decode_worker = decision->decode_worker;
  load.decode_blocks = ForecastDecodeBlocks(request, options_.routing);
  if (decision->disaggregated()) {
    load.prefill_worker = decision->prefill_worker;
    load.prefill_tokens =
        prompt_tokens - int64_t{decision->prefill_overlap_blocks} * options_.routing.block_size;
  }
  load.prompt_blocks = prompt_blocks;
  absl::Status recorded = forecast_.OnRouted(request_id, load);
  if (!recorded.ok()) return recorded;
  return decision;
}

}  // namespace tandem::router
