#include "sched/gang.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "core/status.h"
#include "sched/internal/yaml_util.h"

namespace tandem::sched {
namespace {

// Bounds what one request may expand to, so a typo (replicas: 1000000 nested twice) is an error
// rather than an hour of work.
constexpr size_t kMaxGangs = 200'000;
constexpr int kMaxPods = 1'000'000;

using internal::Field;
using internal::YamlReader;

std::string Where(const YamlReader& reader, const YAML::Node& node, absl::string_view field) {
  int line = reader.Line(node);
  std::string where = line > 0 ? absl::StrCat(reader.filename(), ":", line) : reader.filename();
  return field.empty() ? where : absl::StrCat(where, ": ", field);
}

absl::StatusOr<Resources> ParseResources(const YamlReader& reader, const YAML::Node& node,
                                         absl::string_view field) {
  Resources resources;
  if (!node.IsDefined() || node.IsNull()) return resources;
  TANDEM_RETURN_IF_ERROR(reader.CheckKeys(node, field, {"gpu", "cpu", "memory"}));
  TANDEM_ASSIGN_OR_RETURN(auto gpu, reader.Int(node, "gpu", field));
  if (gpu && (*gpu < 0 || *gpu > 1'000'000)) {
    return reader.Error(node["gpu"], Field(field, "gpu"),
                        absl::StrCat(*gpu, " is out of range; expected 0..1000000 GPUs per pod"));
  }
  resources.gpus = gpu.value_or(0);
  TANDEM_ASSIGN_OR_RETURN(auto cpu, reader.String(node, "cpu", field));
  if (cpu) {
    absl::StatusOr<int64_t> millis = ParseCpuMillis(*cpu);
    if (!millis.ok())
      return reader.Error(node["cpu"], Field(field, "cpu"), millis.status().message());
    resources.cpu_millis = *millis;
  }
  TANDEM_ASSIGN_OR_RETURN(auto memory, reader.String(node, "memory", field));
  if (memory) {
    absl::StatusOr<int64_t> bytes = ParseBytes(*memory);
    if (!bytes.ok()) {
      return reader.Error(node["memory"], Field(field, "memory"), bytes.status().message());
    }
    resources.memory_bytes = *bytes;
  }
  return resources;
}

absl::Status ParsePack(const YamlReader& reader, const YAML::Node& node, absl::string_view field,
                       Gang& gang) {
  if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(reader.CheckKeys(node, field, {"packRequired", "packPreferred"}));
  TANDEM_ASSIGN_OR_RETURN(auto required, reader.String(node, "packRequired", field));
  TANDEM_ASSIGN_OR_RETURN(auto preferred, reader.String(node, "packPreferred", field));
  if (required) {
    gang.required = {*required, false, -1,
                     Where(reader, node["packRequired"], Field(field, "packRequired"))};
  }
  if (preferred) {
    gang.preferred = {*preferred, false, -1,
                      Where(reader, node["packPreferred"], Field(field, "packPreferred"))};
  }
  return absl::OkStatus();
}

absl::Status ParseRelations(const YamlReader& reader, const YAML::Node& list,
                            absl::string_view field, Gang& gang) {
  if (!list.IsDefined() || list.IsNull()) return absl::OkStatus();
  if (!list.IsSequence()) return reader.Error(list, field, "expected a list of relations");
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& item = list[i];
    std::string item_field = absl::StrCat(field, "[", i, "]");
    TANDEM_RETURN_IF_ERROR(
        reader.CheckKeys(item, item_field, {"sameDomainAs", "spreadFrom", "level", "required"}));
    TANDEM_ASSIGN_OR_RETURN(auto same, reader.String(item, "sameDomainAs", item_field));
    TANDEM_ASSIGN_OR_RETURN(auto spread, reader.String(item, "spreadFrom", item_field));
    TANDEM_ASSIGN_OR_RETURN(auto level, reader.String(item, "level", item_field));
    TANDEM_ASSIGN_OR_RETURN(auto required, reader.Bool(item, "required", item_field));
    if (same.has_value() == spread.has_value()) {
      return reader.Error(item, item_field, "expected exactly one of sameDomainAs or spreadFrom");
    }
    if (!level)
      return reader.Error(item, Field(item_field, "level"), "missing; name a topology level");
    Relation relation;
    relation.kind = same ? RelationKind::kSameDomain : RelationKind::kSpread;
    relation.target = same ? *same : *spread;
    relation.level = {*level, false, -1, Where(reader, item["level"], Field(item_field, "level"))};
    relation.required = required.value_or(false);
    gang.relations.push_back(std::move(relation));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> ParseCount(const YamlReader& reader, const YAML::Node& map,
                               absl::string_view key, absl::string_view field, int64_t low,
                               int64_t fallback) {
  TANDEM_ASSIGN_OR_RETURN(auto value, reader.Int(map, key, field));
  if (!value) return static_cast<int>(fallback);
  if (*value < low || *value > 1'000'000) {
    return reader.Error(map[std::string(key)], Field(field, key),
                        absl::StrCat(*value, " is out of range; expected ", low, "..1000000"));
  }
  return static_cast<int>(*value);
}

void FillLeaf(Gang& gang, int pods, int min_pods, const Resources& resources) {
  gang.leaf = true;
  gang.min_pods = min_pods;
  gang.pod_resources = resources;
  for (int k = 0; k < pods; ++k) {
    gang.pod_names.push_back(pods == 1 ? gang.name : absl::StrCat(gang.name, "-", k));
  }
}

absl::Status ParseRoles(const YamlReader& reader, const YAML::Node& roles,
                        PlacementRequest& request) {
  if (!roles.IsMap() || roles.size() == 0) {
    return reader.Error(roles, "roles", "expected a mapping of role name to role");
  }
  Gang& root = request.gangs[0];
  root.min_children = static_cast<int>(roles.size());
  int64_t total_pods = 0;
  for (const auto& entry : roles) {
    const std::string name = entry.first.Scalar();
    const YAML::Node& role = entry.second;
    std::string field = Field("roles", name);
    TANDEM_RETURN_IF_ERROR(
        reader.CheckKeys(role, field,
                         {"replicas", "minAvailable", "podsPerInstance", "resources", "topology",
                          "roleTopology", "relations"}));
    TANDEM_ASSIGN_OR_RETURN(int replicas, ParseCount(reader, role, "replicas", field, 0, 1));
    TANDEM_ASSIGN_OR_RETURN(int min_available,
                            ParseCount(reader, role, "minAvailable", field, 0, replicas));
    if (min_available > replicas) {
      return reader.Error(role["minAvailable"], Field(field, "minAvailable"),
                          absl::StrCat(min_available, " is more than replicas (", replicas,
                                       "); expected 0..replicas"));
    }
    TANDEM_ASSIGN_OR_RETURN(int pods, ParseCount(reader, role, "podsPerInstance", field, 1, 1));
    TANDEM_ASSIGN_OR_RETURN(Resources resources,
                            ParseResources(reader, role["resources"], Field(field, "resources")));
    int role_index = AddGang(request, 0, name);
    Gang& role_gang = request.gangs[role_index];  // valid until the next AddGang
    role_gang.where = Where(reader, entry.first, "");
    role_gang.min_children = min_available;
    TANDEM_RETURN_IF_ERROR(
        ParsePack(reader, role["roleTopology"], Field(field, "roleTopology"), role_gang));
    TANDEM_RETURN_IF_ERROR(
        ParseRelations(reader, role["relations"], Field(field, "relations"), role_gang));
    Gang instance_template;
    TANDEM_RETURN_IF_ERROR(
        ParsePack(reader, role["topology"], Field(field, "topology"), instance_template));
    if (request.gangs.size() + replicas > kMaxGangs ||
        total_pods + static_cast<int64_t>(replicas) * pods > kMaxPods) {
      return reader.Error(role, field,
                          absl::StrCat("the request grows past ", kMaxGangs, " gangs or ", kMaxPods,
                                       " pods; split it"));
    }
    total_pods += static_cast<int64_t>(replicas) * pods;
    for (int i = 0; i < replicas; ++i) {
      int index = AddGang(request, role_index, absl::StrCat(name, "-", i));
      Gang& instance = request.gangs[index];
      instance.where = request.gangs[role_index].where;  // AddGang may have moved role_gang
      instance.required = instance_template.required;
      instance.preferred = instance_template.preferred;
      FillLeaf(instance, pods, pods, resources);
    }
  }
  return absl::OkStatus();
}

absl::Status ParseGangTree(const YamlReader& reader, const YAML::Node& node,
                           absl::string_view field, PlacementRequest& request, int index, int depth,
                           int64_t& total_pods) {
  if (depth > 16) return reader.Error(node, field, "gang tree is deeper than 16 levels");
  TANDEM_RETURN_IF_ERROR(reader.CheckKeys(node, field,
                                          {"name", "replicas", "minAvailable", "topology",
                                           "relations", "children", "pods", "resources"}));
  request.gangs[index].where = Where(reader, node, "");
  TANDEM_RETURN_IF_ERROR(
      ParsePack(reader, node["topology"], Field(field, "topology"), request.gangs[index]));
  TANDEM_RETURN_IF_ERROR(
      ParseRelations(reader, node["relations"], Field(field, "relations"), request.gangs[index]));
  YAML::Node children = node["children"];
  bool has_children = children.IsDefined() && !children.IsNull();
  bool has_pods = node["pods"].IsDefined();
  if (has_children == has_pods) {
    return reader.Error(node, field,
                        "a gang has exactly one of `children` (inner) or `pods` (leaf)");
  }
  if (has_pods) {
    TANDEM_ASSIGN_OR_RETURN(int pods, ParseCount(reader, node, "pods", field, 1, 1));
    TANDEM_ASSIGN_OR_RETURN(int min_pods, ParseCount(reader, node, "minAvailable", field, 1, pods));
    if (min_pods > pods) {
      return reader.Error(node["minAvailable"], Field(field, "minAvailable"),
                          absl::StrCat(min_pods, " is more than pods (", pods, ")"));
    }
    TANDEM_ASSIGN_OR_RETURN(Resources resources,
                            ParseResources(reader, node["resources"], Field(field, "resources")));
    total_pods += pods;
    if (total_pods > kMaxPods) {
      return reader.Error(node, field,
                          absl::StrCat("the request grows past ", kMaxPods, " pods; split it"));
    }
    // Pods are named after the gang's path below the root ("pair-0-decode-1"): unique even
    // when replicas repeat child names.
    Gang& leaf = request.gangs[index];
    std::string saved = leaf.name;
    size_t slash = leaf.path.find('/');
    if (slash != std::string::npos)
      leaf.name = absl::StrReplaceAll(leaf.path.substr(slash + 1), {{"/", "-"}});
    FillLeaf(leaf, pods, min_pods, resources);
    leaf.name = saved;
    return absl::OkStatus();
  }
  if (!children.IsSequence() || children.size() == 0) {
    return reader.Error(children, Field(field, "children"), "expected a non-empty list of gangs");
  }
  for (size_t i = 0; i < children.size(); ++i) {
    const YAML::Node& child = children[i];
    std::string child_field = absl::StrCat(field, ".children[", i, "]");
    if (!child.IsMap()) return reader.Error(child, child_field, "expected a gang");
    TANDEM_ASSIGN_OR_RETURN(auto name, reader.String(child, "name", child_field));
    if (!name || name->empty()) return reader.Error(child, Field(child_field, "name"), "missing");
    TANDEM_ASSIGN_OR_RETURN(int replicas, ParseCount(reader, child, "replicas", child_field, 1, 1));
    TANDEM_ASSIGN_OR_RETURN(auto has_replicas, reader.Int(child, "replicas", child_field));
    for (int r = 0; r < replicas; ++r) {
      if (request.gangs.size() >= kMaxGangs) {
        return reader.Error(child, child_field,
                            absl::StrCat("the request grows past ", kMaxGangs, " gangs; split it"));
      }
      int child_index = AddGang(request, index, has_replicas ? absl::StrCat(*name, "-", r) : *name);
      TANDEM_RETURN_IF_ERROR(
          ParseGangTree(reader, child, child_field, request, child_index, depth + 1, total_pods));
    }
  }
  int count = static_cast<int>(request.gangs[index].children.size());
  TANDEM_ASSIGN_OR_RETURN(int min_children,
                          ParseCount(reader, node, "minAvailable", field, 0, count));
  if (min_children > count) {
    return reader.Error(
        node["minAvailable"], Field(field, "minAvailable"),
        absl::StrCat(min_children, " is more than the gang's ", count, " children"));
  }
  request.gangs[index].min_children = min_children;
  return absl::OkStatus();
}

absl::Status ResolveLevel(const Cluster& cluster, LevelRef& ref) {
  if (ref.empty()) {
    ref.index = -1;
    return absl::OkStatus();
  }
  ref.index = ref.by_label ? cluster.LevelIndexByLabel(ref.name) : cluster.LevelIndex(ref.name);
  // host / hostname / node all mean the node level, whatever the cluster calls it.
  if (ref.index < 0 && !ref.by_label &&
      DefaultNodeLabel(ref.name) == cluster.levels().back().node_label) {
    ref.index = cluster.node_level();
  }
  if (ref.index >= 0) return absl::OkStatus();
  if (ref.by_label) {
    std::vector<std::string> labels;
    for (const Level& level : cluster.levels()) labels.push_back(level.node_label);
    return absl::InvalidArgumentError(absl::StrCat(
        ref.where, ": topology key '", ref.name,
        "' is not a level of the cluster; expected one of: ", absl::StrJoin(labels, ", ")));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(ref.where, ": unknown level '", ref.name,
                   "'; the cluster's levels are: ", cluster.LevelNames()));
}

}  // namespace

int PlacementRequest::NumPods() const {
  int pods = 0;
  for (const Gang& gang : gangs) pods += static_cast<int>(gang.pod_names.size());
  return pods;
}

int AddGang(PlacementRequest& request, int parent, std::string name) {
  Gang gang;
  gang.parent = parent;
  gang.path = parent < 0 ? name : absl::StrCat(request.gangs[parent].path, "/", name);
  gang.name = std::move(name);
  int index = static_cast<int>(request.gangs.size());
  request.gangs.push_back(std::move(gang));
  if (parent >= 0) request.gangs[parent].children.push_back(index);
  return index;
}

static absl::StatusOr<PlacementRequest> ParsePlacementRequestImpl(absl::string_view text,
                                                                  absl::string_view filename) {
  YamlReader reader(filename);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node root, reader.Load(text));
  TANDEM_RETURN_IF_ERROR(reader.CheckKeys(
      root, "", {"apiVersion", "kind", "name", "priority", "topology", "roles", "gang"}));
  TANDEM_ASSIGN_OR_RETURN(auto kind, reader.String(root, "kind", ""));
  if (kind && *kind != "PlacementRequest") {
    return reader.Error(root["kind"], "kind",
                        absl::StrCat("'", *kind, "'; expected PlacementRequest"));
  }
  TANDEM_ASSIGN_OR_RETURN(auto name, reader.String(root, "name", ""));
  if (!name || name->empty())
    return reader.Error(root, "name", "missing; the request needs a name");
  TANDEM_ASSIGN_OR_RETURN(auto priority, reader.Int(root, "priority", ""));
  if (priority && (*priority < -1'000'000'000 || *priority > 1'000'000'000)) {
    return reader.Error(root["priority"], "priority", "out of range; expected -1e9..1e9");
  }
  PlacementRequest request;
  request.name = *name;
  request.priority = static_cast<int>(priority.value_or(0));
  request.filename = std::string(filename);
  AddGang(request, -1, *name);
  request.gangs[0].where = Where(reader, root, "");
  TANDEM_RETURN_IF_ERROR(ParsePack(reader, root["topology"], "topology", request.gangs[0]));
  bool has_roles = root["roles"].IsDefined(), has_gang = root["gang"].IsDefined();
  if (has_roles == has_gang) {
    return reader.Error(root, "", "expected exactly one of `roles` or `gang`");
  }
  if (has_roles) {
    TANDEM_RETURN_IF_ERROR(ParseRoles(reader, root["roles"], request));
  } else {
    YAML::Node gang = root["gang"];
    if (!gang.IsMap()) return reader.Error(gang, "gang", "expected a gang");
    int64_t total_pods = 0;
    TANDEM_RETURN_IF_ERROR(ParseGangTree(reader, gang, "gang", request, 0, 0, total_pods));
    if (!request.gangs[0].relations.empty()) {
      return reader.Error(gang["relations"], "gang.relations", "the root gang has no siblings");
    }
  }
  return request;
}

static absl::StatusOr<PlacementRequest> ParsePodGangImpl(absl::string_view text,
                                                         absl::string_view filename,
                                                         const Resources& default_pod) {
  YamlReader reader(filename);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node root, reader.Load(text));
  TANDEM_ASSIGN_OR_RETURN(auto kind, reader.String(root, "kind", ""));
  if (!kind || *kind != "PodGang") {
    return reader.Error(root, "kind", "expected PodGang (scheduler.grove.io/v1alpha1)");
  }
  YAML::Node metadata = root["metadata"];
  std::optional<std::string> name;
  if (metadata.IsMap()) {
    TANDEM_ASSIGN_OR_RETURN(name, reader.String(metadata, "name", "metadata"));
  }
  if (!name || name->empty()) return reader.Error(root, "metadata.name", "missing");
  YAML::Node spec = root["spec"];
  if (!spec.IsMap()) return reader.Error(root, "spec", "missing");
  PlacementRequest request;
  request.name = *name;
  request.filename = std::string(filename);
  AddGang(request, -1, *name);
  request.gangs[0].where = Where(reader, root, "");

