// What the planner scales: its `--scale` targets (docs/deploy-spec.md, "Command lines") and how a
// decision in planner instances becomes a count of scaled units.
//
//   --scale NAME=RESOURCE[*PODS][,RESOURCE[*PODS]...]:MIN:MAX
//
// NAME is a role or a scaling group. A role target scales one planner role; a scaling group
// holds both, `prefill_per_unit` prefill and `decode_per_unit` decode instances per replica, and
// is scaled as one count: enough replicas for whichever role needs more. RESOURCE is
// connector-specific (the orchestrator's unit name locally, GROUP/RESOURCE/OBJECT on Kubernetes).
//
//   TANDEM_ASSIGN_OR_RETURN(ScaleTarget target, ParseScaleTarget("decode=decode:1:8"));
//   target.composition = {.prefill = 0, .decode = 1};
//   TANDEM_RETURN_IF_ERROR(ApplyTargetBounds({target}, &config.bounds));
//   int units = UnitsFor(target, decision);   // replicas to ask the connector for
//
// Thread-safety: plain values and pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "planner/config.h"
#include "planner/planner.h"

namespace tandem::planner {

// Planner instances (TP groups) of each role in one replica of a scaled unit.
struct UnitComposition {
  int prefill = 0;
  int decode = 0;
};

struct ScaleTarget {
  std::string name;
  std::vector<std::string> resources;  // comma-separated parts, "*PODS" kept
  int min_units = 0;
  int max_units = 0;
  UnitComposition composition;  // set by whoever resolves the name (connector or flags)
};

// Parses the command-line form; MIN and MAX must satisfy 0 <= MIN <= MAX, MAX >= 1.
absl::StatusOr<ScaleTarget> ParseScaleTarget(std::string_view text);

// The composition a bare name implies: "prefill" -> {1, 0}, "decode" -> {0, 1}; kNotFound for
// any other name (a connector or `--role-of NAME=KIND` must say).
absl::StatusOr<UnitComposition> CompositionFromName(std::string_view name);

// Replaces the planner's per-role min/max with what the targets allow (sum over the targets
// holding the role of MIN x per-unit and MAX x per-unit), and checks that some counts satisfy
// every bound. A role no target holds keeps its configured bounds. Refuses two targets for the
// same role and a target whose composition is empty.
absl::Status ApplyTargetBounds(const std::vector<ScaleTarget>& targets, ReplicaBounds* bounds);

// Replicas of `target` for `decision`: enough for each role it holds, within [MIN, MAX].
int UnitsFor(const ScaleTarget& target, const Decision& decision);

}  // namespace tandem::planner
