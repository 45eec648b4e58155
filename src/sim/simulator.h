// The cluster simulator: a deterministic discrete-event model of a GPU cluster serving a
// workload with Tandem's own policy code deciding what the live system would decide:
//   - routing (router/routing_policy.h, DecideRoute): per request the decode instance, whether
//     to disaggregate, and the prefill instance (transfer-cost aware);
//   - planning (planner/planner.h, Planner::Decide), optional: every interval it sees modeled
//     metrics and sets the prefill and decode instance counts; new instances take GPUs at once
//     and serve after a pod start delay; removed ones drain first;
//   - placement (sched/, through sim/placement.h), optional: which nodes the instances get.
//
// Each instance (one tensor-parallel group) runs continuous batching step by step: every step
// decodes one token for each running sequence and fills the rest of its token budget with
// chunks of queued prompts (decode tokens first, then prefill chunks); admission to a decode
// instance is by KV capacity (the router refuses an instance without room for the request's
// prompt and forecast output; the instance reserves prompt + output tokens, so it never needs
// to preempt). A step's duration comes from a StepCostModel (roofline or measured profile).
// Prefill instances push KV to the decode instance over the link between their nodes (delta:
// only tokens the decode instance does not cache), layer by layer alongside the prompt's
// compute, queued behind earlier transfers on each node's network interface (one transmit and
// one receive queue per node, at the link's bandwidth; same-node
// transfers use NVLink and skip the NIC). Prefix caching is modeled per instance by
// shared-prefix group (LRU). Node failures kill their instances; their requests migrate: prompt
// plus the tokens already generated are prefilled again elsewhere, and the client's stream
// continues.
//
// Work per step is O(1) amortized in the batch size (aggregates of context tokens, a heap of
// finishing steps); routing is O(instances) per request, over a router::WorkerTable the
// simulation keeps up to date rather than a fresh array of worker states. Statistics are
// streaming digests, so memory stays bounded however many requests run.
//
//   SimConfig config = ...;     // usually from a scenario (sim/scenario.h)
//   TANDEM_ASSIGN_OR_RETURN(SimResult result, Simulate(config));
//
// Thread-safety: Simulate is reentrant; a SimConfig is read-only while it runs.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/stats.h"
#include "bench/workload.h"
#include "core/latency_profile.h"
#include "planner/config.h"
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
  int max_batch_sequences = 256;  // running sequences per instance
};

struct ClusterSpec {
  int nodes = 1;
  int gpus_per_node = 8;
  // Nodes sharing the "same_rack" link of `links` (a rack, or an NVLink domain spanning nodes).
  int nodes_per_domain = 4;
  // Links by distance between the nodes of a prefill and a decode instance: same node, same
  // domain, across domains.
  router::LinkTable links;
};

struct NodeFailure {
  double time_s = 0;
  int node = 0;
};

// The planner in the loop: its configuration, the latency model it plans with (throughput mode)
// and how long a new instance takes before it serves.
struct PlannerSetup {
  planner::PlannerConfig config;
  std::optional<LatencyModel> model;
  double pod_start_delay_s = 60;
};

// Costs of the live serving path that the engine's latency profile does not measure
// (`tandem profile` times the forward pass alone). Both are measured on the live stack, not fitted
// to the workload they predict (docs/simulations.md, "Fidelity").
struct ServingOverheads {
  // Added to every request's time to first token (and end-to-end latency): the client's HTTP
  // request to the router, routing, the router's calls to the decode (and prefill) worker, the
  // remote prefill's KV completion and the first token's trip back through the router. A fixed
  // latency: it holds no instance busy.
  double first_token_seconds = 0;
  // Added to an engine step for each sequence it decodes: the work the engine thread does per
  // generated token outside the forward pass (sampling over the vocabulary, the token event).
  double per_token_seconds = 0;
  // After a remote prefill, from the first token (sent with the prefill's answer) to the
  // sequence joining the decode instance's batch: the decode worker taking the answer and
  // importing the KV into its engine. Once per disaggregated request; it lengthens the first gap
  // between tokens.
  double remote_join_seconds = 0;
};

