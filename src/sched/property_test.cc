// Property tests on random clusters and gang trees, fixed seeds (printed on failure): a gang is
// never partially bound, capacity is never exceeded, required topology always holds, results
// are deterministic.
#include <cstdlib>
#include <map>
#include <random>
#include <set>

#include "gtest/gtest.h"
#include "sched/report.h"
#include "sched/scheduler.h"
#include "sched/synthetic.h"

namespace tandem::sched {
namespace {

struct World {
  Cluster cluster;
  ClusterState state;
};

World RandomWorld(std::mt19937_64& rng) {
  auto uniform = [&](int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(rng);
  };
  SyntheticClusterShape shape;
  const char* names[] = {"zone", "block", "rack", "nvlink-domain"};
  int depth = uniform(0, 4);
  for (int l = 4 - depth; l < 4; ++l) shape.levels.push_back({names[l], uniform(1, 3)});
  shape.nodes_per_leaf_domain = uniform(1, 4);
  shape.gpus_per_node = std::vector<int>{0, 2, 4, 8}[uniform(0, 3)];
  shape.cpu_millis = uniform(0, 1) ? 64000 : 0;
  World world{MakeSyntheticCluster(shape).value(), {}};
  // Random background load: single-pod instances of random sizes.
  RunningWorkload background;
  background.name = "background";
  background.priority = uniform(0, 200);
  RunningGroup group;
  group.min_available = 0;
  for (int n = 0; n < world.cluster.num_nodes(); ++n) {
    if (uniform(0, 2) != 0 || shape.gpus_per_node == 0) continue;
    int64_t gpus = uniform(1, shape.gpus_per_node);
    group.instances.push_back(
        {"bg" + std::to_string(n), {{"bg" + std::to_string(n), n, {gpus, 0, 0}}}});
  }
  if (!group.instances.empty()) {
    background.groups.push_back(std::move(group));
    world.state.workloads.push_back(std::move(background));
  }
  return world;
}

// Checks the invariants of one committed result; returns a description of the first violation.
std::string Violation(const Cluster& cluster, const ClusterState& state,
                      const PlacementRequest& request, const PlacementResult& result,
                      const Scheduler& scheduler) {
  // Capacity: running (not evicted) + new pods per node within capacity.
  std::set<std::string> evicted;
  for (const Eviction& eviction : result.evictions) {
    for (const auto& [pod, node] : eviction.pods) evicted.insert(pod);
  }
  std::vector<Resources> used(cluster.num_nodes());
  for (const RunningWorkload& workload : state.workloads) {
    for (const RunningGroup& group : workload.groups) {
      for (const RunningInstance& instance : group.instances) {
        for (const RunningPod& pod : instance.pods) {
          if (evicted.count(pod.name)) continue;
          used[pod.node].gpus += pod.resources.gpus;
          used[pod.node].cpu_millis += pod.resources.cpu_millis;
        }
      }
    }
  }
  std::vector<int> bound(request.gangs.size(), 0);
  for (const PodPlacement& pod : result.pods) {
    if (pod.running) continue;
    const Resources& r = request.gangs[pod.gang].pod_resources;
    used[pod.node].gpus += r.gpus;
    used[pod.node].cpu_millis += r.cpu_millis;
    ++bound[pod.gang];
  }
  for (int n = 0; n < cluster.num_nodes(); ++n) {
    const Resources& capacity = cluster.node(n).capacity;
    if (used[n].gpus > capacity.gpus) return "GPUs exceeded on " + cluster.node(n).name;
    if (capacity.cpu_millis > 0 && used[n].cpu_millis > capacity.cpu_millis) {
      return "CPU exceeded on " + cluster.node(n).name;
    }
    if (scheduler.index().NodeFree(n).gpus != capacity.gpus - used[n].gpus) {
      return "index disagrees with bindings on " + cluster.node(n).name;
    }
  }
  if (!result.scheduled && result.new_pods > 0) return "pending request bound pods";
  // Never partial: a gang with any pod bound meets its minimum, and so does every ancestor.
  std::vector<int> subtree(request.gangs.size(), 0);
  std::vector<bool> placed(request.gangs.size(), false);
  for (int g = static_cast<int>(request.gangs.size()) - 1; g >= 0; --g) {
    const Gang& gang = request.gangs[g];
    if (gang.leaf) {
      subtree[g] = bound[g];
      placed[g] = bound[g] >= gang.min_pods;
    } else {
      int children = 0;
      for (int child : gang.children) {
        subtree[g] += subtree[child];
        children += placed[child];
      }
      placed[g] = children >= gang.min_children;
    }
  }
  for (size_t g = 0; g < request.gangs.size(); ++g) {
    if (subtree[g] > 0 && !placed[g]) return "gang partially bound: " + request.gangs[g].path;
  }
  if (result.scheduled && !placed[0]) return "scheduled without the root minimum";
  // Required topology: all bound pods of a gang in one domain of its required level.
  std::map<int, std::set<int>> domains;  // gang → domains at its required level
  for (const PodPlacement& pod : result.pods) {
    for (int g = pod.gang; g >= 0; g = request.gangs[g].parent) {
      int level = request.gangs[g].required.index;
      if (level >= 0) domains[g].insert(cluster.NodeDomain(pod.node, level));
    }
  }
  for (const auto& [g, set] : domains) {
    if (set.size() > 1) return "required level broken: " + request.gangs[g].path;
  }
  // Required relations.
  for (size_t g = 0; g < request.gangs.size(); ++g) {
    for (const Relation& relation : request.gangs[g].relations) {
      if (!relation.required) continue;
      std::set<int> mine, theirs;
      for (const PodPlacement& pod : result.pods) {
        for (int a = pod.gang; a >= 0; a = request.gangs[a].parent) {
          if (a == static_cast<int>(g))
            mine.insert(cluster.NodeDomain(pod.node, relation.level.index));
          if (a == relation.target_gang)
            theirs.insert(cluster.NodeDomain(pod.node, relation.level.index));
        }
      }
      if (mine.empty() || theirs.empty()) continue;
      if (relation.kind == RelationKind::kSameDomain && (mine.size() > 1 || mine != theirs)) {
        return "required same-domain relation broken: " + request.gangs[g].path;
      }
      if (relation.kind == RelationKind::kSpread) {
        for (int d : mine) {
          if (theirs.count(d)) return "required spread relation broken: " + request.gangs[g].path;
        }
      }
    }
  }
  return "";
}

std::vector<std::tuple<int, int, int>> Fingerprint(const PlacementResult& result) {
  std::vector<std::tuple<int, int, int>> out;
  for (const PodPlacement& pod : result.pods) out.emplace_back(pod.gang, pod.pod, pod.node);
  return out;
}

TEST(SchedulerPropertyTest, InvariantsHoldOnRandomClustersAndTrees) {
  int scheduled = 0, pending = 0, preempted = 0;
  // TANDEM_SCHED_SEEDS=N explores more seeds by hand; the default keeps `make test` quick.
  const char* seeds_env = std::getenv("TANDEM_SCHED_SEEDS");
  const uint64_t seeds = seeds_env ? std::strtoull(seeds_env, nullptr, 10) : 300;
  for (uint64_t seed = 1; seed <= seeds; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    World world = RandomWorld(rng);
    Scheduler scheduler(world.cluster);
    ASSERT_TRUE(scheduler.AddRunning(world.state).ok());
    RandomRequestShape shape;
    // Several requests in a row on the same scheduler: later ones see earlier ones' pods.
    ClusterState cumulative = world.state;
    for (int r = 0; r < 3; ++r) {
      PlacementRequest request =
          RandomRequest(rng, world.cluster, "req" + std::to_string(r), shape);
      request.priority = std::uniform_int_distribution<int>(0, 300)(rng);
      ASSERT_TRUE(ResolveRequest(world.cluster, request).ok());
      PlacementResult result = scheduler.Place(request);
      std::string violation = Violation(world.cluster, cumulative, request, result, scheduler);
      ASSERT_EQ(violation, "") << "seed " << seed << " request " << r << "\n"
                               << FormatPlacementTable(world.cluster, request, result);
      scheduled += result.scheduled;
      pending += !result.scheduled;
      preempted += !result.evictions.empty();
      // Record what now runs: survivors of evictions plus the new pods.
      std::set<std::string> evicted;
      for (const Eviction& eviction : result.evictions) {
        for (const auto& [pod, node] : eviction.pods) evicted.insert(pod);
      }
      for (RunningWorkload& workload : cumulative.workloads) {
        for (RunningGroup& group : workload.groups) {
          for (RunningInstance& instance : group.instances) {
            std::erase_if(instance.pods,
                          [&](const RunningPod& pod) { return evicted.count(pod.name) > 0; });
          }
        }
      }
      if (result.new_pods > 0) {
        RunningWorkload placed;
        placed.name = request.name;
        placed.priority = request.priority;
        placed.max_disrupted_pods = 0;
        RunningGroup group;
        group.min_available = 0;
        for (const PodPlacement& pod : result.pods) {
          const Gang& gang = request.gangs[pod.gang];
          group.instances.push_back(
              {gang.pod_names[pod.pod], {{gang.pod_names[pod.pod], pod.node, gang.pod_resources}}});
        }
        placed.groups.push_back(std::move(group));
        cumulative.workloads.push_back(std::move(placed));
      }
    }
  }
  // The generator exercises both outcomes and preemption.
  EXPECT_GT(scheduled, 100);
  EXPECT_GT(pending, 20);
  EXPECT_GT(preempted, 5);
}

TEST(SchedulerPropertyTest, ResultsAreDeterministic) {
  for (uint64_t seed = 1000; seed < 1100; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng_a(seed), rng_b(seed);
    World a = RandomWorld(rng_a), b = RandomWorld(rng_b);
    Scheduler first(a.cluster), second(b.cluster);
    ASSERT_TRUE(first.AddRunning(a.state).ok());
    ASSERT_TRUE(second.AddRunning(b.state).ok());
    PlacementRequest request_a = RandomRequest(rng_a, a.cluster, "r", {});
    PlacementRequest request_b = RandomRequest(rng_b, b.cluster, "r", {});
    request_a.priority = request_b.priority = 50;
    PlacementResult x = first.Place(request_a), y = second.Place(request_b);
    EXPECT_EQ(x.scheduled, y.scheduled);
    EXPECT_EQ(Fingerprint(x), Fingerprint(y));
    EXPECT_EQ(x.pending.size(), y.pending.size());
    EXPECT_EQ(x.evictions.size(), y.evictions.size());
  }
}

TEST(SchedulerPropertyTest, TinyStreamKeepsIndexConsistent) {
  // A miniature of the stream benchmark: arrivals and departures, index checked at the end.
  const uint64_t seed = 42;
  std::mt19937_64 rng(seed);
  SyntheticClusterShape shape{{{"rack", 4}, {"nvlink-domain", 2}}, 4, 8};
  Cluster cluster = MakeSyntheticCluster(shape).value();
  Scheduler scheduler(cluster);
  RandomRequestShape small{1, 1, 8, {1, 2, 4, 8}, 0.5, 0};
  std::vector<std::pair<PlacementRequest, PlacementResult>> live;
  for (int i = 0; i < 2000; ++i) {
    PlacementRequest request = RandomRequest(rng, cluster, "g" + std::to_string(i), small);
    PlacementResult result = scheduler.Place(request);
    if (result.scheduled) live.emplace_back(std::move(request), std::move(result));
    if (live.size() > 30) {
      size_t victim = std::uniform_int_distribution<size_t>(0, live.size() - 1)(rng);
      scheduler.Release(live[victim].first, live[victim].second);
      live.erase(live.begin() + static_cast<long>(victim));
    }
  }
  for (auto& [request, result] : live) scheduler.Release(request, result);
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), cluster.total_gpus()) << "seed " << seed;
  for (int g = 1; g <= 8; ++g) {
    EXPECT_EQ(scheduler.index().Slots(Cluster::kRoot, g), cluster.total_gpus() / 8 * (8 / g))
        << "seed " << seed;
  }
}

}  // namespace
}  // namespace tandem::sched
