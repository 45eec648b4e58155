// Orchestrator: runs a DeploymentSpec as processes on this machine and keeps it there.
//
// - Start: units (roles, scaling groups; see orchestrator_plan.h) start in startup order, a unit
//   only once the roles it depends on (`startsAfter`) have ready instances. A unit whose gang
//   (`minAvailable` members) is not ready within `readyTimeoutSeconds` is rolled back whole
//   (every process it started is stopped) and the deployment fails and stops: nothing partial
//   is left holding resources.
// - Supervision: readiness is `GET /ready` (200) on every process; a process that exits on its
//   own is restarted with capped exponential backoff (its whole TP group with it), on the same
//   address, and reports a new epoch in `GET /health`.
// - Scale(unit, n): more members start at once; fewer members drain first (`POST /admin/drain`,
//   then the process exits by itself; SIGTERM after `drain_timeout`, SIGKILL `stop_timeout`
//   later), never below `minAvailable` ready members.
// - Apply(spec): a rolling update to a new spec: changed units surge one new member, wait until
//   it is ready, then drain one old member; never below `minAvailable` ready; a later Apply
//   supersedes an unfinished one; an update whose new members are not ready in time rolls back
//   to the last spec the deployment fully reached, and the old members keep serving meanwhile.
// - Down: units stop in reverse startup order, each drained, then SIGTERM/SIGKILL on timeouts,
//   until no process group is left.
//
//   OrchestratorOptions options;
//   options.run_dir = "run/local";
//   TANDEM_ASSIGN_OR_RETURN(auto orchestrator, Orchestrator::Create(spec, options));
//   TANDEM_RETURN_IF_ERROR(orchestrator->Start());
//   TANDEM_RETURN_IF_ERROR(orchestrator->WaitUntilUp());   // fails if a gang was rolled back
//   orchestrator->Scale("decode", 3);
//   orchestrator->Down();
//
// One thread (the loop) starts, probes, reaps and stops processes; the public methods only
// change the desired state and wake it.
//
// Thread-safety: every public method may be called from any thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "deploy/spec.h"
#include "deploy/state.h"

namespace tandem::deploy {

struct OrchestratorOptions {
  // Per-instance logs go to `run_dir/logs/<role>-<ordinal>[.rank<r>].log` (created if missing).
  std::string run_dir = "run";
  // Replaces argv[0] ("tandem") of every role command line: empty = this executable. Tests run a
  // fake role process this way (`{"python3", "tests/orchestrator/fake_role.py"}`); the
  // TANDEM_ROLE_COMMAND environment variable does the same for `tandem up`.
  std::vector<std::string> command;
  // The router's first instance listens on the spec's port; false = on a free port like every
  // other process (tests, several deployments on one machine).
  bool use_router_port = true;
  std::string spec_path;  // shown in the status
  // The control endpoint and its token, handed to the planner (`--orchestrator`,
  // TANDEM_ORCHESTRATOR_TOKEN) so it can call the scale API.
  std::string control_url;
  std::string control_token;
  // Given to every role process as TANDEM_CLUSTER_TOKEN unless its spec `env` sets one; empty:
  // the processes inherit the caller's environment.
  std::string cluster_token;

  absl::Duration tick = absl::Milliseconds(100);
  absl::Duration probe_timeout = absl::Milliseconds(500);
  absl::Duration restart_backoff = absl::Milliseconds(500);  // first restart delay, then doubled
  absl::Duration restart_backoff_cap = absl::Seconds(30);
  // An instance ready this long has its backoff reset (the next crash restarts quickly again).
  absl::Duration stable_after = absl::Seconds(10);
  absl::Duration drain_timeout = absl::Seconds(120);  // then SIGTERM
  absl::Duration stop_timeout = absl::Seconds(10);    // SIGTERM -> SIGKILL
};

class Orchestrator {
 public:
  // Checks the options (creates the log directory); starts nothing.
  static absl::StatusOr<std::unique_ptr<Orchestrator>> Create(DeploymentSpec spec,
                                                              OrchestratorOptions options);
  // Stops every process (as Down) if still running.
  ~Orchestrator();
  Orchestrator(const Orchestrator&) = delete;
  Orchestrator& operator=(const Orchestrator&) = delete;

  // Starts the loop thread: units start in dependency order.
  absl::Status Start();

  // Blocks until every unit has its members ready (or its gang ready and its ready timeout
  // over); the failure (kDeadlineExceeded naming the role, the timeout and its logs) if a gang
  // was rolled back, after which the deployment stops by itself.
  absl::Status WaitUntilUp();

  // Sets the replicas of a unit: a role outside scaling groups, or a scaling group.
  // kNotFound for an unknown target, kInvalidArgument below minAvailable or for a role inside a
  // group, kFailedPrecondition while stopping.
  absl::Status Scale(const std::string& target, int replicas);

  // Starts a rolling update to `spec`; returns its generation. The changes are in
  // Status().update. kInvalidArgument when the spec renames the deployment or changes which
  // roles a scaling group holds (those need down + up).
  absl::StatusOr<int> Apply(DeploymentSpec spec);

  // Asks the loop to stop everything; returns at once.
  void RequestDown();
  // Blocks until every process is gone; kDeadlineExceeded after `timeout`.
  absl::Status WaitUntilStopped(absl::Duration timeout = absl::InfiniteDuration());
  // RequestDown + WaitUntilStopped + joins the loop thread.
  void Down();

  DeploymentStatus Status() const;
  // Process groups of every process not yet reaped (for the state file and leak checks).
  std::vector<pid_t> ProcessGroups() const;

  struct Impl;

 private:
  explicit Orchestrator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::deploy
