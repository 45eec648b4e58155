#include "deploy/render.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "core/status.h"
#include "deploy/command_line.h"
#include "deploy/internal/yaml_writer.h"

namespace tandem::deploy {

absl::StatusOr<RenderTarget> ParseRenderTarget(std::string_view name) {
  if (name == "grove") return RenderTarget::kGrove;
  if (name == "lws") return RenderTarget::kLws;
  if (name == "k8s") return RenderTarget::kKubernetes;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown render target '", std::string(name), "'; allowed: grove, lws, k8s"));
}

const char* RenderTargetName(RenderTarget target) {
  switch (target) {
    case RenderTarget::kGrove:
      return "grove";
    case RenderTarget::kLws:
      return "lws";
    case RenderTarget::kKubernetes:
      return "k8s";
  }
  return "k8s";
}

namespace {

// Engine roles load the weights; the router reads the model's tokenizer and chat template.
bool UsesModel(RoleKind kind) { return IsEngineKind(kind) || kind == RoleKind::kRouter; }

using Json = nlohmann::ordered_json;

constexpr int kRunAsUser = 10001;
constexpr absl::string_view kGpuResource = "nvidia.com/gpu";
constexpr absl::string_view kRoleLabel = "app.kubernetes.io/component";
constexpr absl::string_view kInstanceLabel = "app.kubernetes.io/instance";
constexpr absl::string_view kLwsGroupKey = "leaderworkerset.sigs.k8s.io/group-key";
constexpr absl::string_view kKaiQueueLabel = "kai.scheduler/queue";

std::string Name(const DeploymentSpec& spec, absl::string_view suffix) {
  return absl::StrCat(spec.name, "-", suffix);
}

// Grove names children of a PodCliqueSet "<pcs>-<replica index>-<child>"; we render one replica.
std::string GroveChildName(const DeploymentSpec& spec, absl::string_view child) {
  return absl::StrCat(spec.name, "-0-", child);
}

std::string ShellQuote(absl::string_view text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "'\\''"}}), "'");
}

Json Metadata(const DeploymentSpec& spec, std::string name, const Json& labels,
              bool namespaced = true) {
  Json metadata = {{"name", std::move(name)}};
  if (namespaced && !spec.kubernetes.namespace_name.empty()) {
    metadata["namespace"] = spec.kubernetes.namespace_name;
  }
  if (!labels.is_null()) metadata["labels"] = labels;
  return metadata;
}

Json DeploymentLabels(const DeploymentSpec& spec) {
  return {{"app.kubernetes.io/name", "tandem"},
          {std::string(kInstanceLabel), spec.name},
          {"app.kubernetes.io/managed-by", "tandem-render"}};
}

Json SelectorLabels(const DeploymentSpec& spec, absl::string_view role_name) {
  return {{std::string(kInstanceLabel), spec.name}, {std::string(kRoleLabel), role_name}};
}

Json RoleLabels(const DeploymentSpec& spec, const Role& role) {
  Json labels = DeploymentLabels(spec);
  labels[std::string(kRoleLabel)] = role.name;
  labels["tandem.io/role-kind"] = RoleKindName(role.kind);
  return labels;
}

Json PodLabels(const DeploymentSpec& spec, const Role& role) {
  Json labels = RoleLabels(spec, role);
  if (!spec.kubernetes.kai_queue.empty()) {
    labels[std::string(kKaiQueueLabel)] = spec.kubernetes.kai_queue;
  }
  return labels;
}

Json PodAnnotations(const DeploymentSpec& spec, const Role& role) {
  if (spec.kubernetes.prometheus != PrometheusMode::kAnnotations) return Json();
  return {{"prometheus.io/scrape", "true"},
          {"prometheus.io/port", absl::StrCat(role.port)},
          {"prometheus.io/path", "/metrics"}};
}

const Role& Router(const DeploymentSpec& spec) { return *spec.FirstOfKind(RoleKind::kRouter); }

std::string RouterUrl(const DeploymentSpec& spec) {
  return absl::StrCat("http://", Name(spec, Router(spec).name), ":", Router(spec).port);
}

// The Service that answers for a role once one of its pods is ready: ClusterIP for the router,
// headless for engine roles; the planner has none.
bool HasService(const Role& role) { return role.kind != RoleKind::kPlanner; }

// How many pods make one unit of a role: a scaling-group replica holds role.replicas instances,
// and a multi-host instance holds nodes_per_instance pods.
int PodsPerInstance(const Role& role) { return role.nodes_per_instance; }

int TotalInstances(const DeploymentSpec& spec, const Role& role) {
  const ScalingGroup* group =
      role.scaling_group.empty() ? nullptr : spec.FindScalingGroup(role.scaling_group);
  return group == nullptr ? role.replicas : role.replicas * group->replicas;
}

int MinAvailableInstances(const DeploymentSpec& spec, const Role& role) {
  const ScalingGroup* group =
      role.scaling_group.empty() ? nullptr : spec.FindScalingGroup(role.scaling_group);
  return group == nullptr ? role.min_available : role.min_available * group->min_available;
}

