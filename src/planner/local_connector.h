// LocalScaleConnector: applies planner decisions to a deployment run by `tandem up`, through the
// supervisor's control API (docs/deploy-spec.md, "Scale API"):
//
//   GET  /v1/status                                  roles, units, desired counts
//   POST /v1/scale {"target": "decode", "replicas": 3}
//
// both with `Authorization: Bearer TOKEN`. The URL and token come from the command line and
// TANDEM_ORCHESTRATOR_TOKEN (as the orchestrator starts the planner), or from the deployment's
// state file (RUN_DIR/<name>/state.json) for a planner started by hand.
//
// Each `--scale` target names a unit of the orchestrator: a role, whose kind (prefill or decode)
// the status says, or a scaling group, whose member roles and their instances per replica the
// status says too. The names are resolved on first use and again after a failure, so a planner
// that starts before the supervisor answers keeps trying. A scale call is sent only when the
// unit's desired count differs (the API is idempotent anyway).
//
//   TANDEM_ASSIGN_OR_RETURN(LocalOrchestrator where, LocalOrchestratorFromEnvironment(env, url));
//   LocalScaleConnector connector(where, {*ParseScaleTarget("decode=decode:1:8")});
//   TANDEM_RETURN_IF_ERROR(connector.Resolve());   // fills each target's composition
//   TANDEM_RETURN_IF_ERROR(connector.Apply(decision));
//
// Thread-safety: used from the planner's loop thread only.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/env.h"
#include "planner/interfaces.h"
#include "planner/scale_targets.h"

namespace tandem::planner {

struct LocalOrchestrator {
  std::string url;  // http://127.0.0.1:PORT
  std::string token;
  absl::Duration timeout = absl::Seconds(5);
};

// `url` (may be empty) with the token from TANDEM_ORCHESTRATOR_TOKEN; when either is missing,
// the state file `state_file` (may be empty) fills it in. Refuses with what to set otherwise.
absl::StatusOr<LocalOrchestrator> LocalOrchestratorFromEnvironment(Env& env, std::string url,
                                                                   const std::string& state_file);

class LocalScaleConnector : public ScaleConnector {
 public:
  LocalScaleConnector(LocalOrchestrator orchestrator, std::vector<ScaleTarget> targets);

  // Reads the status and sets each target's composition. kNotFound for a name the deployment
  // does not have, kUnavailable when the supervisor cannot be reached. A unit holding no prefill
  // or decode role (an aggregated worker role) is dropped from the targets and named in
  // ignored().
  absl::Status Resolve();
  const std::vector<std::string>& ignored() const { return ignored_; }
  bool resolved() const { return resolved_; }
  const std::vector<ScaleTarget>& targets() const { return targets_; }

  absl::Status Apply(const Decision& decision) override;
  // Desired instances of each role (sum over the targets holding it).
  absl::StatusOr<ReplicaCounts> Current() override;
  std::string name() const override { return "local"; }

  // Scale calls sent so far (for tests and logs).
  int scale_calls() const { return scale_calls_; }

 private:
  absl::StatusOr<std::string> Call(const std::string& method, const std::string& path,
                                   const std::string& body);
  // Desired replicas by unit name, from GET /v1/status.
  absl::StatusOr<std::map<std::string, int>> DesiredUnits();

  LocalOrchestrator orchestrator_;
  std::vector<ScaleTarget> targets_;
  std::vector<std::string> ignored_;
  bool resolved_ = false;
  int scale_calls_ = 0;
};

}  // namespace tandem::planner
