// Hand-built placement cases: TP groups and NVLink domains, prefill near decode, the pod-by-pod
// deadlock, all-or-nothing, elastic growth, preemption and why-pending.
#include "sched/scheduler.h"

#include <map>
#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sched/report.h"

namespace tandem::sched {
namespace {

using ::testing::HasSubstr;

Cluster ClusterFrom(const std::string& text) {
  absl::StatusOr<Cluster> cluster = ParseClusterYaml(text, "cluster.yaml");
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  return *std::move(cluster);
}

PlacementRequest RequestFrom(const Cluster& cluster, const std::string& text) {
  absl::StatusOr<PlacementRequest> request = ParsePlacementRequest(text, "request.yaml");
  EXPECT_TRUE(request.ok()) << request.status();
  absl::Status resolved = ResolveRequest(cluster, *request);
  EXPECT_TRUE(resolved.ok()) << resolved;
  return *std::move(request);
}

ClusterState StateFrom(const Cluster& cluster, const std::string& text) {
  absl::StatusOr<ClusterState> state = ParseClusterState(text, "state.yaml", cluster);
  EXPECT_TRUE(state.ok()) << state.status();
  return *std::move(state);
}

// Domain (at `level`) of every bound pod of gang paths starting with `prefix`.
std::set<std::string> DomainsOf(const Cluster& cluster, const PlacementRequest& request,
                                const PlacementResult& result, const std::string& prefix,
                                const std::string& level) {
  std::set<std::string> domains;
  int index = cluster.LevelIndex(level);
  for (const PodPlacement& pod : result.pods) {
    if (request.gangs[pod.gang].path.rfind(prefix, 0) != 0) continue;
    domains.insert(cluster.domain(cluster.NodeDomain(pod.node, index)).path);
  }
  return domains;
}

int PodsOf(const PlacementRequest& request, const PlacementResult& result,
           const std::string& prefix) {
  int count = 0;
  for (const PodPlacement& pod : result.pods) {
    count += request.gangs[pod.gang].path.rfind(prefix, 0) == 0;
  }
  return count;
}

// Two NVLink domains of two 4-GPU nodes each (8 GPUs per domain).
constexpr char kTwoDomains[] = R"(
topology:
  levels: [rack, {name: nvlink-domain, nodeLabel: nvidia.com/gpu.clique}]
nodes:
  - {name: a, count: 2, gpus: 4, path: r1/nvl-1}
  - {name: b, count: 2, gpus: 4, path: r1/nvl-2}
)";

TEST(SchedulerTest, Tp8GroupNeverStraddlesNvlinkDomains) {
  Cluster cluster = ClusterFrom(kTwoDomains);
  // A TP-8 instance over two 4-GPU hosts, required inside one NVLink domain.
  const std::string tp8 = R"(
name: tp8
roles:
  decode:
    replicas: 1
    podsPerInstance: 2
    resources: {gpu: 4}
    topology: {packRequired: nvlink-domain}
)";
  {
    Scheduler scheduler(cluster);
    PlacementRequest request = RequestFrom(cluster, tp8);
    PlacementResult result = scheduler.Place(request);
    ASSERT_TRUE(result.scheduled);
    EXPECT_EQ(DomainsOf(cluster, request, result, "tp8", "nvlink-domain").size(), 1u);
  }
  // One GPU taken in each domain: 14 GPUs free in total, but no domain has 8. Nothing binds,
  // where a pod-by-pod scheduler would split the group across domains.
  const std::string busy = R"(
workloads:
  - name: other
    priority: 1000
    groups:
      - instances:
          - {name: o1, pods: [{name: o1, node: a-0, gpu: 1}]}
          - {name: o2, pods: [{name: o2, node: b-0, gpu: 1}]}
)";
  Scheduler scheduler(cluster);
  ASSERT_TRUE(scheduler.AddRunning(StateFrom(cluster, busy)).ok());
  PlacementRequest request = RequestFrom(cluster, tp8);
  PlacementResult result = scheduler.Place(request);
  EXPECT_FALSE(result.scheduled);
  EXPECT_EQ(result.new_pods, 0);
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), 14);
  ASSERT_FALSE(result.pending.empty());
  std::string reasons;
  for (const PendingReason& reason : result.pending) reasons += reason.message + "\n";
  EXPECT_THAT(reasons, HasSubstr("needs 2 pods x 4 GPUs in one nvlink-domain; best nvlink-domain "
                                 "r1/nvl-1 has 7 free GPUs (room for 1)"));

  CapacityIndex greedy(cluster);
  greedy.Consume(cluster.FindNode("a-0"), {1, 0, 0});
  greedy.Consume(cluster.FindNode("b-0"), {1, 0, 0});
  std::vector<PodPlacement> pods = PlacePodByPod(greedy, request, FitPolicy::kSpread);
  ASSERT_EQ(pods.size(), 2u);
  EXPECT_NE(cluster.NodeDomain(pods[0].node, 1), cluster.NodeDomain(pods[1].node, 1));
}

