// The routing policy as a plain scan over every worker's WorkerState, as DecideRoute was written
// before WorkerTable: the oracle that routing_policy_test holds DecideRoute to (same decisions,
// bit for bit, on randomized input) and the baseline bench/sim times it against. Not for serving.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>
#include <span>

#include "absl/container/inlined_vector.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "router/routing_policy.h"

namespace tandem::router::reference {

inline int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// A uniform double in [0, 1) from the top 53 bits; written out rather than taken from
// <random>'s distributions, whose output differs between standard libraries.
inline double UniformUnit(std::mt19937_64& rng) {
  return static_cast<double>(rng() >> 11) * 0x1.0p-53;
}

inline size_t UniformIndex(std::mt19937_64& rng, size_t n) { return n <= 1 ? 0 : rng() % n; }

inline bool ServesDecode(WorkerRole role) {
  return role == WorkerRole::kDecode || role == WorkerRole::kBoth;
}

inline bool Eligible(const WorkerState& worker) { return worker.ready && !worker.draining; }

struct Scored {
  const WorkerState* worker;
  double cost;
};
using ScoredList = absl::InlinedVector<Scored, 64>;

// Argmin with ties broken uniformly, or with temperature > 0 a softmax sample over min-max
// normalised costs (so the temperature means the same whatever the cost scale).
inline size_t Choose(const ScoredList& scored, double temperature, std::mt19937_64& rng,
                     bool* sampled) {
  double lowest = std::numeric_limits<double>::infinity();
  double highest = -lowest;
  for (const Scored& s : scored) {
    lowest = std::min(lowest, s.cost);
    highest = std::max(highest, s.cost);
  }
  *sampled = false;
  if (temperature > 0 && scored.size() > 1) {
    *sampled = true;
    if (highest <= lowest) return UniformIndex(rng, scored.size());
    absl::InlinedVector<double, 64> weights;
    double total = 0;
    for (const Scored& s : scored) {
      const double normalised = (s.cost - lowest) / (highest - lowest);
      weights.push_back(std::exp(-normalised / temperature));
      total += weights.back();
    }
    double target = UniformUnit(rng) * total;
    for (size_t i = 0; i < weights.size(); ++i) {
      target -= weights[i];
      if (target < 0) return i;
    }
    return weights.size() - 1;
  }
  absl::InlinedVector<size_t, 64> ties;
  for (size_t i = 0; i < scored.size(); ++i) {
    if (scored[i].cost == lowest) ties.push_back(i);
  }
  return ties[UniformIndex(rng, ties.size())];
}

inline absl::StatusOr<RoutingDecision> DecideRoute(const RouteRequest& request,
                                                   std::span<const WorkerState> workers,
                                                   const RoutingConfig& config,
                                                   std::mt19937_64& rng) {
  if (request.prompt_tokens < 0 || request.max_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat("route request: prompt_tokens ",
                                                   request.prompt_tokens, " and max_tokens ",
                                                   request.max_tokens, " must both be >= 0"));
  }
  const int64_t block_size = config.block_size;
  const int64_t prompt_blocks = CeilDiv(request.prompt_tokens, block_size);
  const int64_t request_blocks = ForecastDecodeBlocks(request, config);

  // 1. Decode worker.
  ScoredList decode;
  int32_t ready_decode = 0;
  for (const WorkerState& worker : workers) {
    if (!ServesDecode(worker.role) || !Eligible(worker)) continue;
    ++ready_decode;
    const int64_t overlap = std::clamp<int64_t>(worker.overlap_blocks, 0, prompt_blocks);
    // Cached blocks are shared, not allocated again: the request adds only the rest.
    const int64_t new_blocks = request_blocks - overlap;
    if (worker.capacity_blocks > 0 &&
        worker.active_decode_blocks + new_blocks > worker.capacity_blocks) {
      continue;
    }
    const double cost = config.overlap_weight * static_cast<double>(prompt_blocks - overlap) +
                        static_cast<double>(worker.active_decode_blocks + new_blocks);
    decode.push_back({&worker, cost});
  }
  if (ready_decode == 0) {
    return absl::UnavailableError(absl::StrCat("no decode worker is ready and not draining (",
                                               workers.size(), " workers known)"));
  }
  if (decode.empty()) {
    return absl::ResourceExhaustedError(absl::StrCat("all ", ready_decode,
                                                     " ready decode workers lack room for ",
                                                     request_blocks, " more KV blocks"));
  }
  RoutingDecision decision;
  decision.eligible_decode_workers = static_cast<int32_t>(decode.size());
  const Scored& chosen = decode[Choose(decode, config.temperature, rng, &decision.sampled)];
  const WorkerState& decode_worker = *chosen.worker;
  decision.decode_worker = decode_worker.id;
  decision.decode_cost = chosen.cost;
  decision.decode_overlap_blocks =
      static_cast<int32_t>(std::clamp<int64_t>(decode_worker.overlap_blocks, 0, prompt_blocks));
  decision.decode_new_blocks = request_blocks - decision.decode_overlap_blocks;
  decision.uncached_tokens = std::max<int64_t>(
      0, request.prompt_tokens - int64_t{decision.decode_overlap_blocks} * block_size);

