// What `tandem status` shows and how separate `tandem` invocations find a running deployment.
//
// DeploymentStatus is the orchestrator's view (units, roles, instances with their addresses,
// epochs, restarts and log files, the update in progress); it travels as JSON from the
// supervisor's control endpoint. StateFile is `RUN_DIR/<deployment>/state.json`, written by the
// supervisor while it runs (mode 0600: it holds the control token) and removed by `tandem down`:
//
//   {"name": "local", "spec_path": "examples/local.yaml", "supervisor_pid": 4242,
//    "control_url": "http://127.0.0.1:39111", "token": "9f...", "started_at": "2026-...",
//    "process_groups": [4250, 4251]}
//
//   absl::StatusOr<StateFile> state = FindDeployment("run", "");   // the only one under run/
//   DeploymentStatus status = StatusFromJson(json);                 // from GET /v1/status
//
// Thread-safety: plain values and functions.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace tandem::deploy {

struct ProcessStatus {
  int rank = 0;            // rank in the instance's TP group (0 = leader)
  pid_t pid = 0;           // 0 while not running (crashed, waiting to restart)
  std::string address;     // host:port of its HTTP server
  std::string kv_address;  // host:port of its KV listener (engine roles)
  std::string log_path;
  bool ready = false;
  std::string epoch;  // from its /health, empty until it was ready once
};

struct InstanceStatus {
  std::string id;  // "decode/3": role and ordinal (ordinals are never reused)
  std::string role;
  int ordinal = 0;
  int64_t member = 0;  // the unit member (gang) it belongs to
  int generation = 0;  // the spec generation it was started from
  // starting, ready, restarting (crashed, in backoff), draining, stopping
  std::string state;
  int restarts = 0;
  std::string last_exit;  // how its last process ended, "" if none did
  std::vector<ProcessStatus> processes;
};

struct RoleStatus {
  std::string name;
  std::string kind;
  std::string unit;  // its own name, or its scaling group
  int desired = 0;   // instances wanted
  int ready = 0;     // instances ready (not draining)
  int min_available = 0;
  std::vector<InstanceStatus> instances;
};

struct UnitStatus {
  std::string name;
  bool group = false;
  int desired = 0;
  int ready = 0;
  int members = 0;  // not draining
  int min_available = 0;
};

struct UpdateStatus {
  int generation = 0;
  std::string state;  // none, in_progress, complete, failed, superseded
  std::string message;
  std::vector<std::string> changes;
};

struct DeploymentStatus {
  std::string name;
  std::string phase;  // starting, running, failed, stopping, stopped
  std::string message;
  std::string spec_path;
  int generation = 0;       // of the desired spec
  int good_generation = 0;  // of the last spec the deployment fully reached
  std::vector<UnitStatus> units;
  std::vector<RoleStatus> roles;
  UpdateStatus update;

  const RoleStatus* FindRole(const std::string& name) const;
  const UnitStatus* FindUnit(const std::string& name) const;
};

nlohmann::json StatusToJson(const DeploymentStatus& status);
absl::StatusOr<DeploymentStatus> StatusFromJson(const nlohmann::json& json);

// A human-readable table of the status (for `tandem status`).
std::string FormatStatus(const DeploymentStatus& status);

struct StateFile {
  std::string name;
  std::string spec_path;
  std::string run_dir;  // RUN_DIR/<name>
  pid_t supervisor_pid = 0;
  std::string control_url;
  std::string token;
  std::string started_at;
  std::vector<pid_t> process_groups;
};

std::string StateFilePath(const std::string& deployment_dir);
// Writes atomically with mode 0600.
absl::Status WriteStateFile(const StateFile& state);
absl::StatusOr<StateFile> ReadStateFile(const std::string& path);

// The state file of deployment `name` under `run_root`; with an empty name, the only deployment
// there. kNotFound (naming what was looked for) when there is none, kInvalidArgument listing
// them when there are several and no name was given.
absl::StatusOr<StateFile> FindDeployment(const std::string& run_root, const std::string& name);

}  // namespace tandem::deploy
