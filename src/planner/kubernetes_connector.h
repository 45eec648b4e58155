// KubernetesScaleConnector: applies planner decisions to a Kubernetes cluster by changing the
// `scale` subresource of the objects each role runs as (a Grove PodClique or
// PodCliqueScalingGroup, a StatefulSet, a Deployment, a LeaderWorkerSet).
//
// It speaks to the API server as the planner's service account does inside a pod: HTTPS to
// KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT, the server certificate checked against the
// mounted CA, `Authorization: Bearer` with the mounted token. Per object it reads
//   GET   /apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/scale
// and, only when the replica count differs,
//   PATCH /apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/scale
//         Content-Type: application/merge-patch+json   {"spec":{"replicas":N}}
// so applying the same decision twice changes nothing (the rendered RBAC grants exactly get and
// patch on these subresources; see src/deploy/render.cc).
//
//   TANDEM_ASSIGN_OR_RETURN(KubernetesOptions options, InClusterOptions(Env::Default()));
//   TANDEM_ASSIGN_OR_RETURN(auto connector, KubernetesScaleConnector::Create(
//       options, {{"decode", {*ParseScaleObject("apps/statefulsets/demo-decode")}}}));
//   TANDEM_RETURN_IF_ERROR(connector->Apply(decision));
//
// Thread-safety: one connector is used by the planner's loop thread only.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/env.h"
#include "planner/interfaces.h"
#include "planner/scale_targets.h"

namespace tandem::planner {

struct ScaleObject {
  std::string group;     // "apps", "grove.io", "leaderworkerset.x-k8s.io"
  std::string version;   // "v1", "v1alpha1"
  std::string resource;  // plural: "statefulsets", "podcliques", ...
  std::string name;
  int pods_per_unit = 1;  // replicas of this object per planner instance

  std::string Path(const std::string& kubernetes_namespace) const;
};

// "GROUP/RESOURCE/NAME[*PODS]" (the version of well-known groups is implied) or
// "GROUP/VERSION/RESOURCE/NAME[*PODS]".
absl::StatusOr<ScaleObject> ParseScaleObject(const std::string& text);

// The objects one planner role ("prefill" or "decode") runs as.
struct RoleScaleTargets {
  std::string role;
  std::vector<ScaleObject> objects;
};

// The `--scale` targets as the objects of each role. A target holds one role (its composition
// set, from its name or --role-of) and names GROUP/RESOURCE/NAME[*PODS] objects; a scaling group
// holding both roles is refused (scale its roles as separate targets).
absl::StatusOr<std::vector<RoleScaleTargets>> KubernetesTargets(
    const std::vector<ScaleTarget>& targets);

struct KubernetesOptions {
  std::string host;  // API server host (name or IP)
  int port = 443;
  std::string ca_file;  // PEM bundle that signs the API server's certificate
  std::string token;    // bearer token
  std::string kubernetes_namespace;
  int timeout_ms = 5000;
};

// Reads the in-cluster configuration: KUBERNETES_SERVICE_HOST / _PORT and the service account
// files under /var/run/secrets/kubernetes.io/serviceaccount (token, ca.crt, namespace).
absl::StatusOr<KubernetesOptions> InClusterOptions(Env& env);

class KubernetesScaleConnector : public ScaleConnector {
 public:
  static absl::StatusOr<std::unique_ptr<KubernetesScaleConnector>> Create(
      KubernetesOptions options, std::vector<RoleScaleTargets> targets);
  ~KubernetesScaleConnector() override;

  absl::Status Apply(const Decision& decision) override;
  // Each role's replicas from its first object (divided by that object's pods per unit).
  absl::StatusOr<ReplicaCounts> Current() override;
  std::string name() const override { return "kubernetes"; }

  absl::StatusOr<int> GetReplicas(const ScaleObject& object);
  absl::Status SetReplicas(const ScaleObject& object, int replicas);

  // Requests sent so far (GETs and PATCHes), for logs and tests.
  int requests() const { return requests_; }

 private:
  struct Impl;
  KubernetesScaleConnector(KubernetesOptions options, std::vector<RoleScaleTargets> targets,
                           std::unique_ptr<Impl> impl);

  KubernetesOptions options_;
  std::vector<RoleScaleTargets> targets_;
  std::unique_ptr<Impl> impl_;
  int requests_ = 0;
};

}  // namespace tandem::planner