  // 2. Conditional disaggregation.
  if (!config.disaggregation) {
    decision.placement = PrefillPlacement::kLocalDisabled;
    return decision;
  }
  ScoredList prefill;
  int32_t ready_prefill = 0;
  for (const WorkerState& worker : workers) {
    if (worker.role != WorkerRole::kPrefill || !Eligible(worker)) continue;
    ++ready_prefill;
    if (worker.prefill_queue_requests >= config.prefill_queue_limit) continue;
    prefill.push_back({&worker, 0});
  }
  decision.eligible_prefill_workers = static_cast<int32_t>(prefill.size());
  if (ready_prefill == 0) {
    decision.placement = PrefillPlacement::kLocalNoPrefillWorker;
    return decision;
  }
  if (decision.uncached_tokens <= config.local_prefill_max_uncached_tokens) {
    decision.placement = PrefillPlacement::kLocalFewUncached;
    return decision;
  }
  if (prefill.empty()) {
    decision.placement = PrefillPlacement::kLocalPoolSaturated;
    return decision;
  }

  // 3. Prefill worker: compute + queue + transfer of what the decode worker lacks.
  const double transfer_bytes = static_cast<double>(decision.uncached_tokens) *
                                static_cast<double>(TransferKvBytesPerToken(decode_worker, config));
  const double transfer_blocks =
      static_cast<double>(prompt_blocks - decision.decode_overlap_blocks);
  const PrefillLatencyModel* model = config.latency_model;
  for (Scored& s : prefill) {
    const WorkerState& worker = *s.worker;
    const int64_t overlap = std::clamp<int64_t>(worker.overlap_blocks, 0, prompt_blocks);
    const int64_t cached_tokens = std::min(request.prompt_tokens, overlap * block_size);
    const int64_t uncached = request.prompt_tokens - cached_tokens;
    const int64_t queued = std::max<int64_t>(worker.prefill_queue_tokens, 0);
    const LinkDistance distance = worker.id == decode_worker.id
                                      ? LinkDistance::kSameWorker
                                      : Distance(worker.location, decode_worker.location);
    if (model != nullptr) {
      s.cost = model->PrefillSeconds(uncached, cached_tokens) +
               config.prefill_queue_weight * model->PrefillSeconds(queued, 0) +
               config.links.TransferSeconds(distance, transfer_bytes);
    } else {
      const double transfer = distance == LinkDistance::kSameWorker
                                  ? 0
                                  : config.transfer_weight *
                                        config.links.SlowdownVsSameHost(distance) * transfer_blocks;
      s.cost = static_cast<double>(CeilDiv(uncached, block_size)) +
               config.prefill_queue_weight * static_cast<double>(CeilDiv(queued, block_size)) +
               transfer;
    }
  }
  bool unused_sampled = false;
  const Scored& best = prefill[Choose(prefill, /*temperature=*/0, rng, &unused_sampled)];
  const WorkerState& prefill_worker = *best.worker;
  decision.placement = PrefillPlacement::kDisaggregated;
  decision.prefill_worker = prefill_worker.id;
  decision.prefill_cost = best.cost;
  decision.prefill_cost_in_seconds = model != nullptr;
  decision.prefill_overlap_blocks =
      static_cast<int32_t>(std::clamp<int64_t>(prefill_worker.overlap_blocks, 0, prompt_blocks));
  decision.link = prefill_worker.id == decode_worker.id
                      ? LinkDistance::kSameWorker
                      : Distance(prefill_worker.location, decode_worker.location);
  decision.transfer_bytes = static_cast<int64_t>(transfer_bytes);
  decision.transfer_seconds = config.links.TransferSeconds(decision.link, transfer_bytes);
  return decision;
}

}  // namespace tandem::router::reference