Json HpaMetrics(const Autoscaling& autoscaling) {
  if (!autoscaling.metric_name.empty()) {
    return Json::array(
        {{{"type", "Pods"},
          {"pods",
           {{"metric", {{"name", autoscaling.metric_name}}},
            {"target",
             {{"type", "AverageValue"}, {"averageValue", autoscaling.metric_average_value}}}}}}});
  }
  return Json::array({{{"type", "Resource"},
                       {"resource",
                        {{"name", "cpu"},
                         {"target",
                          {{"type", "Utilization"},
                           {"averageUtilization", autoscaling.cpu_utilization.value_or(80)}}}}}}});
}

bool HpaControlled(const std::optional<Autoscaling>& autoscaling) {
  return autoscaling && autoscaling->controller == ScalingController::kHpa;
}

bool PlannerControlled(const std::optional<Autoscaling>& autoscaling) {
  return autoscaling && autoscaling->controller == ScalingController::kPlanner;
}

Json PackJson(const DeploymentSpec& spec, const PackConstraint& pack) {
  Json constraint = {{"topologyName", spec.name}};
  Json inner = Json::object();
  if (!pack.required.empty()) inner["required"] = pack.required;
  if (!pack.preferred.empty()) inner["preferred"] = pack.preferred;
  constraint["pack"] = inner;
  return constraint;
}

// How one pod's container is started and what it learns about its TP group.
struct PodShape {
  std::string node_rank = "0";
  std::string leader;
  bool shell = false;                  // run through bash so node_rank/leader may use $((...))
  std::vector<Json> extra_env;         // e.g. POD_INDEX for StatefulSets
  Json affinity;                       // null = none
  bool wait_for_dependencies = false;  // init containers emulating startsAfter (lws, k8s)
};

class Renderer {
 public:
  Renderer(const DeploymentSpec& spec, RenderTarget target) : spec_(spec), target_(target) {}

  absl::StatusOr<std::vector<Json>> Render();

 private:
  absl::Status CheckExpressible();
  void AddClusterObjects();
  void AddPlannerRbac();
  void AddServices();
  void AddDisruptionBudgets();
  void AddGrove();
  void AddLwsAndKubernetesWorkloads();
  void AddHpa(const Role& role, const Json& target_ref, int per_unit);
  void AddPodMonitor();

  Json Container(const Role& role, const PodShape& shape) const;
  Json WaitContainers(const Role& role) const;
  Json PodSpec(const Role& role, const PodShape& shape) const;
  Json PodTemplate(const Role& role, const PodShape& shape, Json extra_labels = Json()) const;
  Json AffinityFor(const Role& role, const Json& tp_group_term_keys) const;

  const DeploymentSpec& spec_;
  RenderTarget target_;
  std::vector<Json> objects_;
};

