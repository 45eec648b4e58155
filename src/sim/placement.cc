#include "sim/placement.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/random.h"
#include "core/status.h"
#include "sched/gang.h"
#include "sched/scheduler.h"
#include "sched/state.h"

namespace tandem::sim {
namespace {

std::string NodeName(int node) { return absl::StrFormat("node-%05d", node); }

absl::StatusOr<sched::Cluster> BuildCluster(const ClusterSpec& spec) {
  std::vector<sched::Level> levels = {{"domain", "topology.tandem.io/domain", 0},
                                      {"node", "kubernetes.io/hostname", 0}};
  std::vector<sched::NodeSpec> nodes;
  for (int n = 0; n < spec.nodes; ++n) {
    sched::NodeSpec node;
    node.name = NodeName(n);
    node.capacity.gpus = spec.gpus_per_node;
    node.path = {absl::StrFormat("domain-%05d", n / spec.nodes_per_domain)};
    nodes.push_back(std::move(node));
  }
  return sched::Cluster::Build(std::move(levels), std::move(nodes));
}

// Where an instance of deployment `deployment`, group `group`, number `index` sits in the
// requests.
struct InstanceKey {
  int deployment;
  int group;
  int index;
};

// Adds one instance (a leaf gang of pods) under `parent`.
int AddInstance(sched::PlacementRequest& request, int parent, const InstanceKey& key,
                const InstanceGroup& group, const PlacementSpec& spec) {
  std::string name =
      absl::StrCat("d", key.deployment, "-", InstanceRoleName(group.role), "-", key.index);
  int leaf = sched::AddGang(request, parent, name);
  sched::Gang& gang = request.gangs[leaf];
  gang.leaf = true;
  gang.min_pods = spec.pods_per_instance;
  gang.pod_resources.gpus = group.tensor_parallel / spec.pods_per_instance;
  if (spec.pods_per_instance > 1) gang.required.name = "domain";  // one TP group, one domain
  for (int p = 0; p < spec.pods_per_instance; ++p)
    gang.pod_names.push_back(absl::StrCat(name, "-", p));
  return leaf;
}

}  // namespace

absl::StatusOr<PlacementOutcome> PlaceInstances(const ClusterSpec& cluster_spec,
                                                const std::vector<InstanceGroup>& groups,
                                                const PlacementSpec& spec, uint64_t seed) {
  if (spec.pods_per_instance < 1) {
    return absl::InvalidArgumentError("placement.pods_per_instance must be >= 1");
  }
  for (const InstanceGroup& g : groups) {
    if (g.tensor_parallel % spec.pods_per_instance != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement.pods_per_instance ", spec.pods_per_instance, " does not divide ",
                       InstanceRoleName(g.role), " tensor_parallel ", g.tensor_parallel));
    }
    if (g.tensor_parallel / spec.pods_per_instance > cluster_spec.gpus_per_node) {
      return absl::InvalidArgumentError(
          absl::StrCat("placement: a ", InstanceRoleName(g.role), " pod needs ",
                       g.tensor_parallel / spec.pods_per_instance, " GPUs; nodes have ",
                       cluster_spec.gpus_per_node, " (raise pods_per_instance)"));
    }
  }
  if (!spec.min_instances.empty() && spec.min_instances.size() != groups.size()) {
    return absl::InvalidArgumentError("placement.min_instances: one entry per instance group");
  }
  if (!(spec.background_fraction >= 0 && spec.background_fraction < 1)) {
    return absl::InvalidArgumentError("placement.background_fraction must be in [0, 1)");
  }
  if (spec.competing_deployments < 0) {
    return absl::InvalidArgumentError("placement.competing_deployments must be >= 0");
  }
  for (int size : spec.background_pod_gpus) {
    if (size < 1 || size > cluster_spec.gpus_per_node) {
      return absl::InvalidArgumentError(absl::StrCat("placement.background_pod_gpus: ", size,
                                                     " is not in 1..", cluster_spec.gpus_per_node));
    }
  }
  TANDEM_ASSIGN_OR_RETURN(sched::Cluster cluster, BuildCluster(cluster_spec));
  std::vector<int> sched_to_sim(cluster.num_nodes());
  for (int n = 0; n < cluster_spec.nodes; ++n) sched_to_sim[cluster.FindNode(NodeName(n))] = n;

  PlacementOutcome out;
  out.gpus_total = cluster.total_gpus();

  // Other tenants: random pods on random nodes until the fraction is used.
  sched::ClusterState state;
  sched::RunningWorkload background;
  background.name = "background";
  background.priority = 1 << 20;
  background.max_disrupted_pods = 0;
  sched::RunningGroup background_group;
  background_group.name = "pods";
  std::vector<int64_t> free(cluster.num_nodes(), cluster_spec.gpus_per_node);
  bench::Random rng(seed ^ 0xb4c6'0f00ULL);
  const int64_t target = static_cast<int64_t>(spec.background_fraction * out.gpus_total);
  int attempts = 0;
  while (out.gpus_background < target && !spec.background_pod_gpus.empty() && attempts < 100000) {
    ++attempts;
    int size = spec.background_pod_gpus[rng.UniformInt(0, spec.background_pod_gpus.size() - 1)];
    int node = static_cast<int>(rng.UniformInt(0, cluster.num_nodes() - 1));
    if (free[node] < size) continue;
    free[node] -= size;
    out.gpus_background += size;
    sched::RunningInstance instance;
    instance.name = absl::StrCat("bg-", background_group.instances.size());
    instance.pods.push_back({instance.name, node, sched::Resources{size, 0, 0}});
    background_group.instances.push_back(std::move(instance));
  }
  background.groups.push_back(std::move(background_group));
  state.workloads.push_back(std::move(background));

  const int deployments = 1 + spec.competing_deployments;
  out.deployments = deployments;
  // Bound pods per instance: [deployment][group][index] -> nodes.
  std::vector<std::vector<std::vector<std::vector<int>>>> bound(deployments);
  for (auto& d : bound) {
    d.resize(groups.size());
    for (size_t g = 0; g < groups.size(); ++g) d[g].resize(groups[g].count);
  }

  if (spec.policy == PlacementPolicy::kGang) {
    sched::Scheduler scheduler(cluster);
    TANDEM_RETURN_IF_ERROR(scheduler.AddRunning(state));
    for (int d = 0; d < deployments; ++d) {
      sched::PlacementRequest request;
      request.name = absl::StrCat("deployment-", d);
      request.filename = "placement";
      sched::AddGang(request, -1, request.name);
      std::vector<InstanceKey> leaves(1, InstanceKey{-1, -1, -1});
      for (size_t g = 0; g < groups.size(); ++g) {
        if (groups[g].count == 0) continue;
        int role = sched::AddGang(request, 0, InstanceRoleName(groups[g].role));
        request.gangs[role].min_children = spec.min_instances.empty()
                                               ? groups[g].count
                                               : std::min(spec.min_instances[g], groups[g].count);
        for (int i = 0; i < groups[g].count; ++i) {
          InstanceKey key{d, static_cast<int>(g), i};
          int leaf = AddInstance(request, role, key, groups[g], spec);
          leaves.resize(leaf + 1, InstanceKey{-1, -1, -1});
          leaves[leaf] = key;
        }
      }
      request.gangs[0].min_children = static_cast<int>(request.gangs[0].children.size());
      TANDEM_RETURN_IF_ERROR(sched::ResolveRequest(cluster, request));
      sched::PlacementResult result =
          scheduler.Place(request, {.policy = spec.fit, .allow_preemption = false});
      // Nothing is bound unless every minimum was met (all-or-nothing).
      for (const sched::PodPlacement& pod : result.pods) {
        if (!result.scheduled || pod.gang < 0 || pod.gang >= static_cast<int>(leaves.size()))
          continue;
        const InstanceKey& key = leaves[pod.gang];
        if (key.deployment < 0) continue;
        bound[key.deployment][key.group][key.index].push_back(sched_to_sim[pod.node]);
      }
      for (const sched::PendingReason& reason : result.pending) {
        if (!reason.blocking || reason.message.empty() || out.notes.size() >= 6) continue;
        std::string note = absl::StrCat(request.name, ": ", reason.message);
        if (std::find(out.notes.begin(), out.notes.end(), note) == out.notes.end()) {
          out.notes.push_back(std::move(note));
        }
      }
    }
  } else {
    sched::CapacityIndex index(cluster);
    for (const sched::RunningInstance& instance : state.workloads[0].groups[0].instances) {
      for (const sched::RunningPod& pod : instance.pods) index.Consume(pod.node, pod.resources);
    }
    // All deployments' pods in one queue, interleaved as concurrent submissions arrive.
    sched::PlacementRequest request;
    request.name = "pod-by-pod";
    sched::AddGang(request, -1, request.name);
    std::vector<InstanceKey> leaves(1, InstanceKey{-1, -1, -1});
    int most = 0;
    for (const InstanceGroup& g : groups) most = std::max(most, g.count);
    for (int i = 0; i < most; ++i) {
      for (size_t g = 0; g < groups.size(); ++g) {
        if (i >= groups[g].count) continue;
        for (int d = 0; d < deployments; ++d) {
          InstanceKey key{d, static_cast<int>(g), i};
          int leaf = AddInstance(request, 0, key, groups[g], spec);
          request.gangs[leaf].required = {};  // the baseline ignores topology
          leaves.resize(leaf + 1, InstanceKey{-1, -1, -1});
          leaves[leaf] = key;
        }
      }
    }
    for (const sched::PodPlacement& pod : sched::PlacePodByPod(index, request, spec.fit)) {
      const InstanceKey& key = leaves[pod.gang];
      if (key.deployment < 0) continue;
      bound[key.deployment][key.group][key.index].push_back(sched_to_sim[pod.node]);
    }
  }

  for (int d = 0; d < deployments; ++d) {
    bool serving = true;
    bool any_decode = false;
    int64_t deployment_gpus = 0, partial_gpus = 0;
    for (size_t g = 0; g < groups.size(); ++g) {
      int complete = 0;
      const int64_t pod_gpus = groups[g].tensor_parallel / spec.pods_per_instance;
      for (int i = 0; i < groups[g].count; ++i) {
        const std::vector<int>& pods = bound[d][g][i];
        ++out.instances_requested;
        deployment_gpus += pod_gpus * static_cast<int64_t>(pods.size());
        if (static_cast<int>(pods.size()) == spec.pods_per_instance) {
          ++complete;
          ++out.instances_complete;
        } else if (!pods.empty()) {
          ++out.instances_partial;
          partial_gpus += pod_gpus * static_cast<int64_t>(pods.size());
        }
        if (d == 0) {
          out.instance_nodes.push_back(
              static_cast<int>(pods.size()) == spec.pods_per_instance ? pods.front() : -1);
        }
      }
      int need = spec.min_instances.empty() ? groups[g].count
                                            : std::min(spec.min_instances[g], groups[g].count);
      if (complete < need) serving = false;
      if (groups[g].role != InstanceRole::kPrefill && complete > 0) any_decode = true;
    }
    serving = serving && any_decode;
    out.gpus_bound += deployment_gpus;
    out.gpus_stranded += serving ? partial_gpus : deployment_gpus;
    if (serving) ++out.deployments_serving;
    if (d == 0) out.serving = serving;
  }
  return out;
}

}  // namespace tandem::sim
