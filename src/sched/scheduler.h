// Scheduler: the transactional placement core. It places a hierarchical gang tree
// (PlacementRequest) on a Cluster all-or-nothing: every gang gets at least its minimum (each TP
// group atomically, each role its minimum, the deployment its minimum) or nothing new is bound.
//
// Algorithm (docs/placement.md has the long form):
//   1. Try the whole tree at full size; if it does not fit, roll back and place every gang at its
//      minimum, then grow each gang above its minimum, one atomic child at a time.
//   2. A gang picks a domain by walking from its preferred level up to its required level (or its
//      parent's domain), trying candidate domains fullest first (best fit, against
//      fragmentation), each trial under a checkpoint that is rolled back on failure.
//   3. Pods go to nodes by descending the topology tree through the fullest child with a free
//      slot of the pod's GPU size (per-domain slot counters, updated incrementally).
//   4. If the request cannot be placed and it outranks running workloads, victims are chosen per
//      gang (whole instances above a workload's minimum, or whole workloads), within disruption
//      budgets, cheapest first, then pruned to a minimal set; evicted all-or-nothing.
//   5. Whatever stays pending gets a structured reason per gang and per domain.
//
//   Scheduler scheduler(cluster);
//   TANDEM_RETURN_IF_ERROR(scheduler.AddRunning(state));
//   PlacementResult result = scheduler.Place(request);     // commits when result.scheduled
//   for (const PodPlacement& pod : result.pods) { ... request.gangs[pod.gang] ... pod.node ... }
//
// Pure: no I/O, no clocks; the same inputs give the same result (ties broken by stable ids).
// Thread-safety: not thread-safe; use one Scheduler per thread.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "sched/capacity_index.h"
#include "sched/cluster.h"
#include "sched/gang.h"
#include "sched/state.h"

namespace tandem::sched {

struct PlaceOptions {
  FitPolicy policy = FitPolicy::kBestFit;
  bool allow_preemption = true;
  // Candidate domains tried per gang and level before moving to a broader level; bounds the
  // work when quick capacity checks pass but CPU/memory or mixed shapes do not fit.
  int max_trials_per_level = 16;
  // false: compute the result, then roll everything back (a dry run).
  bool commit = true;
};

struct PodPlacement {
  int gang = -1;         // leaf gang in the request
  int pod = -1;          // index into that gang's pod_names
  int node = -1;         // node index in the cluster
  bool running = false;  // was already running (state), not moved
};

// Why a gang is not placed: what it needs and the best domain on offer.
struct PendingReason {
  int gang = -1;
  bool blocking = false;  // its parent needed it for its minimum (false: elastic growth only)
  std::string level;      // the level the gang had to fit in ("cluster" when unconstrained)
  std::string scope;      // domain path it was confined to ("" = whole cluster)
  int pods_needed = 0;    // leaf gangs: pods still to place
  int64_t gpus_per_pod = 0;
  int64_t gpus_needed = 0;
  int children_needed = 0;  // inner gangs
  int children_placed = 0;
  std::string best_domain;  // path of the best domain at `level`
  int64_t best_domain_free_gpus = 0;
  int64_t best_domain_pod_room = 0;  // pods of this gang's size that fit there by GPUs
  std::string message;
};

// One workload's loss to preemption: whole instances, or the whole workload.
struct Eviction {
  std::string workload;
  int priority = 0;
  bool whole_workload = false;
  std::vector<std::string> instances;
  std::vector<std::pair<std::string, int>> pods;  // pod name, node
};

struct GangOutcome {
  int gang = -1;
  bool placed = false;
  int pods_bound = 0;
  int pods_total = 0;
  int domain = -1;  // smallest domain holding all its bound pods
  bool has_preference = false;
  bool preference_met = false;
  std::vector<std::string> notes;  // relation outcomes
};

struct PlacementResult {
  bool scheduled = false;  // every minimum met; the bindings are committed (unless a dry run)
  std::vector<PodPlacement> pods;
  std::vector<Eviction> evictions;
  std::vector<PendingReason> pending;
  std::vector<GangOutcome> gangs;
  int new_pods = 0;
  // Fraction of preferred constraints (levels, relations) met by placed gangs; 1 when none.
  double score = 1.0;
  std::string note;  // e.g. why preemption could not help
};

class Scheduler {
 public:
  explicit Scheduler(const Cluster& cluster);
  ~Scheduler();

  // Accounts running workloads: their pods consume capacity, they become preemption candidates,
  // and the one named like a later request is that request's running part.
  absl::Status AddRunning(const ClusterState& state);

  // Places `request` (resolved with ResolveRequest against the same cluster).
  PlacementResult Place(const PlacementRequest& request, const PlaceOptions& options = {});

  // Frees the pods a committed result bound (not the running ones): a gang that finished.
  void Release(const PlacementRequest& request, const PlacementResult& result);

  const CapacityIndex& index() const { return index_; }
  const Cluster& cluster() const { return *cluster_; }

 private:
  struct Unit;
  void EvictUnit(const Unit& unit, int sign);

  const Cluster* cluster_;
  CapacityIndex index_;
  ClusterState state_;
  std::vector<std::vector<int>> evicted_;   // [workload][flat pod] eviction count (in flight)
  std::vector<std::vector<char>> removed_;  // [workload][flat pod] preempted by a committed Place
};

// The baseline a pod-by-pod scheduler gives (like kube-scheduler without gangs): each pod of the
// request in order, on the node the policy picks, ignoring minimums and topology. Binds into
// `index` and returns what it bound.
std::vector<PodPlacement> PlacePodByPod(CapacityIndex& index, const PlacementRequest& request,
                                        FitPolicy policy);

// Inner gangs whose minimum `pods` do not meet (e.g. a role that a pod-by-pod scheduler left
// without instances while its sibling took the GPUs), parents first.
std::vector<int> GangsBelowMinimum(const PlacementRequest& request,
                                   const std::vector<PodPlacement>& pods);

}  // namespace tandem::sched