TEST(SchedulerTest, SeveralTpGroupsEachInOneDomain) {
  Cluster cluster = ClusterFrom(R"(
topology:
  levels: [{name: nvlink-domain, nodeLabel: nvidia.com/gpu.clique}]
nodes:
  - {name: a, count: 3, gpus: 8, path: nvl-1}
  - {name: b, count: 3, gpus: 8, path: nvl-2}
)");
  PlacementRequest request = RequestFrom(cluster, R"(
name: big
roles:
  decode:
    replicas: 3
    podsPerInstance: 2
    resources: {gpu: 8}
    topology: {packRequired: nvlink-domain}
)");
  Scheduler scheduler(cluster);
  PlacementResult result = scheduler.Place(request);
  // 3 groups of 16 GPUs on 2 domains of 24: only 2 groups can be whole-domain placed... and the
  // role's minimum is all 3, so nothing binds.
  EXPECT_FALSE(result.scheduled);
  EXPECT_EQ(result.new_pods, 0);
  // With minAvailable 2 the role runs two groups, each inside one domain.
  PlacementRequest elastic = RequestFrom(cluster, R"(
name: big
roles:
  decode:
    replicas: 3
    minAvailable: 2
    podsPerInstance: 2
    resources: {gpu: 8}
    topology: {packRequired: nvlink-domain}
)");
  result = scheduler.Place(elastic);
  ASSERT_TRUE(result.scheduled);
  EXPECT_EQ(result.new_pods, 4);
  for (int i = 0; i < 3; ++i) {
    std::string prefix = "big/decode/decode-" + std::to_string(i);
    EXPECT_LE(DomainsOf(cluster, elastic, result, prefix, "nvlink-domain").size(), 1u);
  }
  ASSERT_EQ(result.pending.size(), 1u);
  EXPECT_FALSE(result.pending[0].blocking);  // above the minimum: elastic, not blocking
}

constexpr char kTwoRacks[] = R"(
topology:
  levels: [rack]
nodes:
  - {name: a, count: 2, gpus: 8, path: rack-1}
  - {name: b, count: 2, gpus: 8, path: rack-2}
)";

constexpr char kPair[] = R"(
name: pd
roles:
  decode:
    replicas: 1
    resources: {gpu: 8}
  prefill:
    replicas: 1
    resources: {gpu: 8}
    relations: [{sameDomainAs: decode, level: rack}]
)";