  auto parse_constraint = [&](const YAML::Node& holder, absl::string_view field,
                              Gang& gang) -> absl::Status {
    YAML::Node constraint = holder["topologyConstraint"];
    if (!constraint.IsDefined() || constraint.IsNull()) return absl::OkStatus();
    YAML::Node pack = constraint["packConstraint"];
    if (!pack.IsDefined() || pack.IsNull()) return absl::OkStatus();
    std::string pack_field = Field(field, "topologyConstraint.packConstraint");
    TANDEM_RETURN_IF_ERROR(reader.CheckKeys(pack, pack_field, {"required", "preferred"}));
    TANDEM_ASSIGN_OR_RETURN(auto required, reader.String(pack, "required", pack_field));
    TANDEM_ASSIGN_OR_RETURN(auto preferred, reader.String(pack, "preferred", pack_field));
    if (required) {
      gang.required = {*required, true, -1,
                       Where(reader, pack["required"], Field(pack_field, "required"))};
    }
    if (preferred) {
      gang.preferred = {*preferred, true, -1,
                        Where(reader, pack["preferred"], Field(pack_field, "preferred"))};
    }
    return absl::OkStatus();
  };
  TANDEM_RETURN_IF_ERROR(parse_constraint(spec, "spec", request.gangs[0]));

