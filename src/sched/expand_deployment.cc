#include "sched/expand_deployment.h"

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "sched/internal/yaml_util.h"

namespace tandem::sched {
namespace {

LevelRef Ref(const std::string& level, const deploy::DeploymentSpec& spec, int line,
             absl::string_view field) {
  if (level.empty()) return {};
  return {level, false, -1, absl::StrCat(spec.filename, ":", line, ": ", field)};
}

absl::StatusOr<Resources> PodResources(const deploy::Role& role,
                                       const deploy::DeploymentSpec& spec) {
  Resources resources;
  resources.gpus = role.resources.gpu > 0
                       ? role.resources.gpu
                       : role.gpus_per_instance / std::max(1, role.nodes_per_instance);
  auto where = [&](absl::string_view field) {
    return absl::StrCat(spec.filename, ":", role.line, ": roles.", role.name, ".resources.", field);
  };
  if (!role.resources.cpu.empty()) {
    absl::StatusOr<int64_t> millis = ParseCpuMillis(role.resources.cpu);
    if (!millis.ok()) return Annotate(millis.status(), where("cpu"));
    resources.cpu_millis = *millis;
  }
  if (!role.resources.memory.empty()) {
    absl::StatusOr<int64_t> bytes = ParseBytes(role.resources.memory);
    if (!bytes.ok()) return Annotate(bytes.status(), where("memory"));
    resources.memory_bytes = *bytes;
  }
  return resources;
}

// Adds role `role` under `parent`: a gang of its instances, each a leaf of nodesPerInstance pods.
absl::Status AddRole(PlacementRequest& request, int parent, const deploy::Role& role,
                     const deploy::DeploymentSpec& spec, const std::string& instance_prefix) {
  TANDEM_ASSIGN_OR_RETURN(Resources resources, PodResources(role, spec));
  int role_gang = AddGang(request, parent, role.name);
  request.gangs[role_gang].where = absl::StrCat(spec.filename, ":", role.line);
  request.gangs[role_gang].min_children = role.min_available;
  for (int i = 0; i < role.replicas; ++i) {
    int instance = AddGang(request, role_gang, absl::StrCat(instance_prefix, role.name, "-", i));
    Gang& gang = request.gangs[instance];
    gang.where = request.gangs[role_gang].where;
    gang.leaf = true;
    gang.min_pods = role.nodes_per_instance;
    gang.pod_resources = resources;
    gang.required = Ref(role.topology.required, spec, role.line,
                        absl::StrCat("roles.", role.name, ".topology.packRequired"));
    gang.preferred = Ref(role.topology.preferred, spec, role.line,
                         absl::StrCat("roles.", role.name, ".topology.packPreferred"));
    for (int k = 0; k < role.nodes_per_instance; ++k) {
      gang.pod_names.push_back(role.nodes_per_instance == 1 ? gang.name
                                                            : absl::StrCat(gang.name, "-", k));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<PlacementRequest> ExpandDeploymentSpec(const deploy::DeploymentSpec& spec,
                                                      int priority) {
  PlacementRequest request;
  request.name = spec.name;
  request.priority = priority;
  request.filename = spec.filename;
  AddGang(request, -1, spec.name);
  request.gangs[0].where = spec.filename;
  request.gangs[0].required = Ref(spec.topology.required, spec, 1, "topology.packRequired");
  request.gangs[0].preferred = Ref(spec.topology.preferred, spec, 1, "topology.packPreferred");
  for (const deploy::Role& role : spec.roles) {
    if (!role.scaling_group.empty()) continue;
    TANDEM_RETURN_IF_ERROR(AddRole(request, 0, role, spec, ""));
  }
  for (const deploy::ScalingGroup& group : spec.scaling_groups) {
    int group_gang = AddGang(request, 0, group.name);
    request.gangs[group_gang].where = absl::StrCat(spec.filename, ":", group.line);
    request.gangs[group_gang].min_children = group.min_available;
    for (int r = 0; r < group.replicas; ++r) {
      std::string replica_name = absl::StrCat(group.name, "-", r);
      int replica = AddGang(request, group_gang, replica_name);
      Gang& gang = request.gangs[replica];
      gang.where = request.gangs[group_gang].where;
      std::string field = absl::StrCat("scalingGroups.", group.name, ".topology");
      gang.required = Ref(group.topology.required, spec, group.line, field + ".packRequired");
      gang.preferred = Ref(group.topology.preferred, spec, group.line, field + ".packPreferred");
      for (const std::string& member : group.roles) {
        const deploy::Role* role = spec.FindRole(member);
        if (role == nullptr) {
          return absl::InvalidArgumentError(
              absl::StrCat(spec.filename, ":", group.line, ": scaling group '", group.name,
                           "' names role '", member, "', which the spec does not define"));
        }
        TANDEM_RETURN_IF_ERROR(AddRole(request, replica, *role, spec, replica_name + "-"));
      }
      request.gangs[replica].min_children =
          static_cast<int>(request.gangs[replica].children.size());
    }
  }
  request.gangs[0].min_children = static_cast<int>(request.gangs[0].children.size());
  return request;
}

absl::StatusOr<PlacementRequest> ParseAnyRequest(absl::string_view text, absl::string_view filename,
                                                 const Resources& podgang_pod, int spec_priority) {
  internal::YamlReader reader(filename);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node root, reader.Load(text));
  TANDEM_ASSIGN_OR_RETURN(auto kind, reader.String(root, "kind", ""));
  if (kind && *kind == "PodGang") return ParsePodGang(text, filename, podgang_pod);
  if (kind) return ParsePlacementRequest(text, filename);
  absl::StatusOr<deploy::DeploymentSpec> spec =
      deploy::ParseSpec(std::string(text), std::string(filename));
  if (!spec.ok()) return spec.status();
  return ExpandDeploymentSpec(*spec, spec_priority);
}

}  // namespace tandem::sched
