#include "sched/state.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "sched/internal/yaml_util.h"

namespace tandem::sched {
namespace {

using internal::Field;
using internal::YamlReader;

absl::StatusOr<Resources> ParsePodResources(const YamlReader& reader, const YAML::Node& pod,
                                            absl::string_view field) {
  Resources resources;
  TANDEM_ASSIGN_OR_RETURN(auto gpu, reader.Int(pod, "gpu", field));
  if (gpu && *gpu < 0) {
    return reader.Error(pod["gpu"], Field(field, "gpu"),
                        absl::StrCat(*gpu, " is negative; expected >= 0"));
  }
  resources.gpus = gpu.value_or(0);
  TANDEM_ASSIGN_OR_RETURN(auto cpu, reader.String(pod, "cpu", field));
  if (cpu) {
    absl::StatusOr<int64_t> millis = ParseCpuMillis(*cpu);
    if (!millis.ok())
      return reader.Error(pod["cpu"], Field(field, "cpu"), millis.status().message());
    resources.cpu_millis = *millis;
  }
  TANDEM_ASSIGN_OR_RETURN(auto memory, reader.String(pod, "memory", field));
  if (memory) {
    absl::StatusOr<int64_t> bytes = ParseBytes(*memory);
    if (!bytes.ok())
      return reader.Error(pod["memory"], Field(field, "memory"), bytes.status().message());
    resources.memory_bytes = *bytes;
  }
  return resources;
}

}  // namespace

int RunningWorkload::NumPods() const {
  int pods = 0;
  for (const RunningGroup& group : groups) {
    for (const RunningInstance& instance : group.instances)
      pods += static_cast<int>(instance.pods.size());
  }
  return pods;
}

static absl::StatusOr<ClusterState> ParseClusterStateImpl(absl::string_view text,
                                                          absl::string_view filename,
                                                          const Cluster& cluster) {
  YamlReader reader(filename);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node root, reader.Load(text));
  TANDEM_RETURN_IF_ERROR(reader.CheckKeys(root, "", {"apiVersion", "kind", "workloads"}));
  TANDEM_ASSIGN_OR_RETURN(auto kind, reader.String(root, "kind", ""));
  if (kind && *kind != "ClusterState") {
    return reader.Error(root["kind"], "kind", absl::StrCat("'", *kind, "'; expected ClusterState"));
  }
  ClusterState state;
  YAML::Node workloads = root["workloads"];
  if (!workloads.IsDefined() || workloads.IsNull()) return state;
  if (!workloads.IsSequence()) return reader.Error(workloads, "workloads", "expected a list");
  std::set<std::string> workload_names, pod_names;
  for (size_t w = 0; w < workloads.size(); ++w) {
    const YAML::Node& item = workloads[w];
    std::string field = absl::StrCat("workloads[", w, "]");
    TANDEM_RETURN_IF_ERROR(
        reader.CheckKeys(item, field, {"name", "priority", "disruptionBudget", "groups"}));
    RunningWorkload workload;
    TANDEM_ASSIGN_OR_RETURN(auto name, reader.String(item, "name", field));
    if (!name || name->empty()) return reader.Error(item, Field(field, "name"), "missing");
    if (!workload_names.insert(*name).second) {
      return reader.Error(item, Field(field, "name"),
                          absl::StrCat("'", *name, "' is listed twice"));
    }
    workload.name = *name;
    TANDEM_ASSIGN_OR_RETURN(auto priority, reader.Int(item, "priority", field));
    workload.priority = static_cast<int>(priority.value_or(0));
    YAML::Node budget = item["disruptionBudget"];
    if (budget.IsDefined() && !budget.IsNull()) {
      std::string budget_field = Field(field, "disruptionBudget");
      if (budget.IsScalar() && budget.Scalar() == "none") {
        workload.max_disrupted_pods = 0;
      } else if (budget.IsMap()) {
        TANDEM_RETURN_IF_ERROR(reader.CheckKeys(budget, budget_field, {"maxPods"}));
        TANDEM_ASSIGN_OR_RETURN(auto max_pods, reader.Int(budget, "maxPods", budget_field));
        if (!max_pods || *max_pods < 0) {
          return reader.Error(budget, Field(budget_field, "maxPods"), "expected a number >= 0");
        }
        workload.max_disrupted_pods = static_cast<int>(*max_pods);
      } else {
        return reader.Error(budget, budget_field, "expected `none` or {maxPods: N}");
      }
    }
    YAML::Node groups = item["groups"];
    if (!groups.IsSequence() || groups.size() == 0) {
      return reader.Error(groups.IsDefined() ? groups : item, Field(field, "groups"),
                          "expected a non-empty list of groups");
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      const YAML::Node& group_node = groups[g];
      std::string group_field = absl::StrCat(field, ".groups[", g, "]");
      TANDEM_RETURN_IF_ERROR(
          reader.CheckKeys(group_node, group_field, {"name", "minAvailable", "instances"}));
      RunningGroup group;
      TANDEM_ASSIGN_OR_RETURN(auto group_name, reader.String(group_node, "name", group_field));
      group.name = group_name.value_or(absl::StrCat("group-", g));
      YAML::Node instances = group_node["instances"];
      if (!instances.IsSequence()) {
        return reader.Error(group_node, Field(group_field, "instances"), "expected a list");
      }
      TANDEM_ASSIGN_OR_RETURN(auto min_available,
                              reader.Int(group_node, "minAvailable", group_field));
      if (min_available &&
          (*min_available < 0 || *min_available > static_cast<int64_t>(instances.size()))) {
        return reader.Error(group_node["minAvailable"], Field(group_field, "minAvailable"),
                            absl::StrCat(*min_available, " is out of range; expected 0..",
                                         instances.size(), " (the group's instances)"));
      }
      group.min_available = static_cast<int>(min_available.value_or(instances.size()));
      for (size_t i = 0; i < instances.size(); ++i) {
        const YAML::Node& instance_node = instances[i];
        std::string instance_field = absl::StrCat(group_field, ".instances[", i, "]");
        TANDEM_RETURN_IF_ERROR(reader.CheckKeys(instance_node, instance_field, {"name", "pods"}));
        RunningInstance instance;
        TANDEM_ASSIGN_OR_RETURN(auto instance_name,
                                reader.String(instance_node, "name", instance_field));
        instance.name = instance_name.value_or(absl::StrCat(group.name, "-", i));
        YAML::Node pods = instance_node["pods"];
        if (!pods.IsSequence() || pods.size() == 0) {
          return reader.Error(instance_node, Field(instance_field, "pods"),
                              "expected a non-empty list");
        }
        for (size_t p = 0; p < pods.size(); ++p) {
          const YAML::Node& pod_node = pods[p];
          std::string pod_field = absl::StrCat(instance_field, ".pods[", p, "]");
          TANDEM_RETURN_IF_ERROR(
              reader.CheckKeys(pod_node, pod_field, {"name", "node", "gpu", "cpu", "memory"}));
          RunningPod pod;
          TANDEM_ASSIGN_OR_RETURN(auto pod_name, reader.String(pod_node, "name", pod_field));
          if (!pod_name) return reader.Error(pod_node, Field(pod_field, "name"), "missing");
          if (!pod_names.insert(absl::StrCat(workload.name, "/", *pod_name)).second) {
            return reader.Error(pod_node, Field(pod_field, "name"),
                                absl::StrCat("pod '", *pod_name, "' is listed twice"));
          }
          pod.name = *pod_name;
          TANDEM_ASSIGN_OR_RETURN(auto node_name, reader.String(pod_node, "node", pod_field));
          if (!node_name) return reader.Error(pod_node, Field(pod_field, "node"), "missing");
          pod.node = cluster.FindNode(*node_name);
          if (pod.node < 0) {
            return reader.Error(pod_node["node"], Field(pod_field, "node"),
                                absl::StrCat("'", *node_name, "' is not a node of the cluster"));
          }
          TANDEM_ASSIGN_OR_RETURN(pod.resources, ParsePodResources(reader, pod_node, pod_field));
          instance.pods.push_back(std::move(pod));
        }
        group.instances.push_back(std::move(instance));
      }
      workload.groups.push_back(std::move(group));
    }
    state.workloads.push_back(std::move(workload));
  }
  return state;
}

absl::StatusOr<ClusterState> ParseClusterState(absl::string_view text, absl::string_view filename,
                                               const Cluster& cluster) {
  return internal::GuardParse(filename,
                              [&] { return ParseClusterStateImpl(text, filename, cluster); });
}

}  // namespace tandem::sched