  YAML::Node groups = spec["podgroups"];
  if (!groups.IsSequence() || groups.size() == 0) {
    return reader.Error(groups.IsDefined() ? groups : spec, "spec.podgroups",
                        "expected a non-empty list of pod groups");
  }
  // Pod groups named in a topologyConstraintGroupConfig hang under a gang of their own.
  std::map<std::string, int> group_parent;
  YAML::Node configs = spec["topologyConstraintGroupConfigs"];
  std::vector<std::pair<int, YAML::Node>> config_gangs;
  if (configs.IsDefined() && !configs.IsNull()) {
    if (!configs.IsSequence()) {
      return reader.Error(configs, "spec.topologyConstraintGroupConfigs", "expected a list");
    }
    for (size_t i = 0; i < configs.size(); ++i) {
      const YAML::Node& config = configs[i];
      std::string field = absl::StrCat("spec.topologyConstraintGroupConfigs[", i, "]");
      TANDEM_ASSIGN_OR_RETURN(auto config_name, reader.String(config, "name", field));
      if (!config_name || config_name->empty())
        return reader.Error(config, Field(field, "name"), "missing");
      int index = AddGang(request, 0, *config_name);
      request.gangs[index].where = Where(reader, config, "");
      TANDEM_RETURN_IF_ERROR(parse_constraint(config, field, request.gangs[index]));
      YAML::Node names = config["podGroupNames"];
      if (!names.IsSequence())
        return reader.Error(config, Field(field, "podGroupNames"), "expected a list");
      for (size_t k = 0; k < names.size(); ++k) {
        if (!group_parent.emplace(names[k].Scalar(), index).second) {
          return reader.Error(names[k], absl::StrCat(field, ".podGroupNames[", k, "]"),
                              absl::StrCat("pod group '", names[k].Scalar(),
                                           "' is already in another constraint group"));
        }
      }
    }
  }
  std::set<std::string> seen_groups;
  for (size_t i = 0; i < groups.size(); ++i) {
    const YAML::Node& group = groups[i];
    std::string field = absl::StrCat("spec.podgroups[", i, "]");
    if (!group.IsMap()) return reader.Error(group, field, "expected a pod group");
    TANDEM_ASSIGN_OR_RETURN(auto group_name, reader.String(group, "name", field));
    if (!group_name || group_name->empty())
      return reader.Error(group, Field(field, "name"), "missing");
    if (!seen_groups.insert(*group_name).second) {
      return reader.Error(group, Field(field, "name"),
                          absl::StrCat("'", *group_name, "' is listed twice"));
    }
    TANDEM_ASSIGN_OR_RETURN(auto min_replicas, reader.Int(group, "minReplicas", field));
    if (!min_replicas) return reader.Error(group, Field(field, "minReplicas"), "missing");
    YAML::Node refs = group["podReferences"];
    if (!refs.IsSequence())
      return reader.Error(group, Field(field, "podReferences"), "expected a list");
    if (*min_replicas < 0 || *min_replicas > static_cast<int64_t>(refs.size())) {
      return reader.Error(group["minReplicas"], Field(field, "minReplicas"),
                          absl::StrCat(*min_replicas, " is out of range; the group references ",
                                       refs.size(), " pods"));
    }
    auto parent = group_parent.find(*group_name);
    int parent_index = parent == group_parent.end() ? 0 : parent->second;
    int index = AddGang(request, parent_index, *group_name);
    Gang& gang = request.gangs[index];
    gang.where = Where(reader, group, "");
    gang.leaf = true;
    gang.min_pods = static_cast<int>(*min_replicas);
    gang.pod_resources = default_pod;
    for (size_t k = 0; k < refs.size(); ++k) {
      std::string ref_field = absl::StrCat(field, ".podReferences[", k, "]");
      TANDEM_ASSIGN_OR_RETURN(auto pod_name, reader.String(refs[k], "name", ref_field));
      if (!pod_name) return reader.Error(refs[k], Field(ref_field, "name"), "missing");
      gang.pod_names.push_back(*pod_name);
    }
    TANDEM_RETURN_IF_ERROR(parse_constraint(group, field, request.gangs[index]));
  }
  for (auto& [group_name, parent] : group_parent) {
    if (!seen_groups.count(group_name)) {
      return reader.Error(
          configs, "spec.topologyConstraintGroupConfigs",
          absl::StrCat("names pod group '", group_name, "', which is not in spec.podgroups"));
    }
  }
  // Every gang at its minimum: the PodGang's guarantee covers each pod group's minReplicas.
  for (Gang& gang : request.gangs) {
    if (!gang.leaf) gang.min_children = static_cast<int>(gang.children.size());
  }
  return request;
}

