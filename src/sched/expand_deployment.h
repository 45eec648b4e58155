// ExpandDeploymentSpec: turns a deployment spec (docs/deploy-spec.md) into the gang tree the
// placement core places. The deployment is the root (every role and scaling group at its
// minimum); a role is a gang of its instances with minimum `minAvailable`; an instance (a TP
// group, `nodesPerInstance` pods) is placed atomically and packed by the role's `topology`; a
// scaling group is a gang of its replicas (minimum `minAvailable`, packed by the group's
// `topology`), each replica holding every member role's instances.
//
//   absl::StatusOr<deploy::DeploymentSpec> spec = deploy::ParseSpec(text, "spec.yaml");
//   absl::StatusOr<PlacementRequest> request = ExpandDeploymentSpec(*spec, /*priority=*/0);
//
// Thread-safety: a pure function.
#pragma once

#include "absl/status/statusor.h"
#include "deploy/spec.h"
#include "sched/gang.h"

namespace tandem::sched {

absl::StatusOr<PlacementRequest> ExpandDeploymentSpec(const deploy::DeploymentSpec& spec,
                                                      int priority = 0);

// Reads any request `tandem place` accepts, told apart by `kind`: PlacementRequest, PodGang
// (pods sized by `podgang_pod`), or a deployment spec (no kind; placed at `spec_priority`).
absl::StatusOr<PlacementRequest> ParseAnyRequest(absl::string_view text, absl::string_view filename,
                                                 const Resources& podgang_pod, int spec_priority);

}  // namespace tandem::sched