TEST(SchedulerTest, PrefillJoinsDecodeRackWhenPossible) {
  Cluster cluster = ClusterFrom(R"(
topology:
  levels: [rack]
nodes:
  - {name: a, count: 3, gpus: 8, path: rack-1}
  - {name: b, count: 3, gpus: 8, path: rack-2}
)");
  // rack-2 is partly used, so best fit puts decode there; prefill must follow it.
  const std::string state = R"(
workloads:
  - name: other
    groups: [{instances: [{name: o, pods: [{name: o, node: b-0, gpu: 4}]}]}]
)";
  Scheduler scheduler(cluster);
  ASSERT_TRUE(scheduler.AddRunning(StateFrom(cluster, state)).ok());
  PlacementRequest request = RequestFrom(cluster, kPair);
  PlacementResult result = scheduler.Place(request);
  ASSERT_TRUE(result.scheduled);
  EXPECT_EQ(DomainsOf(cluster, request, result, "pd", "rack"), (std::set<std::string>{"rack-2"}));
  EXPECT_DOUBLE_EQ(result.score, 1.0);
  std::string table = FormatPlacementTable(cluster, request, result);
  EXPECT_THAT(table, HasSubstr("same rack as decode (preferred): met"));
}

TEST(SchedulerTest, PrefillDegradesGracefullyWhenRackIsFull) {
  Cluster cluster = ClusterFrom(kTwoRacks);
  // Each rack has exactly 8 free GPUs: decode and prefill cannot share one.
  const std::string state = R"(
workloads:
  - name: other
    priority: 1000
    groups:
      - instances:
          - {name: o1, pods: [{name: o1, node: a-0, gpu: 8}]}
          - {name: o2, pods: [{name: o2, node: b-0, gpu: 8}]}
)";
  Scheduler scheduler(cluster);
  ASSERT_TRUE(scheduler.AddRunning(StateFrom(cluster, state)).ok());
  PlacementRequest request = RequestFrom(cluster, kPair);
  PlacementResult result = scheduler.Place(request);
  ASSERT_TRUE(result.scheduled);
  EXPECT_EQ(DomainsOf(cluster, request, result, "pd", "rack").size(), 2u);
  EXPECT_DOUBLE_EQ(result.score, 0.0);
  EXPECT_THAT(FormatPlacementTable(cluster, request, result),
              HasSubstr("same rack as decode (preferred): not met"));

  // Required instead of preferred: it cannot be met, so nothing binds.
  Scheduler strict(cluster);
  ASSERT_TRUE(strict.AddRunning(StateFrom(cluster, state)).ok());
  std::string required = kPair;
  required.replace(required.find("level: rack}"), 12, "level: rack, required: true}");
  PlacementRequest strict_request = RequestFrom(cluster, required);
  PlacementResult strict_result = strict.Place(strict_request);
  EXPECT_FALSE(strict_result.scheduled);
  EXPECT_EQ(strict_result.new_pods, 0);
}

constexpr char kDeadlockRequest[] = R"(
name: dl
roles:
  prefill:
    replicas: 4
    minAvailable: 1
    resources: {gpu: 4}
  decode:
    replicas: 2
    minAvailable: 1
    resources: {gpu: 8}
)";

TEST(SchedulerTest, PodByPodDeadlocksWhereHierarchicalGangsDoNot) {
  Cluster cluster = ClusterFrom("nodes:\n  - {name: g, count: 2, gpus: 8}\n");
  PlacementRequest request = RequestFrom(cluster, kDeadlockRequest);

  // Pod by pod: prefill comes first and takes all 16 GPUs; decode never starts.
  CapacityIndex greedy(cluster);
  std::vector<PodPlacement> pods = PlacePodByPod(greedy, request, FitPolicy::kSpread);
  PlacementResult as_result;
  as_result.pods = pods;
  EXPECT_EQ(PodsOf(request, as_result, "dl/prefill"), 4);
  EXPECT_EQ(PodsOf(request, as_result, "dl/decode"), 0);
  EXPECT_EQ(greedy.FreeGpus(Cluster::kRoot), 0);  // holds every GPU, serves nothing

  // Hierarchical gangs: both roles at (at least) their minimums.
  Scheduler scheduler(cluster);
  PlacementResult result = scheduler.Place(request);
  ASSERT_TRUE(result.scheduled);
  EXPECT_GE(PodsOf(request, result, "dl/prefill"), 1);
  EXPECT_GE(PodsOf(request, result, "dl/decode"), 1);
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), 0);  // grown to fill, usefully

  // Four 4-GPU nodes: decode's 8-GPU pods fit nowhere. Pod by pod binds all of prefill anyway;
  // the gang binds nothing.
  Cluster small = ClusterFrom("nodes:\n  - {name: g, count: 4, gpus: 4}\n");
  PlacementRequest request2 = RequestFrom(small, kDeadlockRequest);
  CapacityIndex greedy2(small);
  EXPECT_EQ(PlacePodByPod(greedy2, request2, FitPolicy::kSpread).size(), 4u);
  Scheduler scheduler2(small);
  PlacementResult result2 = scheduler2.Place(request2);
  EXPECT_FALSE(result2.scheduled);
  EXPECT_EQ(result2.new_pods, 0);
  EXPECT_EQ(scheduler2.index().FreeGpus(Cluster::kRoot), 16);
  std::string table = FormatPlacementTable(small, request2, result2);
  EXPECT_THAT(table, HasSubstr("dl/decode/decode-0: needs 1 pod x 8 GPUs in the cluster"));
}