absl::Status ResolveRequest(const Cluster& cluster, PlacementRequest& request) {
  std::set<std::string> pod_names;
  for (size_t g = 0; g < request.gangs.size(); ++g) {
    Gang& gang = request.gangs[g];
    TANDEM_RETURN_IF_ERROR(ResolveLevel(cluster, gang.required));
    TANDEM_RETURN_IF_ERROR(ResolveLevel(cluster, gang.preferred));
    if (gang.required.index >= 0 && gang.preferred.index >= 0 &&
        gang.preferred.index < gang.required.index) {
      return absl::InvalidArgumentError(
          absl::StrCat(gang.preferred.where, ": preferred level '", gang.preferred.name,
                       "' is broader than the required level '", gang.required.name,
                       "'; a preferred level must be the same or narrower"));
    }
    if (gang.leaf) {
      if (gang.min_pods > static_cast<int>(gang.pod_names.size())) {
        return absl::InvalidArgumentError(
            absl::StrCat(gang.where, ": gang '", gang.path, "' minimum exceeds its pods"));
      }
      for (const std::string& pod : gang.pod_names) {
        if (!pod_names.insert(pod).second) {
          return absl::InvalidArgumentError(
              absl::StrCat(gang.where, ": pod name '", pod, "' appears twice in the request"));
        }
      }
    } else if (gang.min_children > static_cast<int>(gang.children.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat(gang.where, ": gang '", gang.path, "' minimum exceeds its children"));
    }
    for (Relation& relation : gang.relations) {
      TANDEM_RETURN_IF_ERROR(ResolveLevel(cluster, relation.level));
      relation.target_gang = -1;
      if (gang.parent >= 0) {
        for (int sibling : request.gangs[gang.parent].children) {
          if (request.gangs[sibling].name == relation.target) relation.target_gang = sibling;
        }
      }
      if (relation.target_gang < 0 || relation.target_gang == static_cast<int>(g)) {
        return absl::InvalidArgumentError(
            absl::StrCat(relation.level.where, ": relation target '", relation.target,
                         "' is not a sibling of gang '", gang.path, "'"));
      }
    }
  }
  // Targets first: a stable topological order of each gang's children.
  for (Gang& gang : request.gangs) {
    gang.placement_order.clear();
    std::set<int> done;
    std::vector<int> pending = gang.children;
    while (!pending.empty()) {
      bool progress = false;
      for (auto it = pending.begin(); it != pending.end();) {
        bool ready = true;
        for (const Relation& relation : request.gangs[*it].relations) {
          ready = ready && done.count(relation.target_gang) > 0;
        }
        if (ready) {
          gang.placement_order.push_back(*it);
          done.insert(*it);
          it = pending.erase(it);
          progress = true;
        } else {
          ++it;
        }
      }
      if (!progress) {
        return absl::InvalidArgumentError(absl::StrCat(
            request.gangs[pending.front()].where, ": relations among the children of '", gang.path,
            "' form a cycle (", request.gangs[pending.front()].name, ")"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PlacementRequest> ParsePlacementRequest(absl::string_view text,
                                                       absl::string_view filename) {
  return internal::GuardParse(filename, [&] { return ParsePlacementRequestImpl(text, filename); });
}

absl::StatusOr<PlacementRequest> ParsePodGang(absl::string_view text, absl::string_view filename,
                                              const Resources& default_pod) {
  return internal::GuardParse(filename,
                              [&] { return ParsePodGangImpl(text, filename, default_pod); });
}

}  // namespace tandem::sched
