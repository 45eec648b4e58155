// Placement of the simulated instances with the placement core (sched/scheduler.h): which node
// each instance (TP group) gets when the deployment is placed gang by gang (all-or-nothing per
// minimum, topology-aware) or pod by pod (each pod on its own, as kube-scheduler does), on a
// cluster already partly used by other tenants and contended by deployments submitted with it.
//
//   PlacementSpec spec{.policy = PlacementPolicy::kPodByPod, .competing_deployments = 2};
//   TANDEM_ASSIGN_OR_RETURN(PlacementOutcome outcome,
//                           PlaceInstances(config.cluster, config.groups, spec, seed));
//   config.instance_nodes = outcome.instance_nodes;   // -1: that instance did not come up
//
// Thread-safety: pure function of its arguments.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "sched/capacity_index.h"
#include "sim/simulator.h"

namespace tandem::sim {

enum class PlacementPolicy { kGang, kPodByPod };

struct PlacementSpec {
  PlacementPolicy policy = PlacementPolicy::kGang;
  sched::FitPolicy fit = sched::FitPolicy::kBestFit;
  // Pods one instance spans; its GPUs split evenly among them (multi-node TP groups).
  int pods_per_instance = 1;
  // Other tenants' pods already running: this fraction of the cluster's GPUs, in pods of the
  // listed sizes on random nodes.
  double background_fraction = 0;
  std::vector<int> background_pod_gpus = {1, 2, 4};
  // Deployments of the same shape submitted together with this one (contention). Gang mode
  // places them one after another (this one first); pod-by-pod interleaves their pods.
  int competing_deployments = 0;
  // Instances per group (same order as the groups) a deployment needs to serve; empty: all.
  std::vector<int> min_instances;
};

struct PlacementOutcome {
  std::vector<int> instance_nodes;  // this deployment's instances, -1 when not (fully) placed
  int deployments = 0;
  int deployments_serving = 0;  // every group at its minimum of complete instances
  bool serving = false;         // this deployment
  int instances_requested = 0;  // over all deployments
  int instances_complete = 0;
  int instances_partial = 0;  // some but not all pods bound
  int64_t gpus_total = 0;
  int64_t gpus_background = 0;
  int64_t gpus_bound = 0;          // bound to the deployments' pods
  int64_t gpus_stranded = 0;       // bound but serving nothing: partial instances, or deployments
                                   // below their minimum
  std::vector<std::string> notes;  // pending reasons from the placement core
};

absl::StatusOr<PlacementOutcome> PlaceInstances(const ClusterSpec& cluster,
                                                const std::vector<InstanceGroup>& groups,
                                                const PlacementSpec& spec, uint64_t seed);

}  // namespace tandem::sim
