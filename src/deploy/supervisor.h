// Supervisor: the process behind `tandem up`. It owns the Orchestrator, serves the control API
// on 127.0.0.1 (random port, bearer token) and keeps RUN_DIR/<name>/state.json up to date so
// that `tandem status|logs|scale|apply|down` (separate invocations) find it. SupervisorClient is
// their side of the control API.
//
// Control API (docs/deploy-spec.md, "Running locally"); every call needs
// `Authorization: Bearer TOKEN` (the token is in the state file, mode 0600):
//   GET  /v1/status                              -> DeploymentStatus as JSON
//   POST /v1/scale  {"target": "decode", "replicas": 3}
//   POST /v1/apply  {"spec": "<YAML text>", "path": "examples/local.yaml"} -> {"generation": 2,
//                                                                            "changes": [...]}
//   POST /v1/down                                -> 202; the supervisor stops everything, exits
//
//   SupervisorOptions options{.run_root = "run"};
//   TANDEM_ASSIGN_OR_RETURN(auto supervisor, Supervisor::Start(spec, options, orchestrator));
//   TANDEM_RETURN_IF_ERROR(supervisor->orchestrator().WaitUntilUp());
//   while (!supervisor->down_requested() && !interrupted) { supervisor->RefreshStateFile(); ... }
//   supervisor->Shutdown();  // down in reverse order, state file removed
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "deploy/orchestrator.h"
#include "deploy/spec.h"
#include "deploy/state.h"
#include "nlohmann/json.hpp"

namespace tandem::net {
class HttpServer;
}

namespace tandem::deploy {

struct SupervisorOptions {
  std::string run_root = "run";  // the deployment lives in run_root/<name>/
  std::string spec_path;
};

class Supervisor {
 public:
  // Refuses (kAlreadyExists) when a live supervisor already runs this deployment; replaces a
  // stale state file. Starts the control server, the orchestrator and writes the state file.
  // `orchestrator_options.run_dir`, `control_url` and `control_token` are filled in here.
  static absl::StatusOr<std::unique_ptr<Supervisor>> Start(
      DeploymentSpec spec, SupervisorOptions options, OrchestratorOptions orchestrator_options);
  ~Supervisor();  // Shutdown()

  Orchestrator& orchestrator() { return *orchestrator_; }
  const StateFile& state() const { return state_; }
  bool down_requested() const { return down_requested_.load(); }

  // Rewrites the state file when the set of process groups changed.
  void RefreshStateFile();
  // Stops the deployment (reverse startup order), the control server, removes the state file.
  void Shutdown();

 private:
  Supervisor() = default;
  void InstallRoutes();

  StateFile state_;
  std::unique_ptr<Orchestrator> orchestrator_;
  std::unique_ptr<net::HttpServer> server_;
  std::atomic<bool> down_requested_{false};
  std::atomic<bool> shut_down_{false};
  bool state_written_ = false;
  std::vector<pid_t> written_groups_;
};

// The client side of the control API, found through the state file.
class SupervisorClient {
 public:
  // kNotFound when no deployment runs under `run_root` (see FindDeployment).
  static absl::StatusOr<SupervisorClient> Connect(const std::string& run_root,
                                                  const std::string& name);
  explicit SupervisorClient(StateFile state) : state_(std::move(state)) {}

  const StateFile& state() const { return state_; }
  // True while the supervisor process exists.
  bool SupervisorAlive() const;

  absl::StatusOr<DeploymentStatus> Status() const;
  absl::Status Scale(const std::string& target, int replicas) const;
  // Returns the generation and the changes it makes.
  absl::StatusOr<std::pair<int, std::vector<std::string>>> Apply(const std::string& spec_text,
                                                                 const std::string& path) const;
  absl::Status RequestDown() const;

 private:
  absl::StatusOr<nlohmann::json> Call(const std::string& method, const std::string& path,
                                      const nlohmann::json& body) const;
  StateFile state_;
};

// For a deployment whose supervisor died: SIGTERM every process group the state file lists,
// SIGKILL what is left after `grace`, remove the state file. Returns how many groups existed.
int CleanUpStaleDeployment(const StateFile& state, absl::Duration grace);

}  // namespace tandem::deploy
