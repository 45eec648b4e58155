// ClusterState: the workloads already running on a cluster, as the placement core sees them:
// their pods (node, resources), their gang structure (groups of instances with a minimum), a
// priority and a disruption budget. Running pods consume capacity; lower-priority workloads are
// preemption candidates; a workload named like a new request is that request's running part
// (elastic growth keeps its pods where they are).
//
//   absl::StatusOr<ClusterState> state = ParseClusterState(text, "state.yaml", cluster);
//   for (const RunningWorkload& w : state->workloads) { ... w.priority, w.groups ... }
//
// The file format is in docs/placement.md ("State file").
//
// Thread-safety: plain values; the parser is a pure function.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sched/cluster.h"

namespace tandem::sched {

struct RunningPod {
  std::string name;
  int node = -1;  // index into the Cluster
  Resources resources;
};

// An atomic unit: a TP group / role instance. Evicted whole or not at all.
struct RunningInstance {
  std::string name;
  std::vector<RunningPod> pods;
};

struct RunningGroup {
  std::string name;
  int min_available = 0;  // instances that must keep running for the workload to be useful
  std::vector<RunningInstance> instances;
};

struct RunningWorkload {
  std::string name;
  int priority = 0;
  // Pods that preemption may take from this workload; nullopt = no limit. 0 = never preempted.
  std::optional<int> max_disrupted_pods;
  std::vector<RunningGroup> groups;

  int NumPods() const;
};

struct ClusterState {
  std::vector<RunningWorkload> workloads;
};

absl::StatusOr<ClusterState> ParseClusterState(absl::string_view text, absl::string_view filename,
                                               const Cluster& cluster);

}  // namespace tandem::sched