TEST(SchedulerTest, ElasticGrowthKeepsRunningPodsInPlace) {
  Cluster cluster = ClusterFrom(kTwoDomains);
  const std::string state = R"(
workloads:
  - name: svc
    groups:
      - name: prefill
        instances:
          - {name: prefill-0, pods: [{name: prefill-0, node: b-1, gpu: 4}]}
          - {name: prefill-1, pods: [{name: prefill-1, node: a-0, gpu: 4}]}
)";
  Scheduler scheduler(cluster);
  ASSERT_TRUE(scheduler.AddRunning(StateFrom(cluster, state)).ok());
  PlacementRequest request = RequestFrom(cluster, R"(
name: svc
roles:
  prefill:
    replicas: 4
    minAvailable: 2
    resources: {gpu: 4}
)");
  PlacementResult result = scheduler.Place(request);
  ASSERT_TRUE(result.scheduled);
  EXPECT_EQ(result.new_pods, 2);
  std::map<std::string, std::string> where;
  for (const PodPlacement& pod : result.pods) {
    where[request.gangs[pod.gang].pod_names[pod.pod]] = cluster.node(pod.node).name;
  }
  EXPECT_EQ(where["prefill-0"], "b-1");
  EXPECT_EQ(where["prefill-1"], "a-0");
  EXPECT_EQ(where.size(), 4u);
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), 0);
}

constexpr char kFullCluster[] = R"(
workloads:
  - name: batch
    priority: 10
    disruptionBudget: {maxPods: BUDGET}
    groups:
      - name: workers
        minAvailable: 2
        instances:
          - {name: w0, pods: [{name: w0-0, node: a-0, gpu: 4}, {name: w0-1, node: a-1, gpu: 4}]}
          - {name: w1, pods: [{name: w1-0, node: b-0, gpu: 4}, {name: w1-1, node: b-1, gpu: 4}]}
  - name: tiny
    priority: 5
    groups:
      - instances: []
)";

std::string WithBudget(int budget) {
  std::string text = kFullCluster;
  text.replace(text.find("BUDGET"), 6, std::to_string(budget));
  // Drop the empty `tiny` workload: ParseClusterState requires pods in instances.
  text = text.substr(0, text.find("  - name: tiny"));
  return text;
}

constexpr char kUrgent[] = R"(
name: urgent
priority: 100
roles:
  decode:
    replicas: 1
    podsPerInstance: 2
    resources: {gpu: 4}
    topology: {packRequired: nvlink-domain}
)";

