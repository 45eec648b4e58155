// PlacementRequest: a hierarchical gang tree, the placement core's input. Every gang has a
// minimum (children for an inner gang, pods for a leaf gang), optional required and preferred
// topology levels (all of its pods inside one domain of that level), and optional relations to
// sibling gangs (same domain as X at level L, or spread from X at level L).
//
// A request comes from three front ends, all expanding into the same tree:
//   - the YAML "placement request" (roles → instances → pods, or an explicit `gang:` tree),
//     documented in docs/placement.md;
//   - a Grove PodGang (scheduler.grove.io/v1alpha1), ParsePodGang;
//   - a deployment spec, ExpandDeploymentSpec (sched/expand_deployment.h).
//
//   absl::StatusOr<PlacementRequest> request = ParsePlacementRequest(text, "req.yaml");
//   TANDEM_RETURN_IF_ERROR(ResolveRequest(*cluster, *request));   // level names → indices
//   for (const Gang& gang : request->gangs) { ... gang.path, gang.min_children ... }
//
// Thread-safety: plain values; the parsers are pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "sched/cluster.h"

namespace tandem::sched {

// A reference to a topology level, by name (placement requests, deployment specs) or by node
// label (PodGang topologyKeys). `index` is filled by ResolveRequest: -1 = no constraint.
struct LevelRef {
  std::string name;
  bool by_label = false;
  int index = -1;
  std::string where;  // "FILE:LINE: FIELD" for error messages
  bool empty() const { return name.empty(); }
};

enum class RelationKind { kSameDomain, kSpread };

// A constraint between this gang and a sibling `target` at `level`: kSameDomain keeps both in one
// domain of that level (e.g. prefill in the rack of its decode, so KV moves over fast links);
// kSpread keeps them in different domains (e.g. replicas in different zones).
struct Relation {
  RelationKind kind = RelationKind::kSameDomain;
  std::string target;
  LevelRef level;
  bool required = false;
  int target_gang = -1;  // filled by ResolveRequest
};

struct Gang {
  std::string name;
  std::string path;  // "llama/prefill/prefill-0"
  int parent = -1;
  std::vector<int> children;  // indices into PlacementRequest::gangs
  int min_children = 0;       // inner gang: children that must be placed (each at its minimum)
  // Leaf gang: `pod_names.size()` pods of `pod_resources`, at least `min_pods` together.
  bool leaf = false;
  std::vector<std::string> pod_names;
  int min_pods = 0;
  Resources pod_resources;
  LevelRef required;
  LevelRef preferred;
  std::vector<Relation> relations;
  // Siblings ordered so that relation targets come before the gangs that refer to them.
  std::vector<int> placement_order;
  std::string where;  // "FILE:LINE" of its definition
};

struct PlacementRequest {
  std::string name;
  int priority = 0;
  std::vector<Gang> gangs;  // gangs[0] is the root; parents come before their children
  std::string filename;

  int NumPods() const;
};

// Parses a placement request (YAML; docs/placement.md). Errors name file, line and field.
absl::StatusOr<PlacementRequest> ParsePlacementRequest(absl::string_view text,
                                                       absl::string_view filename);

// Parses a Grove PodGang (YAML or JSON): each spec.podgroups[] becomes a leaf gang of its
// podReferences with minimum minReplicas; the PodGang is the root (every podgroup at its
// minimum); topologyConstraintGroupConfigs become intermediate gangs. Topology keys are node
// labels, resolved against the cluster's levels. Pods take `default_pod` resources (a PodGang
// references pods, it does not size them).
absl::StatusOr<PlacementRequest> ParsePodGang(absl::string_view text, absl::string_view filename,
                                              const Resources& default_pod);

// Resolves level references and relation targets against `cluster`, checks minimums, and
// computes placement orders. Errors name where the reference was written and list the levels.
absl::Status ResolveRequest(const Cluster& cluster, PlacementRequest& request);

// Appends a gang under `parent` (-1 for the root), filling its path. Used by the front ends.
int AddGang(PlacementRequest& request, int parent, std::string name);

}  // namespace tandem::sched