absl::Status Renderer::CheckExpressible() {
  for (const Role& role : spec_.roles) {
    const std::string path = absl::StrCat("roles.", role.name);
    if (target_ != RenderTarget::kGrove && HpaControlled(role.autoscaling) && role.MultiHost() &&
        target_ == RenderTarget::kKubernetes) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec_.filename, ":", role.line, ": ", path,
          ".autoscaling: a HorizontalPodAutoscaler on a StatefulSet adds single pods, not whole "
          "multi-host TP groups; allowed: --target lws or grove, or controller: planner"));
    }
    if (target_ == RenderTarget::kGrove && role.MultiHost() && !role.scaling_group.empty() &&
        !role.topology.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec_.filename, ":", role.line, ": ", path,
          ".topology: Grove packs a multi-host role inside a scaling group with the group's "
          "constraint; allowed: move the constraint to scaling group '",
          role.scaling_group, "'"));
    }
  }
  for (const ScalingGroup& group : spec_.scaling_groups) {
    if (target_ != RenderTarget::kGrove && HpaControlled(group.autoscaling)) {
      return absl::InvalidArgumentError(absl::StrCat(
          spec_.filename, ":", group.line, ": scaling group '", group.name,
          "'.autoscaling: a HorizontalPodAutoscaler scales one object, not a group of roles "
          "together; allowed: --target grove, or controller: planner"));
    }
  }
  // Pod host names must stay DNS labels: "<pcs>-0-<group>-<i>-<clique>-<j>" on Grove.
  if (target_ == RenderTarget::kGrove) {
    for (const Role& role : spec_.roles) {
      std::string group =
          role.scaling_group.empty() && role.MultiHost() ? role.name : role.scaling_group;
      std::string clique = role.MultiHost() ? absl::StrCat(role.name, "-worker") : role.name;
      std::string pod = group.empty()
                            ? absl::StrCat(GroveChildName(spec_, clique), "-", role.replicas)
                            : absl::StrCat(GroveChildName(spec_, group), "-99-", clique, "-",
                                           std::max(role.replicas, role.nodes_per_instance));
      if (pod.size() > 63) {
        return absl::InvalidArgumentError(
            absl::StrCat(spec_.filename, ":", role.line, ": roles.", role.name,
                         ": Grove pod names such as '", pod,
                         "' would exceed 63 characters; allowed: shorter deployment, group or role "
                         "names"));
      }
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<Json>> Renderer::Render() {
  TANDEM_RETURN_IF_ERROR(CheckExpressible());
  AddClusterObjects();
  AddPlannerRbac();
  AddServices();
  AddDisruptionBudgets();
  if (target_ == RenderTarget::kGrove) {
    AddGrove();
  } else {
    AddLwsAndKubernetesWorkloads();
  }
  AddPodMonitor();
  return std::move(objects_);
}

void Renderer::AddClusterObjects() {
  if (target_ == RenderTarget::kGrove && !spec_.levels.empty()) {
    Json levels = Json::array();
    for (const TopologyLevel& level : spec_.levels) {
      levels.push_back({{"domain", level.name}, {"key", level.node_label}});
    }
    objects_.push_back({{"apiVersion", "grove.io/v1alpha1"},
                        {"kind", "ClusterTopologyBinding"},
                        {"metadata", Metadata(spec_, spec_.name, DeploymentLabels(spec_), false)},
                        {"spec", {{"levels", levels}}}});
  }
  if (spec_.kubernetes.kai_create_queue) {
    int gpus = 0;
    for (const Role& role : spec_.roles) {
      gpus += TotalInstances(spec_, role) * role.gpus_per_instance;
    }
    // Deserved GPUs = what the deployment runs at its configured size; growth beyond is
    // over-quota, shared by weight. CPU and memory are not capped (-1).
    Json unlimited = {{"quota", -1}, {"limit", -1}, {"overQuotaWeight", 1}};
    Json queue_spec = Json::object();
    if (!spec_.kubernetes.kai_parent_queue.empty()) {
      queue_spec["parentQueue"] = spec_.kubernetes.kai_parent_queue;
    }
    queue_spec["resources"] = {{"cpu", unlimited},
                               {"gpu", {{"quota", gpus}, {"limit", -1}, {"overQuotaWeight", 1}}},
                               {"memory", unlimited}};
    objects_.push_back(
        {{"apiVersion", "scheduling.run.ai/v2"},
         {"kind", "Queue"},
         {"metadata", Metadata(spec_, spec_.kubernetes.kai_queue, DeploymentLabels(spec_), false)},
         {"spec", queue_spec}});
  }
}

void Renderer::AddPlannerRbac() {
  const Role* planner = spec_.FirstOfKind(RoleKind::kPlanner);
  if (planner == nullptr) return;
  const std::string account = Name(spec_, planner->name);
  Json labels = RoleLabels(spec_, *planner);
  objects_.push_back({{"apiVersion", "v1"},
                      {"kind", "ServiceAccount"},
                      {"metadata", Metadata(spec_, account, labels)},
                      {"automountServiceAccountToken", true}});
  // One rule per API group and resource, limited to the objects the planner scales.
  std::map<std::pair<std::string, std::string>, std::set<std::string>> grants;
  for (const std::string& target : KubernetesScaleTargets(spec_, target_)) {
    absl::string_view list = target;
    list = list.substr(list.find('=') + 1);
    list = list.substr(0, list.find(':'));
    for (absl::string_view item : absl::StrSplit(list, ',')) {
      item = item.substr(0, item.find('*'));
      std::vector<std::string> parts = absl::StrSplit(item, '/');
      if (parts.size() != 3) continue;
      grants[{parts[0], absl::StrCat(parts[1], "/scale")}].insert(parts[2]);
    }
  }
  Json rules = Json::array();
  for (const auto& [key, names] : grants) {
    rules.push_back({{"apiGroups", {key.first}},
                     {"resources", {key.second}},
                     {"resourceNames", Json(std::vector<std::string>(names.begin(), names.end()))},
                     {"verbs", {"get", "patch", "update"}}});
  }
  objects_.push_back({{"apiVersion", "rbac.authorization.k8s.io/v1"},
                      {"kind", "Role"},
                      {"metadata", Metadata(spec_, account, labels)},
                      {"rules", rules}});
  Json subject = {{"kind", "ServiceAccount"}, {"name", account}};
  if (!spec_.kubernetes.namespace_name.empty()) {
    subject["namespace"] = spec_.kubernetes.namespace_name;
  }
  objects_.push_back(
      {{"apiVersion", "rbac.authorization.k8s.io/v1"},
       {"kind", "RoleBinding"},
       {"metadata", Metadata(spec_, account, labels)},
       {"roleRef",
        {{"apiGroup", "rbac.authorization.k8s.io"}, {"kind", "Role"}, {"name", account}}},
       {"subjects", Json::array({subject})}});
}

void Renderer::AddServices() {
  for (const Role& role : spec_.roles) {
    if (!HasService(role)) continue;
    Json ports = Json::array(
        {{{"name", "http"}, {"port", role.port}, {"targetPort", "http"}, {"protocol", "TCP"}}});
    Json service_spec = Json::object();
    if (IsEngineKind(role.kind)) {
      ports.push_back(
          {{"name", "kv"}, {"port", kKvPort}, {"targetPort", "kv"}, {"protocol", "TCP"}});
      // Headless: DNS answers with every ready pod, so workers are addressed one by one and a
      // StatefulSet gives each pod a stable name under it.
      service_spec["clusterIP"] = "None";
      service_spec["publishNotReadyAddresses"] = false;
    } else {
      service_spec["type"] = "ClusterIP";
    }
    service_spec["selector"] = SelectorLabels(spec_, role.name);
    service_spec["ports"] = ports;
    objects_.push_back(
        {{"apiVersion", "v1"},
         {"kind", "Service"},
         {"metadata", Metadata(spec_, Name(spec_, role.name), RoleLabels(spec_, role))},
         {"spec", service_spec}});
  }
}

void Renderer::AddDisruptionBudgets() {
  for (const Role& role : spec_.roles) {
    const int min_pods = MinAvailableInstances(spec_, role) * PodsPerInstance(role);
    if (min_pods <= 0) continue;
    objects_.push_back(
        {{"apiVersion", "policy/v1"},
         {"kind", "PodDisruptionBudget"},
         {"metadata", Metadata(spec_, Name(spec_, role.name), RoleLabels(spec_, role))},
         {"spec",
          {{"minAvailable", min_pods},
           {"selector", {{"matchLabels", SelectorLabels(spec_, role.name)}}}}}});
  }
}

Json Renderer::Container(const Role& role, const PodShape& shape) const {
  InstanceContext context;
  context.listen = absl::StrCat("0.0.0.0:", role.port);
  if (IsEngineKind(role.kind)) {
    context.advertise = absl::StrCat("$(POD_IP):", role.port);
    context.kv_listen = absl::StrCat("0.0.0.0:", kKvPort);
  }
  if (role.kind != RoleKind::kRouter) context.router_url = RouterUrl(spec_);
  context.node_rank = shape.node_rank;
  context.leader = shape.leader;
  if (role.kind == RoleKind::kPlanner) {
    context.connector = "kubernetes";
    context.namespace_name = "$(POD_NAMESPACE)";
    context.scale_targets = KubernetesScaleTargets(spec_, target_);
  }
  std::vector<std::string> argv = RoleCommandLine(spec_, role, context);

  Json container = {{"name", role.name},
                    {"image", spec_.kubernetes.image},
                    {"imagePullPolicy", spec_.kubernetes.image_pull_policy}};
  if (shape.shell) {
    // Values computed by the pod ($((...)) arithmetic) are double-quoted so bash expands them;
    // everything else is single-quoted and reaches the program unchanged.
    std::vector<std::string> words;
    for (const std::string& arg : argv) {
      const bool computed =
          (arg == shape.node_rank || arg == shape.leader) && arg.find('$') != std::string::npos;
      words.push_back(computed ? absl::StrCat("\"", arg, "\"") : ShellQuote(arg));
    }
    container["command"] = {"/bin/bash", "-c"};
    container["args"] = {absl::StrCat("exec ", absl::StrJoin(words, " "))};
  } else {
    container["command"] = {argv.front()};
    container["args"] = Json(std::vector<std::string>(argv.begin() + 1, argv.end()));
  }
  Json ports = Json::array({{{"name", "http"}, {"containerPort", role.port}, {"protocol", "TCP"}}});
  if (IsEngineKind(role.kind)) {
    ports.push_back({{"name", "kv"}, {"containerPort", kKvPort}, {"protocol", "TCP"}});
  }
  container["ports"] = ports;
  Json env = Json::array();
  auto field_env = [&env](std::string name, std::string path) {
    env.push_back(
        {{"name", std::move(name)}, {"valueFrom", {{"fieldRef", {{"fieldPath", path}}}}}});
  };
  field_env("POD_IP", "status.podIP");
  field_env("POD_NAME", "metadata.name");
  field_env("POD_NAMESPACE", "metadata.namespace");
  for (const Json& extra : shape.extra_env) env.push_back(extra);
  for (const auto& [name, value] : role.env) env.push_back({{"name", name}, {"value", value}});
  container["env"] = env;

  Json requests = Json::object();
  Json limits = Json::object();
  if (!role.resources.cpu.empty()) requests["cpu"] = role.resources.cpu;
  if (!role.resources.memory.empty()) {
    requests["memory"] = role.resources.memory;
    limits["memory"] = role.resources.memory;
  }
  if (role.resources.gpu > 0) {
    requests[std::string(kGpuResource)] = role.resources.gpu;
    limits[std::string(kGpuResource)] = role.resources.gpu;
  }
  Json resources = Json::object();
  if (!requests.empty()) resources["requests"] = requests;
  if (!limits.empty()) resources["limits"] = limits;
  container["resources"] = resources;

  auto probe = [](absl::string_view path, int period, int failures) {
    return Json{{"httpGet", {{"path", path}, {"port", "http"}}},
                {"periodSeconds", period},
                {"failureThreshold", failures}};
  };
  container["readinessProbe"] = probe("/ready", 5, 3);
  container["livenessProbe"] = probe("/health", 10, 3);
  // Loading a model can take minutes: liveness starts only after the first healthy answer.
  container["startupProbe"] = probe("/health", 10, std::max(1, role.ready_timeout_seconds / 10));
  container["securityContext"] = {{"allowPrivilegeEscalation", false},
                                  {"readOnlyRootFilesystem", true},
                                  {"runAsNonRoot", true},
                                  {"capabilities", {{"drop", {"ALL"}}}}};
  Json mounts = Json::array({{{"name", "tmp"}, {"mountPath", "/tmp"}}});
  if (IsEngineKind(role.kind) && role.gpus_per_instance > 0) {
    mounts.push_back({{"name", "dshm"}, {"mountPath", "/dev/shm"}});
  }
  if (UsesModel(role.kind) && !spec_.kubernetes.model_claim_name.empty()) {
    mounts.push_back(
        {{"name", "models"}, {"mountPath", spec_.kubernetes.model_mount_path}, {"readOnly", true}});
  }
  container["volumeMounts"] = mounts;
  return container;
}

// startsAfter on targets without Grove: an init container per dependency that waits until the
// dependency's Service accepts a connection, which happens only once one of its pods is ready
// (a ClusterIP has no endpoints before, a headless name does not resolve before).
Json Renderer::WaitContainers(const Role& role) const {
  Json containers = Json::array();
  for (const std::string& dependency_name : role.starts_after) {
    const Role* dependency = spec_.FindRole(dependency_name);
    if (dependency == nullptr) continue;
    if (!HasService(*dependency)) continue;  // the planner serves nobody; nothing to wait for
    const std::string host = Name(spec_, dependency->name);
    const std::string script = absl::StrCat("until (exec 3<>/dev/tcp/", host, "/", dependency->port,
                                            ") 2>/dev/null; do echo 'waiting for ",
                                            dependency->name, " (startsAfter)'; sleep 2; done");
    containers.push_back(
        {{"name", absl::StrCat("wait-", dependency->name)},
         {"image", spec_.kubernetes.image},
         {"imagePullPolicy", spec_.kubernetes.image_pull_policy},
         {"command", {"/bin/bash", "-c", script}},
         {"resources",
          {{"requests", {{"cpu", "10m"}, {"memory", "16Mi"}}}, {"limits", {{"memory", "16Mi"}}}}},
         {"securityContext",
          {{"allowPrivilegeEscalation", false},
           {"readOnlyRootFilesystem", true},
           {"runAsNonRoot", true},
           {"capabilities", {{"drop", {"ALL"}}}}}}});
  }
  return containers;
}

Json Renderer::PodSpec(const Role& role, const PodShape& shape) const {
  Json pod = Json::object();
  if (role.kind == RoleKind::kPlanner) {
    pod["serviceAccountName"] = Name(spec_, role.name);
    pod["automountServiceAccountToken"] = true;
  } else {
    pod["automountServiceAccountToken"] = false;  // only the planner talks to the API server
  }
  if (!spec_.kubernetes.scheduler_name.empty()) {
    pod["schedulerName"] = spec_.kubernetes.scheduler_name;
  }
  if (!spec_.kubernetes.priority_class_name.empty()) {
    pod["priorityClassName"] = spec_.kubernetes.priority_class_name;
  }
  pod["enableServiceLinks"] = false;
  // Engine roles drain on SIGTERM: stop taking work, finish what is in flight, then exit.
  pod["terminationGracePeriodSeconds"] = IsEngineKind(role.kind) ? 120 : 30;
  pod["securityContext"] = {{"runAsNonRoot", true},
                            {"runAsUser", kRunAsUser},
                            {"runAsGroup", kRunAsUser},
                            {"fsGroup", kRunAsUser},
                            {"seccompProfile", {{"type", "RuntimeDefault"}}}};
  if (!shape.affinity.is_null()) pod["affinity"] = shape.affinity;
  if (shape.wait_for_dependencies) {
    Json init = WaitContainers(role);
    if (!init.empty()) pod["initContainers"] = init;
  }
  pod["containers"] = Json::array({Container(role, shape)});
  Json volumes = Json::array({{{"name", "tmp"}, {"emptyDir", Json::object()}}});
  if (IsEngineKind(role.kind) && role.gpus_per_instance > 0) {
    volumes.push_back({{"name", "dshm"}, {"emptyDir", {{"medium", "Memory"}}}});
  }
  if (UsesModel(role.kind) && !spec_.kubernetes.model_claim_name.empty()) {
    volumes.push_back({{"name", "models"},
                       {"persistentVolumeClaim",
                        {{"claimName", spec_.kubernetes.model_claim_name}, {"readOnly", true}}}});
  }
  pod["volumes"] = volumes;
  return pod;
}

Json Renderer::PodTemplate(const Role& role, const PodShape& shape, Json extra_labels) const {
  Json metadata = {{"labels", PodLabels(spec_, role)}};
  if (extra_labels.is_object()) {
    for (auto it = extra_labels.begin(); it != extra_labels.end(); ++it) {
      metadata["labels"][it.key()] = it.value();
    }
  }
  Json annotations = PodAnnotations(spec_, role);
  if (!annotations.is_null()) metadata["annotations"] = annotations;
  return {{"metadata", metadata}, {"spec", PodSpec(role, shape)}};
}

// Pod affinity for the pack constraints on targets without Grove: the deployment's, the scaling
// group's and the role's. `tp_group_keys` (LWS) narrows the role's constraint to one TP group.
Json Renderer::AffinityFor(const Role& role, const Json& tp_group_keys) const {
  Json required = Json::array();
  Json preferred = Json::array();
  auto add = [&](const PackConstraint& pack, const Json& selector, const Json& match_label_keys) {
    for (const auto& [level_name, is_required] :
         {std::pair<const std::string*, bool>{&pack.required, true}, {&pack.preferred, false}}) {
      if (level_name->empty()) continue;
      const TopologyLevel* level = spec_.FindLevel(*level_name);
      if (level == nullptr) continue;
      Json term = {{"labelSelector", selector}};
      if (!match_label_keys.is_null()) term["matchLabelKeys"] = match_label_keys;
      term["topologyKey"] = level->node_label;
      if (is_required) {
        required.push_back(term);
      } else {
        preferred.push_back({{"weight", 100}, {"podAffinityTerm", term}});
      }
    }
  };
  add(spec_.topology, {{"matchLabels", {{std::string(kInstanceLabel), spec_.name}}}}, Json());
  if (!role.scaling_group.empty()) {
    const ScalingGroup* group = spec_.FindScalingGroup(role.scaling_group);
    Json members(group->roles);
    add(group->topology,
        {{"matchLabels", {{std::string(kInstanceLabel), spec_.name}}},
         {"matchExpressions",
          Json::array({{{"key", kRoleLabel}, {"operator", "In"}, {"values", members}}})}},
        Json());
  }
  add(role.topology, {{"matchLabels", SelectorLabels(spec_, role.name)}}, tp_group_keys);
  if (required.empty() && preferred.empty()) return Json();
  Json pod_affinity = Json::object();
  if (!required.empty()) pod_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = required;
  if (!preferred.empty()) {
    pod_affinity["preferredDuringSchedulingIgnoredDuringExecution"] = preferred;
  }
  return {{"podAffinity", pod_affinity}};
}

void Renderer::AddGrove() {
  Json cliques = Json::array();
  Json scaling_groups = Json::array();
  std::map<std::string, std::vector<std::string>> cliques_of_role;
  for (const Role& role : spec_.roles) {
    cliques_of_role[role.name] =
        role.MultiHost() ? std::vector<std::string>{role.name + "-leader", role.name + "-worker"}
                         : std::vector<std::string>{role.name};
  }
  std::map<std::string, std::vector<std::string>> group_cliques;
  bool any_order = true;

  for (const Role& role : spec_.roles) {
    std::vector<std::string> starts_after;
    for (const std::string& dependency : role.starts_after) {
      for (const std::string& clique : cliques_of_role[dependency]) starts_after.push_back(clique);
    }
    if (!starts_after.empty()) any_order = false;
    const bool own_group = role.MultiHost() && role.scaling_group.empty();

    auto add_clique = [&](const std::string& clique_name, int replicas, int min_available,
                          const PodShape& shape, bool autoscaled, bool packed) {
      Json clique_spec = {
          {"roleName", clique_name}, {"replicas", replicas}, {"minAvailable", min_available}};
      if (!starts_after.empty()) clique_spec["startsAfter"] = starts_after;
      if (autoscaled) {
        clique_spec["autoScalingConfig"] = {{"minReplicas", role.autoscaling->min},
                                            {"maxReplicas", role.autoscaling->max},
                                            {"metrics", HpaMetrics(*role.autoscaling)}};
      }
      clique_spec["podSpec"] = PodSpec(role, shape);
      Json clique = {{"name", clique_name}, {"labels", PodLabels(spec_, role)}};
      Json annotations = PodAnnotations(spec_, role);
      if (!annotations.is_null()) clique["annotations"] = annotations;
      clique["spec"] = clique_spec;
      if (packed && !role.topology.empty()) {
        clique["topologyConstraint"] = PackJson(spec_, role.topology);
      }
      cliques.push_back(clique);
      if (!role.scaling_group.empty()) group_cliques[role.scaling_group].push_back(clique_name);
    };

    if (!role.MultiHost()) {
      add_clique(role.name, role.replicas, role.min_available, PodShape(),
                 HpaControlled(role.autoscaling) && role.scaling_group.empty(), true);
    } else {
      // A TP group is a leader pod plus nodes-1 worker pods; Grove injects the scaling group's
      // name, index and headless Service so every pod can name the leader.
      const std::string leader = absl::StrCat("$(GROVE_PCSG_NAME)-$(GROVE_PCSG_INDEX)-", role.name,
                                              "-leader-0.$(GROVE_HEADLESS_SERVICE):", role.port);
      PodShape leader_shape;
      leader_shape.leader = leader;
      PodShape worker_shape;
      worker_shape.leader = leader;
      worker_shape.node_rank = "$((GROVE_PCLQ_POD_INDEX + 1))";
      worker_shape.shell = true;
      const int workers = role.nodes_per_instance - 1;
      add_clique(role.name + "-leader", 1, 1, leader_shape, false, false);
      add_clique(role.name + "-worker", workers, workers, worker_shape, false, false);
      if (own_group) {
        Json group = {{"name", role.name},
                      {"cliqueNames", cliques_of_role[role.name]},
                      {"replicas", role.replicas},
                      {"minAvailable", role.min_available}};
        if (HpaControlled(role.autoscaling)) {
          group["scaleConfig"] = {{"minReplicas", role.autoscaling->min},
                                  {"maxReplicas", role.autoscaling->max},
                                  {"metrics", HpaMetrics(*role.autoscaling)}};
        }
        if (!role.topology.empty()) group["topologyConstraint"] = PackJson(spec_, role.topology);
        scaling_groups.push_back(group);
      }
    }
  }
  for (const ScalingGroup& group : spec_.scaling_groups) {
    Json pcsg = {{"name", group.name},
                 {"cliqueNames", group_cliques[group.name]},
                 {"replicas", group.replicas},
                 {"minAvailable", group.min_available}};
    if (HpaControlled(group.autoscaling)) {
      pcsg["scaleConfig"] = {{"minReplicas", group.autoscaling->min},
                             {"maxReplicas", group.autoscaling->max},
                             {"metrics", HpaMetrics(*group.autoscaling)}};
    }
    if (!group.topology.empty()) pcsg["topologyConstraint"] = PackJson(spec_, group.topology);
    scaling_groups.push_back(pcsg);
  }

  Json template_spec = {
      {"cliqueStartupType", any_order ? "CliqueStartupTypeAnyOrder" : "CliqueStartupTypeExplicit"}};
  if (!spec_.kubernetes.priority_class_name.empty()) {
    template_spec["priorityClassName"] = spec_.kubernetes.priority_class_name;
  }
  if (!spec_.topology.empty())
    template_spec["topologyConstraint"] = PackJson(spec_, spec_.topology);
  // Pods of a TP group reach their leader before it is ready (it waits for them).
  template_spec["headlessServiceConfig"] = {{"publishNotReadyAddresses", true}};
  template_spec["cliques"] = cliques;
  if (!scaling_groups.empty()) template_spec["podCliqueScalingGroups"] = scaling_groups;

  Json labels = DeploymentLabels(spec_);
  if (!spec_.kubernetes.kai_queue.empty()) {
    labels[std::string(kKaiQueueLabel)] = spec_.kubernetes.kai_queue;
  }
  objects_.push_back({{"apiVersion", "grove.io/v1alpha1"},
                      {"kind", "PodCliqueSet"},
                      {"metadata", Metadata(spec_, spec_.name, labels)},
                      {"spec", {{"replicas", 1}, {"template", template_spec}}}});
}

void Renderer::AddHpa(const Role& role, const Json& target_ref, int per_unit) {
  if (!HpaControlled(role.autoscaling)) return;
  objects_.push_back(
      {{"apiVersion", "autoscaling/v2"},
       {"kind", "HorizontalPodAutoscaler"},
       {"metadata", Metadata(spec_, Name(spec_, role.name), RoleLabels(spec_, role))},
       {"spec",
        {{"scaleTargetRef", target_ref},
         {"minReplicas", std::max(1, role.autoscaling->min * per_unit)},
         {"maxReplicas", role.autoscaling->max * per_unit},
         {"metrics", HpaMetrics(*role.autoscaling)}}}});
}

void Renderer::AddLwsAndKubernetesWorkloads() {
  std::vector<Json> autoscalers;
  for (const Role& role : spec_.roles) {
    const std::string name = Name(spec_, role.name);
    const Json selector = {{"matchLabels", SelectorLabels(spec_, role.name)}};
    const Json metadata = Metadata(spec_, name, RoleLabels(spec_, role));
    const int instances = TotalInstances(spec_, role);
    PodShape shape;
    shape.wait_for_dependencies = true;

    if (target_ == RenderTarget::kLws && role.MultiHost()) {
      // LWS injects the leader's DNS name and each pod's index in its group.
      shape.leader = absl::StrCat("$(LWS_LEADER_ADDRESS):", role.port);
      shape.node_rank = "$(LWS_WORKER_INDEX)";
      shape.affinity = AffinityFor(role, Json::array({kLwsGroupKey}));
      Json lws_spec = {
          {"replicas", instances},
          {"startupPolicy", "LeaderCreated"},
          {"leaderWorkerTemplate",
           {{"size", role.nodes_per_instance},
            {"restartPolicy", "RecreateGroupOnPodRestart"},
            {"workerTemplate", PodTemplate(role, shape)}}},
          {"rolloutStrategy",
           {{"type", "RollingUpdate"},
            {"rollingUpdateConfiguration", {{"maxUnavailable", 1}, {"maxSurge", 0}}}}}};
      objects_.push_back({{"apiVersion", "leaderworkerset.x-k8s.io/v1"},
                          {"kind", "LeaderWorkerSet"},
                          {"metadata", metadata},
                          {"spec", lws_spec}});
      AddHpa(role,
             {{"apiVersion", "leaderworkerset.x-k8s.io/v1"},
              {"kind", "LeaderWorkerSet"},
              {"name", name}},
             1);
      continue;
    }

    const bool stateful = target_ == RenderTarget::kKubernetes && IsEngineKind(role.kind);
    if (stateful && role.MultiHost()) {
      // Consecutive ordinals form a TP group: rank = ordinal mod nodes, leader = first ordinal.
      const int nodes = role.nodes_per_instance;
      shape.shell = true;
      shape.extra_env.push_back(
          {{"name", "POD_INDEX"},
           {"valueFrom",
            {{"fieldRef", {{"fieldPath", "metadata.labels['apps.kubernetes.io/pod-index']"}}}}}});
      shape.node_rank = absl::StrCat("$((POD_INDEX % ", nodes, "))");
      shape.leader =
          absl::StrCat(name, "-$((POD_INDEX - POD_INDEX % ", nodes, ")).", name, ":", role.port);
    }
    shape.affinity = AffinityFor(role, Json());
    const int pods = instances * PodsPerInstance(role);
    Json workload_spec = {{"replicas", pods}, {"selector", selector}};
    if (stateful) {
      workload_spec["serviceName"] = name;
      // Pods of one TP group start together; single-host workers start in parallel too.
      workload_spec["podManagementPolicy"] = "Parallel";
      workload_spec["updateStrategy"] = {{"type", "RollingUpdate"}};
    } else {
      workload_spec["strategy"] = {{"type", "RollingUpdate"},
                                   {"rollingUpdate", {{"maxUnavailable", 0}, {"maxSurge", 1}}}};
    }
    workload_spec["template"] = PodTemplate(role, shape);
    const std::string kind = stateful ? "StatefulSet" : "Deployment";
    objects_.push_back({{"apiVersion", "apps/v1"},
                        {"kind", kind},
                        {"metadata", metadata},
                        {"spec", workload_spec}});
    AddHpa(role, {{"apiVersion", "apps/v1"}, {"kind", kind}, {"name", name}},
           PodsPerInstance(role));
  }
}

void Renderer::AddPodMonitor() {
  if (spec_.kubernetes.prometheus != PrometheusMode::kPodMonitor) return;
  objects_.push_back(
      {{"apiVersion", "monitoring.coreos.com/v1"},
       {"kind", "PodMonitor"},
       {"metadata", Metadata(spec_, spec_.name, DeploymentLabels(spec_))},
       {"spec",
        {{"selector", {{"matchLabels", {{std::string(kInstanceLabel), spec_.name}}}}},
         {"podMetricsEndpoints",
          Json::array({{{"port", "http"}, {"path", "/metrics"}, {"interval", "15s"}}})}}}});
}

}  // namespace

std::vector<std::string> KubernetesScaleTargets(const DeploymentSpec& spec, RenderTarget target) {
  auto resource_of = [&](const Role& role) -> std::pair<std::string, int> {
    switch (target) {
      case RenderTarget::kGrove:
        return {
            role.MultiHost()
                ? absl::StrCat("grove.io/podcliquescalinggroups/", GroveChildName(spec, role.name))
                : absl::StrCat("grove.io/podcliques/", GroveChildName(spec, role.name)),
            1};
      case RenderTarget::kLws:
        if (role.MultiHost()) {
          return {absl::StrCat("leaderworkerset.x-k8s.io/leaderworkersets/", Name(spec, role.name)),
                  1};
        }
        return {absl::StrCat("apps/deployments/", Name(spec, role.name)), 1};
      case RenderTarget::kKubernetes:
        return {absl::StrCat(IsEngineKind(role.kind) ? "apps/statefulsets/" : "apps/deployments/",
                             Name(spec, role.name)),
                role.nodes_per_instance};
    }
    return {"", 1};
  };
  std::vector<std::string> targets;
  for (const Role& role : spec.roles) {
    if (!PlannerControlled(role.autoscaling)) continue;
    auto [resource, pods] = resource_of(role);
    targets.push_back(absl::StrCat(role.name, "=", resource,
                                   pods > 1 ? absl::StrCat("*", pods) : "", ":",
                                   role.autoscaling->min, ":", role.autoscaling->max));
  }
  for (const ScalingGroup& group : spec.scaling_groups) {
    if (!PlannerControlled(group.autoscaling)) continue;
    std::vector<std::string> parts;
    if (target == RenderTarget::kGrove) {
      parts.push_back(
          absl::StrCat("grove.io/podcliquescalinggroups/", GroveChildName(spec, group.name)));
    } else {
      for (const std::string& member : group.roles) {
        const Role* role = spec.FindRole(member);
        auto [resource, pods] = resource_of(*role);
        const int per_unit = pods * role->replicas;
        parts.push_back(absl::StrCat(resource, per_unit > 1 ? absl::StrCat("*", per_unit) : ""));
      }
    }
    targets.push_back(absl::StrCat(group.name, "=", absl::StrJoin(parts, ","), ":",
                                   group.autoscaling->min, ":", group.autoscaling->max));
  }
  return targets;
}

absl::StatusOr<std::vector<nlohmann::ordered_json>> RenderObjects(const DeploymentSpec& spec,
                                                                  RenderTarget target) {
  if (spec.FirstOfKind(RoleKind::kRouter) == nullptr) {
    return absl::InvalidArgumentError("the spec has no router role (was it validated?)");
  }
  Renderer renderer(spec, target);
  return renderer.Render();
}

absl::StatusOr<std::string> RenderManifests(const DeploymentSpec& spec, RenderTarget target) {
  TANDEM_ASSIGN_OR_RETURN(std::vector<nlohmann::ordered_json> objects, RenderObjects(spec, target));
  std::string source = spec.filename;
  if (size_t slash = source.rfind('/'); slash != std::string::npos)
    source = source.substr(slash + 1);
  std::string out =
      absl::StrCat("# Rendered by `tandem render --target ", RenderTargetName(target), "` from ",
                   source.empty() ? "a deployment spec" : source, " (deployment '", spec.name,
                   "').\n# Do not edit: change the spec and render again.\n");
  for (const nlohmann::ordered_json& object : objects) {
    out += "---\n";
    out += internal::WriteYaml(object);
  }
  return out;
}

}  // namespace tandem::deploy
