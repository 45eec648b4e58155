// Kubernetes renderers: turn a DeploymentSpec into manifests for one of three targets.
//
//   grove  a Grove PodCliqueSet (roles as cliques, startsAfter, autoScalingConfig, topology pack
//          constraints, PodCliqueScalingGroups for scaling groups and multi-host TP groups), a
//          ClusterTopologyBinding for the declared levels, KAI Scheduler queue labels (and Queue);
//   lws    LeaderWorkerSets for multi-host TP groups, Deployments for everything else;
//   k8s    plain Deployments (router, planner) and StatefulSets (engine roles), HPAs.
//
// Every target also gets: Services (ClusterIP for the router, headless per engine role so
// workers can be addressed one by one), the planner's ServiceAccount with a Role allowing only
// get/patch/update on the scale subresources of what it scales, PodDisruptionBudgets from
// minAvailable, non-root read-only pods with probes on /ready and /health, and Prometheus scrape
// configuration. Output is deterministic (stable key order) so it can be diffed and golden-tested.
//
//   absl::StatusOr<RenderTarget> target = ParseRenderTarget("grove");
//   absl::StatusOr<std::string> yaml = RenderManifests(spec, *target);  // multi-document YAML
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "deploy/spec.h"
#include "nlohmann/json.hpp"

namespace tandem::deploy {

enum class RenderTarget { kGrove, kLws, kKubernetes };

// "grove", "lws" or "k8s".
absl::StatusOr<RenderTarget> ParseRenderTarget(std::string_view name);
const char* RenderTargetName(RenderTarget target);

// The port every engine pod listens on for KV transfers.
inline constexpr int kKvPort = 9000;

// The Kubernetes objects, in apply order (cluster-scoped and RBAC first, workloads last). Fails
// when the spec asks for something the target cannot express (e.g. an HPA on a multi-host role
// with plain StatefulSets), naming the field and the targets that can.
absl::StatusOr<std::vector<nlohmann::ordered_json>> RenderObjects(const DeploymentSpec& spec,
                                                                  RenderTarget target);

// RenderObjects as one YAML stream ("---" between documents) with a header comment.
absl::StatusOr<std::string> RenderManifests(const DeploymentSpec& spec, RenderTarget target);

// What the planner scales on this target: "NAME=GROUP/RESOURCE/OBJECT[*PODS][,...]:MIN:MAX",
// one entry per role or scaling group whose autoscaling controller is the planner. PODS is how
// many replicas of that object one unit is (a StatefulSet holds every host of a TP group).
std::vector<std::string> KubernetesScaleTargets(const DeploymentSpec& spec, RenderTarget target);

}  // namespace tandem::deploy
