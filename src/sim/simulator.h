// The cluster simulator: a deterministic discrete-event model of a GPU cluster serving a
// workload with Tandem's own routing policy (router/routing_policy.h) deciding, per request,
// the decode instance, whether to disaggregate, and the prefill instance.
//
// Each instance (one tensor-parallel group) runs continuous batching step by step: every step
// decodes one token for each running sequence and prefills chunks of queued prompts within a
// token budget; its duration comes from a StepCostModel (roofline or measured profile).
// Prefill instances push KV to the decode instance over the link between their nodes, layer by
// layer, with contention on each node's network interface. Prefix caching is modeled per
// instance by shared-prefix group (LRU). Node failures kill their instances; their requests
// migrate (their prompt and the tokens already generated are prefilled again elsewhere).
//
// Work per step is O(1) amortized in the batch size (aggregates of context tokens, a heap of
// finishing steps), so a 1,000-GPU cluster simulates about 10^5 requests per wall second.
//
//   SimConfig config = ...;     // usually from a scenario (scenario.h)
//   TANDEM_ASSIGN_OR_RETURN(SimResult result, Simulate(config));
//
// Thread-safety: Simulate is reentrant; a SimConfig is read-only while it runs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/stats.h"
#include "bench/workload.h"
#include "router/routing_policy.h"
#include "sim/perf_model.h"

namespace tandem::sim {

enum class InstanceRole { kPrefill, kDecode, kBoth };
const char* InstanceRoleName(InstanceRole role);

struct InstanceGroup {
  InstanceRole role = InstanceRole::kBoth;
  int count = 1;
  int tensor_parallel = 1;
  int max_batch_tokens = 8192;    // tokens per step (decode tokens + prefill chunk)
  int max_batch_sequences = 512;  // running sequences per instance
};

struct ClusterSpec {
  int nodes = 1;
  int gpus_per_node = 8;
  int nodes_per_rack = 4;
  // Links by distance between the nodes of a prefill and a decode instance: same node (NVLink),
  // same rack, across racks.
  router::LinkTable links;
};

struct NodeFailure {
  double time_s = 0;
  int node = 0;
};

struct SimConfig {
  ClusterSpec cluster;
  std::vector<InstanceGroup> groups;
  std::shared_ptr<const StepCostModel> cost;
  router::RoutingConfig routing;
  bench::WorkloadSpec workload;
  std::vector<bench::RequestSpec> trace;  // used when workload.trace_path is set
  uint64_t seed = 1;
  bench::Slo slo;
  std::vector<NodeFailure> failures;
  int prefix_cache_groups = 64;  // prefix groups an instance keeps cached (LRU)
  double timeline_interval_s = 10;
};

absl::Status ValidateSimConfig(const SimConfig& config);

struct TimelinePoint {
  double time_s = 0;
  double arrivals_per_second = 0;
  int64_t running_sequences = 0;
  int64_t queued_prefill_tokens = 0;
  int instances_alive = 0;
};

struct RoleUsage {
  int instances = 0;
  int gpus = 0;
  double busy_seconds = 0;  // instance-seconds spent computing steps
};

struct SimResult {
  uint64_t requests = 0;
  uint64_t completed = 0;
  uint64_t rejected = 0;  // no decode instance had room (the router answers 429)
  uint64_t failed = 0;    // lost with no instance left
  uint64_t migrated = 0;  // moved after a node failure
  uint64_t disaggregated = 0;
  uint64_t local_prefill = 0;
  uint64_t slo_met = 0;
  double makespan_s = 0;  // last completion
  double gpu_hours = 0;
  double transfer_bytes = 0;
  bench::LatencyDigest ttft, itl, tpot, e2e, transfer;
  std::map<std::string, RoleUsage> roles;
  std::vector<TimelinePoint> timeline;
  uint64_t events = 0;
  double wall_seconds = 0;

  double SloAttainment() const { return requests == 0 ? 0 : double(slo_met) / requests; }
};

absl::StatusOr<SimResult> Simulate(const SimConfig& config);

// The highest request rate (requests/s, scaling the workload's base rate) whose SLO attainment
// is at least `attainment`, searched by bisection in [low, high] with `iterations` runs.
struct GoodputSearch {
  double low = 0.1;
  double high = 1000;
  int iterations = 10;
  double attainment = 0.9;
};
absl::StatusOr<double> FindGoodput(const SimConfig& config, const GoodputSearch& search);

// JSON with every figure above (deterministic for a given config).
std::string ResultToJson(const SimResult& result, bool include_wall_time);

}  // namespace tandem::sim