TEST(SchedulerTest, PreemptsWholeWorkloadWithinBudget) {
  Cluster cluster = ClusterFrom(kTwoDomains);
  // The batch job has no instance above its minimum (2 of 2): it can only go whole.
  Scheduler scheduler(cluster);
  ASSERT_TRUE(scheduler.AddRunning(StateFrom(cluster, WithBudget(4))).ok());
  PlacementRequest request = RequestFrom(cluster, kUrgent);
  PlacementResult result = scheduler.Place(request);
  ASSERT_TRUE(result.scheduled);
  ASSERT_EQ(result.evictions.size(), 1u);
  EXPECT_TRUE(result.evictions[0].whole_workload);
  EXPECT_EQ(result.evictions[0].pods.size(), 4u);  // all-or-nothing: the whole gang goes
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), 8);

  // A budget of 3 pods cannot cover the 4-pod workload: nothing is preempted.
  Scheduler tight(cluster);
  ASSERT_TRUE(tight.AddRunning(StateFrom(cluster, WithBudget(3))).ok());
  PlacementResult blocked = tight.Place(request);
  EXPECT_FALSE(blocked.scheduled);
  EXPECT_TRUE(blocked.evictions.empty());
  EXPECT_EQ(tight.index().FreeGpus(Cluster::kRoot), 0);
}

TEST(SchedulerTest, PreemptionTrimsInstancesAboveMinimumAndPrefersLowPriority) {
  Cluster cluster = ClusterFrom(R"(
topology:
  levels: [{name: nvlink-domain, nodeLabel: nvidia.com/gpu.clique}]
nodes:
  - {name: a, count: 2, gpus: 8, path: nvl-1}
  - {name: b, count: 2, gpus: 8, path: nvl-2}
  - {name: c, count: 2, gpus: 8, path: nvl-3}
)");
  const std::string state = R"(
workloads:
  - name: low
    priority: 1
    groups:
      - name: g
        minAvailable: 1
        instances:
          - {name: l0, pods: [{name: l0, node: a-0, gpu: 8}]}
          - {name: l1, pods: [{name: l1, node: a-1, gpu: 8}]}
  - name: mid
    priority: 5
    groups:
      - name: g
        minAvailable: 1
        instances:
          - {name: m0, pods: [{name: m0, node: b-0, gpu: 8}]}
          - {name: m1, pods: [{name: m1, node: b-1, gpu: 8}]}
  - name: protected
    priority: 1
    disruptionBudget: none
    groups:
      - instances:
          - {name: p0, pods: [{name: p0, node: c-0, gpu: 8}, {name: p1, node: c-1, gpu: 8}]}
)";
  Scheduler scheduler(cluster);
  ASSERT_TRUE(scheduler.AddRunning(StateFrom(cluster, state)).ok());
  PlacementRequest request = RequestFrom(cluster, R"(
name: urgent
priority: 100
roles:
  decode: {replicas: 1, resources: {gpu: 8}}
)");
  PlacementResult result = scheduler.Place(request);
  ASSERT_TRUE(result.scheduled);
  ASSERT_EQ(result.evictions.size(), 1u);
  EXPECT_EQ(result.evictions[0].workload, "low");
  EXPECT_FALSE(result.evictions[0].whole_workload);
  EXPECT_EQ(result.evictions[0].instances, std::vector<std::string>{"l1"});
  std::string table = FormatPlacementTable(cluster, request, result);
  EXPECT_THAT(table, HasSubstr("evict from low (priority 1): 1 pods in 1 instance(s): l1"));

  // A second request on the same scheduler lists only its own victims: l1 is already gone, low
  // is down to its minimum, so low goes whole (priority 1 before mid's 5) — just l0.
  PlacementRequest second = RequestFrom(cluster, R"(
name: urgent-2
priority: 100
roles:
  decode: {replicas: 1, resources: {gpu: 8}}
)");
  PlacementResult next = scheduler.Place(second);
  ASSERT_TRUE(next.scheduled);
  ASSERT_EQ(next.evictions.size(), 1u);
  EXPECT_EQ(next.evictions[0].workload, "low");
  EXPECT_TRUE(next.evictions[0].whole_workload);
  ASSERT_EQ(next.evictions[0].pods.size(), 1u);
  EXPECT_EQ(next.evictions[0].pods[0].first, "l0");

  // Higher-priority requests only: an equal-priority request preempts nothing.
  Scheduler again(cluster);
  ASSERT_TRUE(again.AddRunning(StateFrom(cluster, state)).ok());
  PlacementRequest peer = RequestFrom(cluster, R"(
name: peer
priority: 1
roles:
  decode: {replicas: 1, resources: {gpu: 8}}
)");
  PlacementResult none = again.Place(peer);
  EXPECT_FALSE(none.scheduled);
  EXPECT_TRUE(none.evictions.empty());
}