struct SimConfig {
  ClusterSpec cluster;
  std::vector<InstanceGroup> groups;
  // Node of every instance, in group order (group 0's instances first). Empty: instances fill
  // the nodes in order, groups interleaved. Set by placement (sim/placement.h); an instance
  // with node -1 was not placed and does not exist.
  std::vector<int> instance_nodes;
  std::shared_ptr<const StepCostModel> cost;
  // Layers of the model: KV of one layer leaves as soon as the layer is computed, so only the
  // last layer's share of a transfer is never hidden behind compute.
  int model_layers = 32;
  router::RoutingConfig routing;  // links, kv_bytes_per_token, latency_model are filled in
  // false: the routing policy sees every link as equally fast (topology-blind pairing), while
  // transfers still take the time their real link needs.
  bool topology_aware_routing = true;
  bench::WorkloadSpec workload;
  std::vector<bench::RequestSpec> trace;  // used when workload.trace_path is set
  // Arrival times are divided by this (goodput search on a trace speeds it up or slows it down).
  double trace_speedup = 1;
  uint64_t seed = 1;
  bench::Slo slo;
  std::vector<NodeFailure> failures;
  int prefix_cache_groups = 64;  // prefix groups an instance keeps cached (LRU)
  double timeline_interval_s = 10;
  std::optional<PlannerSetup> planner;
  ServingOverheads overheads;
};

absl::Status ValidateSimConfig(const SimConfig& config);

struct TimelinePoint {
  double time_s = 0;
  double arrivals_per_second = 0;
  int64_t running_sequences = 0;
  int64_t queued_prefill_tokens = 0;
  int prefill_instances = 0;  // serving (ready) at this time
  int decode_instances = 0;
  int aggregated_instances = 0;
  int gpus_allocated = 0;     // including instances still starting or draining
  double ttft_p90_s = 0;      // of first tokens in the interval
  double slo_attainment = 0;  // of requests finished in the interval (1 when none)
};

struct RoleUsage {
  int instances = 0;           // instances that ever ran
  int gpus = 0;                // GPUs of those instances
  double busy_seconds = 0;     // instance-seconds spent computing steps
  double serving_seconds = 0;  // instance-seconds ready to serve
  double gpu_seconds = 0;      // GPU-seconds held (starting, serving, draining)
  double Utilization() const { return serving_seconds > 0 ? busy_seconds / serving_seconds : 0; }
};

struct SimResult {
  uint64_t requests = 0;
  uint64_t completed = 0;
  uint64_t rejected = 0;    // no decode instance had room (the router answers 429)
  uint64_t failed = 0;      // no decode instance at all (after failures, or none placed)
  uint64_t migrated = 0;    // moved after a node failure
  uint64_t unfinished = 0;  // still in the system when nothing more could happen (should be 0)
  uint64_t disaggregated = 0;
  uint64_t local_prefill = 0;
  uint64_t slo_met = 0;
  uint64_t ttft_met = 0;  // completed requests within the TTFT target alone
  uint64_t tpot_met = 0;  // ... within the TPOT target alone
  uint64_t prefix_hit_tokens = 0;
  uint64_t prompt_tokens = 0;
  uint64_t output_tokens = 0;
  double end_s = 0;      // last completion (or last arrival)
  double gpu_hours = 0;  // GPUs held over time, integrated
  double transfer_bytes = 0;
  bench::LatencyDigest ttft, itl, tpot, e2e, transfer;
  std::map<std::string, RoleUsage> roles;
  std::vector<TimelinePoint> timeline;
  // Planner.
  int planner_decisions = 0;
  int scale_outs = 0;
  int scale_ins = 0;
  int scale_outs_without_room = 0;  // the cluster had no free GPUs for a new instance
  uint64_t events = 0;
  double wall_seconds = 0;

  double SloAttainment() const { return requests == 0 ? 0 : double(slo_met) / requests; }
};

absl::StatusOr<SimResult> Simulate(const SimConfig& config);

// The highest request rate (requests/s) whose SLO attainment is at least `attainment`, found
// by bisection (in log space) between `low` and `high`. A synthetic workload's base rate is set
// to the rate (its rate curve still applies); a trace is sped up or slowed down to the rate.
struct GoodputSearch {
  double low = 0.1;
  double high = 1000;
  int iterations = 10;
  double attainment = 0.9;
};
struct GoodputResult {
  double rate = 0;              // 0 when even `low` misses the attainment
  bool at_upper_bound = false;  // `high` still met it: the goodput is at least `rate`
  std::vector<std::pair<double, double>> probes;  // (rate, attainment) in search order
};
absl::StatusOr<GoodputResult> FindGoodput(const SimConfig& config, const GoodputSearch& search);

// The natural request rate of a workload: the base rate, or a trace's requests per second.
double WorkloadRate(const SimConfig& config);

}  // namespace tandem::sim
