// The routing policy: for one request and a snapshot of the workers' state, which decode worker
// runs it, whether its prompt is prefilled there (aggregated) or on a separate prefill worker
// (disaggregated), and which prefill worker. A pure function of its inputs and a seeded RNG,
// so the live router and the simulator make the same choices; docs/routing.md explains the
// cost model with every parameter and a worked example.
//
//   1. Decode worker: among ready, non-draining workers with role decode or both that have
//      room, the lowest  cost = overlap_weight * uncached_prefill_blocks + decode_blocks,
//      where decode_blocks is the worker's active blocks plus those this request would add
//      there (its forecast blocks minus the ones the worker already caches; Dynamo's
//      "potential" decode blocks). Argmin with ties broken by the RNG, or with temperature > 0
//      a softmax sample over min-max normalised costs: p ~ exp(-normalised_cost / temperature).
//   2. Conditional disaggregation: prefill locally on the decode worker when disaggregation is
//      off, no prefill worker is ready, the uncached part (prompt tokens not cached on the
//      decode worker) is at most local_prefill_max_uncached_tokens, or every ready prefill
//      worker's queue is at prefill_queue_limit (the pool is saturated).
//   3. Prefill worker: the lowest cost of computing its own uncached part, waiting for its
//      queue, and pushing the decode worker's missing KV over the link between the two (bytes /
//      link bandwidth for their topology distance). With a latency model the terms are
//      seconds; without one, blocks of prefill work (see RoutingConfig::transfer_weight).
//
//   std::mt19937_64 rng(seed);
//   TANDEM_ASSIGN_OR_RETURN(RoutingDecision decision,
//                           DecideRoute({.prompt_tokens = 3000, .max_tokens = 200}, workers,
//                                       config, rng));
//   LOG(INFO) << decision.Explain();
//
// A caller that decides often over many workers and changes few of them between decisions (the
// simulator) keeps them in a WorkerTable instead and passes each request's cached prefixes on
// their own; the decisions are the same (see WorkerTable).
//
// Thread-safety: DecideRoute over a span is reentrant; the RNG is the caller's. DecideRoute over
// a WorkerTable uses the table's scratch space: one decision at a time per table.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/latency_profile.h"
#include "router/kv_index.h"
#include "router/topology.h"

namespace tandem::router {

enum class WorkerRole : uint8_t { kPrefill, kDecode, kBoth };
std::string_view WorkerRoleName(WorkerRole role);

// What the policy knows of one worker when it decides.
struct WorkerState {
  WorkerId id = 0;
  WorkerRole role = WorkerRole::kBoth;
  bool ready = true;
  bool draining = false;  // finishing its work; takes none
  Location location;
  int64_t active_decode_blocks = 0;    // KV blocks of sequences it is decoding (with forecast)
  int64_t capacity_blocks = 0;         // its KV pool size; 0 = unknown (never considered full)
  int32_t prefill_queue_requests = 0;  // prefill jobs queued or running on it
  int64_t prefill_queue_tokens = 0;    // their tokens still to compute
  int32_t overlap_blocks = 0;          // leading blocks of this prompt it already caches
  // KV bytes one token occupies in its cache (its model and KV type); a transfer into it moves
  // this much per token. 0: unknown, RoutingConfig::kv_bytes_per_token.
  int64_t kv_bytes_per_token = 0;
};

struct RouteRequest {
  int64_t prompt_tokens = 0;
  int64_t max_tokens = 0;  // output tokens requested (for the room check and the forecast)
};

// Prefill time by tokens, from the engine's measured latency profile (`tandem profile`). When
// the router has one, prefill worker costs are seconds, so compute, queueing and transfer add up.
class PrefillLatencyModel {
 public:
  virtual ~PrefillLatencyModel() = default;
  // Seconds to prefill `new_tokens` tokens on top of `cached_tokens` already in the KV cache.
  virtual double PrefillSeconds(int64_t new_tokens, int64_t cached_tokens) const = 0;
};

// The measured model from `tandem profile` (core/latency_profile.h), as the policy sees it.
class ProfiledPrefillLatency final : public PrefillLatencyModel {
 public:
  explicit ProfiledPrefillLatency(const LatencyModel& model) : model_(model) {}
  double PrefillSeconds(int64_t new_tokens, int64_t cached_tokens) const override {
    return new_tokens <= 0 ? 0 : model_.PrefillSeconds(new_tokens, cached_tokens);
  }

