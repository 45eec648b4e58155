// The pure decisions of the local orchestrator: which units a deployment is made of (gangs),
// what each unit should do next to reach its desired replicas and template (start, drain, stop),
// how long to wait before restarting a crashed process, and what an update changes. The
// orchestrator (orchestrator.h) feeds these functions the state it observes; they touch no
// process, socket or clock, so the rules are unit-tested in isolation.
//
//   std::vector<UnitSpec> units = BuildUnits(spec);          // startup order
//   UnitPlan plan = PlanUnit(units[1], {{.id = 1, .template_key = old_key,
//                                        .phase = MemberPhase::kReady}});
//   // plan.start == 1: surge one new member before any old one is drained
//
// A *unit* is what is started, replaced, scaled and rolled back whole: a role outside any
// scaling group (each *member* is one role instance, a TP group of nodesPerInstance processes)
// or a scaling group (each member is one group replica: every member role's instances).
//
// Thread-safety: pure functions on values.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "deploy/spec.h"

namespace tandem::deploy {

struct UnitSpec {
  std::string name;  // the role name, or the scaling group name
  bool is_group = false;
  std::vector<std::string> roles;  // member roles, in startup order
  int replicas = 1;                // members wanted
  int min_available = 1;           // members that must stay ready (the gang minimum)
  int ready_timeout_seconds = 300;
  // Roles outside the unit that must be ready before the unit starts its first member.
  std::vector<std::string> depends_on;
  // What one member runs (command-line and environment inputs of every member role). Members
  // whose key differs from the unit's are replaced by a rolling update.
  std::string template_key;
};

// The units of a deployment in startup order (a unit comes after every unit it depends on).
std::vector<UnitSpec> BuildUnits(const DeploymentSpec& spec);

// The inputs of a role that change what its processes run: kind, model, args, env, TP size,
// hosts per instance, port. Resources and Kubernetes options do not restart anything locally.
std::string RoleTemplateKey(const Role& role);

// Delay before restart number `attempt` (1 = first restart): base * 2^(attempt-1), at most cap.
absl::Duration RestartBackoff(int attempt, absl::Duration base, absl::Duration cap);

enum class MemberPhase {
  kStarting,    // launched (or relaunched), not ready yet
  kReady,       // every process answers /ready with 200
  kRestarting,  // a process crashed; waiting for its backoff or relaunching
  kDraining,    // told to drain; leaves when its processes exit
};

struct MemberView {
  int64_t id = 0;  // increasing: a larger id is a newer member
  std::string template_key;
  MemberPhase phase = MemberPhase::kStarting;
};

struct UnitPlan {
  int start = 0;               // new members to launch with the unit's template
  std::vector<int64_t> drain;  // ready members to drain (stop routing, finish, exit)
  std::vector<int64_t> stop;   // members that serve nothing (not ready): stop at once
};

// One reconciliation step of a unit towards `unit.replicas` members of `unit.template_key`:
// - no old members: start what is missing, or retire the surplus (not-ready members first, then
//   the newest ready ones), never dropping below `min_available` ready members;
// - old members (another template): old members that are not ready are stopped at once; one new
//   member is surged at a time, and an old ready member is drained only once enough new members
//   are ready that the unit keeps `replicas` members and at least `min_available` ready ones.
// Draining members are ignored (they are already leaving).
UnitPlan PlanUnit(const UnitSpec& unit, const std::vector<MemberView>& members);

// One line per difference between two specs that the orchestrator acts on ("decode: args
// changed (rolling replacement)", "decode: replicas 2 -> 3", "planner: added"). Empty when
// applying `next` over `running` would change nothing.
std::vector<std::string> DiffSpecs(const DeploymentSpec& running, const DeploymentSpec& next);

}  // namespace tandem::deploy