TEST(SchedulerTest, DryRunLeavesIndexUnchanged) {
  Cluster cluster = ClusterFrom(kTwoDomains);
  Scheduler scheduler(cluster);
  PlacementRequest request = RequestFrom(cluster, kUrgent);
  PlaceOptions options;
  options.commit = false;
  PlacementResult result = scheduler.Place(request, options);
  EXPECT_TRUE(result.scheduled);
  EXPECT_EQ(result.new_pods, 2);
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), 16);
  PlacementResult committed = scheduler.Place(request);
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), 8);
  scheduler.Release(request, committed);
  EXPECT_EQ(scheduler.index().FreeGpus(Cluster::kRoot), 16);
}

TEST(SchedulerTest, RequiredSpreadKeepsRolesApart) {
  Cluster cluster = ClusterFrom(kTwoRacks);
  PlacementRequest request = RequestFrom(cluster, R"(
name: ha
roles:
  primary: {replicas: 2, resources: {gpu: 4}}
  standby:
    replicas: 2
    resources: {gpu: 4}
    relations: [{spreadFrom: primary, level: rack, required: true}]
)");
  Scheduler scheduler(cluster);
  PlacementResult result = scheduler.Place(request);
  ASSERT_TRUE(result.scheduled);
  std::set<std::string> primary = DomainsOf(cluster, request, result, "ha/primary", "rack");
  std::set<std::string> standby = DomainsOf(cluster, request, result, "ha/standby", "rack");
  for (const std::string& rack : standby) EXPECT_EQ(primary.count(rack), 0u) << rack;
}

TEST(SchedulerTest, StateErrorsNameLineAndField) {
  Cluster cluster = ClusterFrom(kTwoDomains);
  auto error = [&](const std::string& text) {
    absl::StatusOr<ClusterState> state = ParseClusterState(text, "state.yaml", cluster);
    EXPECT_FALSE(state.ok());
    return std::string(state.status().message());
  };
  EXPECT_THAT(error("workloads:\n  - name: w\n    groups:\n      - instances:\n"
                    "          - {name: i, pods: [{name: p, node: zz, gpu: 1}]}\n"),
              HasSubstr("state.yaml:5: workloads[0].groups[0].instances[0].pods[0].node: 'zz' is "
                        "not a node of the cluster"));
  EXPECT_THAT(error("workloads:\n  - name: w\n    disruptionBudget: some\n    groups: []\n"),
              HasSubstr("expected `none` or {maxPods: N}"));
  EXPECT_THAT(error("workloads:\n  - name: w\n    groups:\n      - minAvailable: 3\n"
                    "        instances: [{name: i, pods: [{name: p, node: a-0}]}]\n"),
              HasSubstr("minAvailable: 3 is out of range; expected 0..1"));
  EXPECT_THAT(error("kind: Cluster\n"), HasSubstr("expected ClusterState"));
}

TEST(SchedulerTest, JsonReport) {
  Cluster cluster = ClusterFrom(kTwoDomains);
  Scheduler scheduler(cluster);
  PlacementRequest request = RequestFrom(cluster, kUrgent);
  nlohmann::json json = PlacementToJson(cluster, request, scheduler.Place(request));
  EXPECT_EQ(json["scheduled"], true);
  ASSERT_EQ(json["pods"].size(), 2u);
  EXPECT_EQ(json["pods"][0]["gang"], "urgent/decode/decode-0");
  EXPECT_EQ(json["pods"][0]["domain"], "r1/nvl-1");
}

}  // namespace
}  // namespace tandem::sched