 private:
  const LatencyModel& model_;  // outlives this adapter
};

// A simple analytic model for tests and for clusters without a profile yet:
// fixed + per_token * new + per_token_context * new * (cached + new / 2): the attention term
// grows with the context each new token attends to.
class LinearPrefillLatencyModel : public PrefillLatencyModel {
 public:
  LinearPrefillLatencyModel(double fixed_seconds, double seconds_per_token,
                            double seconds_per_token_context = 0)
      : fixed_(fixed_seconds),
        per_token_(seconds_per_token),
        per_context_(seconds_per_token_context) {}
  double PrefillSeconds(int64_t new_tokens, int64_t cached_tokens) const override;

 private:
  double fixed_, per_token_, per_context_;
};

struct RoutingConfig {
  int block_size = 16;  // tokens per KV block; must match the engines'

  // Decode choice.
  double overlap_weight = 1.0;  // weight of uncached prefill blocks against active decode blocks
  double temperature = 0.0;     // 0: argmin; > 0: softmax sampling over normalised costs

  // Conditional disaggregation.
  bool disaggregation = true;
  int64_t local_prefill_max_uncached_tokens = 512;  // at most this many uncached: prefill locally
  int32_t prefill_queue_limit = 8;  // a prefill worker with this many queued jobs is saturated

  // Prefill choice.
  double prefill_queue_weight = 1.0;  // weight of the work already queued on a prefill worker
  // Block-count mode only: the cost, in blocks of prefill compute, of moving one KV block over a
  // same-host link; a farther link costs this times its slowdown (same-host bandwidth / its own).
  double transfer_weight = 0.1;
  // KV cache bytes per token: 2 (K and V) * layers * kv_heads * head_dim * bytes per element,
  // for a decode worker whose WorkerState does not give its own. The default is Llama-3-8B in
  // fp16 (2 * 32 * 8 * 128 * 2).
  int64_t kv_bytes_per_token = 131072;
  LinkTable links;
  const PrefillLatencyModel* latency_model = nullptr;  // not owned; null: block-count mode

  // Room check and forecast: a request is expected to grow its KV by at most this many output
  // tokens (or max_tokens when smaller).
  int64_t forecast_output_tokens = 256;
};

// The most KV bytes per token the policy accepts, far above any model's (Llama-3-405B in f32
// has 1 MiB), so that a prompt's transfer bytes stay far below the int64 range.
inline constexpr int64_t kMaxKvBytesPerToken = int64_t{64} << 20;

// Why the config is unusable, naming the field and the accepted range.
absl::Status ValidateRoutingConfig(const RoutingConfig& config);

// KV bytes per token of a transfer into `decode_worker`: the prefill worker fills the blocks
// the decode worker reserved, in the decode worker's layout.
int64_t TransferKvBytesPerToken(const WorkerState& decode_worker, const RoutingConfig& config);

enum class PrefillPlacement : uint8_t {
  kDisaggregated,         // on a prefill worker, KV pushed to the decode worker
  kLocalDisabled,         // locally: disaggregation is off
  kLocalNoPrefillWorker,  // locally: no ready, non-draining prefill worker
  kLocalFewUncached,      // locally: the uncached part is below the threshold
  kLocalPoolSaturated,    // locally: every prefill worker's queue is at the limit
};
std::string_view PrefillPlacementName(PrefillPlacement placement);

struct RoutingDecision {
  WorkerId decode_worker = 0;
  double decode_cost = 0;  // blocks
  int32_t decode_overlap_blocks = 0;
  int64_t decode_new_blocks = 0;  // KV blocks the request adds on the decode worker
  int64_t uncached_tokens = 0;    // prompt tokens the decode worker does not cache
  int32_t eligible_decode_workers = 0;
  bool sampled = false;  // chosen by softmax sampling rather than argmin

  PrefillPlacement placement = PrefillPlacement::kLocalDisabled;
  bool disaggregated() const { return placement == PrefillPlacement::kDisaggregated; }
  // Valid when disaggregated:
  WorkerId prefill_worker = 0;
  double prefill_cost = 0;  // seconds with a latency model, else blocks
  bool prefill_cost_in_seconds = false;
  int32_t prefill_overlap_blocks = 0;
  int64_t transfer_bytes = 0;  // KV the decode worker lacks, pushed by the prefill worker
  double transfer_seconds = 0;
  LinkDistance link = LinkDistance::kCrossRack;
  int32_t eligible_prefill_workers = 0;

