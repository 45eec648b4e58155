// DeploymentSpec: one description of a Tandem deployment (roles, replicas, tensor-parallel size,
// multi-host TP groups, resources, startup order, gangs, scaling bounds, topology constraints),
// parsed from YAML and validated as a whole. The local orchestrator, the Kubernetes renderers and
// the placement core all start from it. The format is documented in docs/deploy-spec.md, with a
// JSON Schema in docs/deploy-spec.schema.json.
//
//   absl::StatusOr<DeploymentSpec> spec = ParseSpec(text, "examples/local.yaml");
//   if (!spec.ok()) { ... spec.status().message() is one line per problem:
//                     "examples/local.yaml:12: roles.decode.minAvailable: 5 is more than
//                      replicas (3); allowed: 0..replicas" }
//   for (const Role& role : spec->roles) { ... role.name, role.kind, role.replicas ... }
//
// A parsed spec is complete: every default is filled in, every cross reference (startsAfter,
// scaling groups, topology levels) was checked, so users of the struct need no further checks.
//
// Thread-safety: ParseSpec is a pure function; a DeploymentSpec is a plain value.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/env.h"

namespace tandem::deploy {

inline constexpr char kSpecApiVersion[] = "tandem/v1";

enum class RoleKind { kRouter, kPrefill, kDecode, kPlanner, kWorker };

// "router", "prefill", "decode", "planner", "worker".
const char* RoleKindName(RoleKind kind);
// True for the kinds that run the engine (prefill, decode, worker).
bool IsEngineKind(RoleKind kind);

// A level of the cluster topology, broadest first in TopologySpec::levels.
struct TopologyLevel {
  std::string name;        // "rack"; a lower-case DNS label
  std::string node_label;  // the node label whose value names the domain at this level
};

// Pack every pod of one unit (a role instance, a scaling-group replica, the deployment) into one
// domain of a topology level: required = do not schedule otherwise, preferred = best effort.
struct PackConstraint {
  std::string required;   // level name, or empty
  std::string preferred;  // level name, or empty
  bool empty() const { return required.empty() && preferred.empty(); }
};

// Who changes the replica count between `min` and `max`.
enum class ScalingController {
  kPlanner,  // the SLA planner (roles with a planner in the deployment default to it)
  kHpa,      // a Kubernetes HorizontalPodAutoscaler on `cpu_utilization` or `metric`
};

struct Autoscaling {
  int min = 0;
  int max = 0;
  ScalingController controller = ScalingController::kPlanner;
  // HPA targets (only used with controller kHpa): average CPU utilization in percent, or a
  // per-pod custom metric (name + average value as a Kubernetes quantity).
  std::optional<int> cpu_utilization;
  std::string metric_name;
  std::string metric_average_value;
};

// Per-pod resources. cpu and memory are Kubernetes quantities ("4", "500m", "16Gi"); empty means
// not requested. gpu is whole GPUs per pod (gpus_per_instance / nodes_per_instance).
struct Resources {
  std::string cpu;
  std::string memory;
  int gpu = 0;
};

struct Role {
  std::string name;  // key under `roles:`; a DNS label, unique
  RoleKind kind = RoleKind::kWorker;
  int replicas = 1;       // instances (inside a scaling group: per group replica)
  int min_available = 1;  // instances that must stay ready (gang minimum, PDB)
  // Tensor-parallel size: GPUs per instance in total. 0 = runs on CPU (TP size 1).
  int gpus_per_instance = 0;
  // Pods (hosts) one instance spans; > 1 is a multi-host TP group (leader + workers).
  int nodes_per_instance = 1;
  Resources resources;
  std::string model;  // model file or directory; engine kinds only, defaults to spec.model
  std::vector<std::string> args;
  std::map<std::string, std::string> env;
  int port = 0;                           // HTTP port (API, control, /metrics, /ready, /health)
  std::vector<std::string> starts_after;  // role names that must be ready first
  std::optional<Autoscaling> autoscaling;
  PackConstraint topology;
  int ready_timeout_seconds = 300;  // how long a gang may take to become ready locally
  std::string scaling_group;        // name of its scaling group, or empty
  int line = 0;                     // 1-based line of the role in the spec file

  int TensorParallelSize() const { return gpus_per_instance > 0 ? gpus_per_instance : 1; }
  bool MultiHost() const { return nodes_per_instance > 1; }
};

// Roles placed and scaled together: `replicas` copies of the whole group, each holding every
// member role's `replicas` instances.
struct ScalingGroup {
  std::string name;
  std::vector<std::string> roles;
  int replicas = 1;
  int min_available = 1;
  std::optional<Autoscaling> autoscaling;
  PackConstraint topology;
  int ready_timeout_seconds = 300;
  int line = 0;
};

// Prometheus scrape configuration rendered for Kubernetes: `prometheus.io/*` pod annotations, a
// Prometheus Operator PodMonitor, or nothing.
enum class PrometheusMode { kAnnotations, kPodMonitor, kNone };

struct KubernetesOptions {
  std::string namespace_name;  // empty: the namespace kubectl applies to
  std::string image = "tandem:latest";
  std::string image_pull_policy = "IfNotPresent";
  // KAI Scheduler: queue label and schedulerName on every pod when `queue` is set.
  std::string kai_queue;
  std::string kai_parent_queue;  // rendered Queue's parent; empty = top-level queue
  bool kai_create_queue = false;
  std::string scheduler_name;  // default "kai-scheduler" when kai_queue is set
  std::string priority_class_name;
  std::string model_claim_name;  // PersistentVolumeClaim holding the models, mounted read-only
  std::string model_mount_path = "/models";
  PrometheusMode prometheus = PrometheusMode::kAnnotations;
};

struct DeploymentSpec {
  std::string name;
  std::string model;  // default model of the engine roles
  std::vector<TopologyLevel> levels;
  PackConstraint topology;  // the whole deployment
  std::vector<Role> roles;  // sorted by startup order (startsAfter), then by name
  std::vector<ScalingGroup> scaling_groups;
  KubernetesOptions kubernetes;
  std::string filename;

  const Role* FindRole(std::string_view name) const;
  const ScalingGroup* FindScalingGroup(std::string_view name) const;
  const TopologyLevel* FindLevel(std::string_view name) const;
  // Index of a level in `levels` (0 = broadest), or -1.
  int LevelIndex(std::string_view name) const;
  // The first role of a kind, or nullptr.
  const Role* FirstOfKind(RoleKind kind) const;
};

// Parses and validates a spec. `filename` only labels error messages. On error the message holds
// one line per problem ("FILE:LINE: FIELD.PATH: what is wrong; allowed: ..."), in line order.
absl::StatusOr<DeploymentSpec> ParseSpec(std::string_view text, std::string_view filename);

// Reads `path` through `env` and parses it.
absl::StatusOr<DeploymentSpec> LoadSpec(Env& env, const std::string& path);

}  // namespace tandem::deploy
