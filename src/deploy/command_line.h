// How a role instance of a DeploymentSpec is started: one `tandem <subcommand> <flags>` command
// line per process, shared by the local orchestrator (addresses on loopback) and the Kubernetes
// renderers (addresses from Services/DNS and the pod IP). Keeping one function for both means a
// flag added here reaches every way of running Tandem.
//
//   InstanceContext context;
//   context.listen = "127.0.0.1:8101";
//   context.advertise = "127.0.0.1:8101";
//   context.kv_listen = "127.0.0.1:9101";
//   context.router_url = "http://127.0.0.1:8000";
//   std::vector<std::string> argv = RoleCommandLine(spec, *spec.FindRole("decode"), context);
//   // {"tandem", "worker", "--role", "decode", "--model", ..., "--listen", "127.0.0.1:8101", ...}
//
// The flags form a contract with the router, worker and planner commands; docs/deploy-spec.md
// ("Command lines") lists them. Thread-safety: pure functions.
#pragma once

#include <string>
#include <vector>

#include "deploy/spec.h"

namespace tandem::deploy {

struct InstanceContext {
  std::string program = "tandem";
  std::string listen;       // host:port the HTTP server binds (API, control, /metrics, /ready)
  std::string advertise;    // host:port other processes use to reach this one (engine kinds)
  std::string kv_listen;    // host:port of the KV transfer listener (engine kinds)
  std::string router_url;   // http://host:port of the router (every kind but the router)
  std::string planner_url;  // router only: http://host:port of the planner, when there is one
  // Multi-host TP groups: this process's rank in its group ("0" = leader) and the leader's
  // host:port. Strings, because on Kubernetes they are variable references the pod expands.
  std::string node_rank = "0";
  std::string leader;
  // Planner only: "local" (the orchestrator's scale API at `orchestrator_url`) or "kubernetes"
  // (scale subresources in `namespace_name`), and one scale target per scaled unit.
  std::string connector = "local";
  std::string orchestrator_url;
  std::string namespace_name;
  std::vector<std::string> scale_targets;  // "NAME=RESOURCE:MIN:MAX"
};

// The role's command line, its `args` from the spec appended last so they can override.
std::vector<std::string> RoleCommandLine(const DeploymentSpec& spec, const Role& role,
                                         const InstanceContext& context);

// The worker `--role` value for an engine kind: "prefill", "decode" or "both".
std::string WorkerRoleFlag(RoleKind kind);

// The units the planner scales locally: "NAME=NAME:MIN:MAX" for each role and scaling group
// whose autoscaling controller is the planner.
std::vector<std::string> LocalScaleTargets(const DeploymentSpec& spec);

}  // namespace tandem::deploy