  // One line for logs and the x-tandem-route response header.
  std::string Explain() const;
};

// Errors: kInvalidArgument for a negative prompt or max_tokens; kUnavailable when no decode
// worker is ready and not draining; kResourceExhausted when all of those are full (the caller
// answers 429). `config` must have passed ValidateRoutingConfig.
absl::StatusOr<RoutingDecision> DecideRoute(const RouteRequest& request,
                                            std::span<const WorkerState> workers,
                                            const RoutingConfig& config, std::mt19937_64& rng);

// One worker's cached prefix for one request: the leading blocks of the prompt it caches.
struct WorkerOverlap {
  uint32_t worker = 0;  // position in the WorkerTable
  int32_t blocks = 0;
};

// The workers' state in columns, kept up to date by a caller that routes often over many workers
// (the simulator: 1,000 instances, a decision per simulated request). DecideRoute over a table
// reads only the columns each choice needs, in tight loops over the workers of that role, and
// allocates nothing once warm; DecideRoute over a span of WorkerStates fills a table of its own
// (one per thread) and calls it, so both give the same decision for the same state and RNG
// (routing_policy_test checks both against a plain scan on randomized input, ties included).
//
//   WorkerTable table;
//   for (const WorkerState& worker : workers) table.Add(worker);
//   table.Set(3, worker_3_now);  // after its load changed
//   const WorkerOverlap overlaps[] = {{.worker = 3, .blocks = 40}};
//   auto decision = DecideRoute(request, table, overlaps, config, rng);
//
// The table remembers each prefill worker's queue cost (config.latency_model's answer for its
// queued tokens) until the queue changes, or until a decision comes with a different
// latency_model, prefill_queue_weight or block_size; the latency model must answer the same
// question the same way (the models here are pure functions). Assign forgets them.
//
// Thread-safety: none; DecideRoute uses the table's scratch space.
class WorkerTable {
 public:
  // Adds a worker at position size(); its overlap_blocks is ignored (overlaps are per request).
  uint32_t Add(const WorkerState& worker);
  // Replaces the state of the worker at `position` < size() (overlap_blocks ignored).
  void Set(uint32_t position, const WorkerState& worker);
  // Replaces all workers (overlap_blocks ignored); reuses the columns' memory.
  void Assign(std::span<const WorkerState> workers);
  const WorkerState& Get(uint32_t position) const { return workers_[position]; }
  uint32_t size() const { return static_cast<uint32_t>(workers_.size()); }

 private:
  friend absl::StatusOr<RoutingDecision> DecideRoute(const RouteRequest& request,
                                                     WorkerTable& table,
                                                     std::span<const WorkerOverlap> overlaps,
                                                     const RoutingConfig& config,
                                                     std::mt19937_64& rng);
  void ResizeColumns(size_t decode_rows, size_t prefill_rows);
  void AppendRow(uint32_t position);
  void SetRow(uint32_t position);
  void Rebuild();  // after a worker changed between the decode and the prefill roles
  // Forgets the remembered queue costs unless they were computed with `config`'s.
  void KeepQueueCostsFor(const RoutingConfig& config);

  std::vector<WorkerState> workers_;
  std::vector<uint32_t> row_;  // position -> row in its role's columns
  // Workers with role decode or both, in position order.
  struct DecodeColumns {
    std::vector<uint32_t> position;
    std::vector<uint8_t> eligible;  // ready and not draining
    std::vector<int64_t> active_blocks;
    std::vector<int64_t> capacity_blocks;
  } decode_;
  // Workers with role prefill, in position order.
  struct PrefillColumns {
    std::vector<uint32_t> position;
    std::vector<uint8_t> eligible;
    std::vector<int32_t> queue_requests;
    std::vector<int64_t> queue_tokens;
    std::vector<WorkerId> id;
    std::vector<Location> location;
    // The queue cost last computed for each worker and the queued tokens it is for.
    std::vector<int64_t> queue_cost_tokens;
    std::vector<double> queue_cost;
  } prefill_;
  static constexpr int64_t kNoQueueCost = -1;
  // What the remembered queue costs were computed with.
  const PrefillLatencyModel* queue_cost_model_ = nullptr;
  double queue_cost_weight_ = -1;
  int queue_cost_block_size_ = 0;
  // Scratch for one decision, by row of the role being chosen.
  std::vector<double> cost_;
  std::vector<uint8_t> candidate_;
  std::vector<uint32_t> ties_;
};

// Errors as above, and kInvalidArgument for an overlap naming a position outside the table. A
// worker missing from `overlaps` caches nothing of the prompt; one named twice counts its last.
absl::StatusOr<RoutingDecision> DecideRoute(const RouteRequest& request, WorkerTable& table,
                                            std::span<const WorkerOverlap> overlaps,
                                            const RoutingConfig& config, std::mt19937_64& rng);

// KV blocks a request occupies on its decode worker by the forecast: its prompt plus the output
// it is expected to produce, rounded up to whole blocks.
int64_t ForecastDecodeBlocks(const RouteRequest& request, const RoutingConfig& config);

}  // namespace tandem::router
