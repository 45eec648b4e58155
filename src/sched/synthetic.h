// Synthetic clusters and random gang trees, for property tests and benchmarks: a regular
// topology tree (e.g. 2 zones × 10 blocks × 25 racks × 5 NVLink domains × 4 nodes × 8 GPUs) and
// random requests drawn from a seeded generator, so every run is reproducible from its seed.
//
//   Cluster cluster = MakeSyntheticCluster({{{"zone", 2}, {"rack", 4}}, 4, 8}).value();
//   std::mt19937_64 rng(seed);
//   PlacementRequest request = RandomRequest(rng, cluster, "r0", {});
//
// Thread-safety: pure functions of their arguments (the generator is the caller's).
#pragma once

#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "sched/cluster.h"
#include "sched/gang.h"

namespace tandem::sched {

struct SyntheticClusterShape {
  std::vector<std::pair<std::string, int>> levels;  // level name, children per parent domain
  int nodes_per_leaf_domain = 4;
  int gpus_per_node = 8;
  int64_t cpu_millis = 0;           // 0 = untracked
  int64_t memory_bytes = 0;         // 0 = untracked
  double bandwidth_top_gbps = 100;  // bandwidth doubles at each narrower level
};

absl::StatusOr<Cluster> MakeSyntheticCluster(const SyntheticClusterShape& shape);

struct RandomRequestShape {
  int max_roles = 3;
  int max_instances = 4;
  int max_pods_per_instance = 3;
  std::vector<int64_t> gpu_sizes = {0, 1, 2, 4, 8};
  double constraint_probability = 0.5;
  double relation_probability = 0.3;
};

// A random roles → instances → pods tree named `name`, already resolved against `cluster`.
PlacementRequest RandomRequest(std::mt19937_64& rng, const Cluster& cluster,
                               const std::string& name, const RandomRequestShape& shape);

}  // namespace tandem::sched
