#include "deploy/supervisor.h"

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "core/logging.h"
#include "core/status.h"
#include "deploy/internal/http_call.h"
#include "deploy/process.h"
#include "net/http_server.h"

namespace tandem::deploy {
namespace {

using nlohmann::json;

std::string RandomToken() {
  unsigned char bytes[16] = {};
  std::ifstream random("/dev/urandom", std::ios::binary);
  random.read(reinterpret_cast<char*>(bytes), sizeof(bytes));
  if (!random) {
    // Never expected on Linux; still better than a constant.
    uint64_t mixed = static_cast<uint64_t>(absl::GetCurrentTimeNanos()) ^
                     (static_cast<uint64_t>(::getpid()) << 32);
    for (unsigned char& byte : bytes) {
      mixed = mixed * 6364136223846793005ULL + 1442695040888963407ULL;
      byte = static_cast<unsigned char>(mixed >> 56);
    }
  }
  std::string token;
  for (unsigned char byte : bytes) absl::StrAppendFormat(&token, "%02x", byte);
  return token;
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
      return 409;
    default:
      return 500;
  }
}

absl::Status StatusForHttp(int http_status, const std::string& message) {
  switch (http_status) {
    case 400:
      return absl::InvalidArgumentError(message);
    case 401:
      return absl::PermissionDeniedError(message);
    case 404:
      return absl::NotFoundError(message);
    case 409:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

void ReplyStatus(net::HttpExchange& exchange, const absl::Status& status) {
  exchange.ReplyError(HttpStatusFor(status), std::string(status.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Supervisor>> Supervisor::Start(
    DeploymentSpec spec, SupervisorOptions options, OrchestratorOptions orchestrator_options) {
  auto supervisor = std::unique_ptr<Supervisor>(new Supervisor());
  StateFile& state = supervisor->state_;
  state.name = spec.name;
  state.spec_path = options.spec_path;
  state.run_dir = absl::StrCat(options.run_root, "/", spec.name);
  if (absl::StatusOr<StateFile> existing = ReadStateFile(StateFilePath(state.run_dir));
      existing.ok()) {
    if (ProcessExists(existing->supervisor_pid)) {
      return absl::AlreadyExistsError(
          absl::StrCat("deployment '", spec.name, "' is already running (supervisor pid ",
                       existing->supervisor_pid, ", ", StateFilePath(state.run_dir),
                       "); stop it with `tandem down` or use another --run-dir"));
    }
    int leftovers = CleanUpStaleDeployment(*existing, absl::Seconds(5));
    if (leftovers > 0) {
      LogWarn("stopped processes left by a previous supervisor", {{"groups", leftovers}});
    }
  }
  state.token = RandomToken();
  state.supervisor_pid = ::getpid();
  state.started_at = absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());

  orchestrator_options.run_dir = state.run_dir;
  orchestrator_options.spec_path = options.spec_path;
  orchestrator_options.control_token = state.token;
  // Workers and the router authenticate each other (control API, heartbeats, KV transfers) with
  // one cluster token: the caller's TANDEM_CLUSTER_TOKEN if set (inherited), else a fresh one
  // for this deployment that never leaves its processes' environments.
  if (const char* given = std::getenv("TANDEM_CLUSTER_TOKEN"); given == nullptr || *given == 0) {
    orchestrator_options.cluster_token = RandomToken();
  }
  // The control server first: the planner is handed its URL on its command line. Nobody can
  // call it before the state file (holding the token) is written, after the orchestrator exists.
  supervisor->server_ = std::make_unique<net::HttpServer>(net::HttpServerOptions{
      .host = "127.0.0.1", .port = 0, .threads = 1, .server_name = "tandem-supervisor"});
  supervisor->InstallRoutes();
  TANDEM_RETURN_IF_ERROR(supervisor->server_->Start());
  state.control_url = absl::StrCat("http://127.0.0.1:", supervisor->server_->port());
  orchestrator_options.control_url = state.control_url;
  TANDEM_ASSIGN_OR_RETURN(supervisor->orchestrator_,
                          Orchestrator::Create(std::move(spec), orchestrator_options));
  TANDEM_RETURN_IF_ERROR(supervisor->orchestrator_->Start());
  TANDEM_RETURN_IF_ERROR(WriteStateFile(state));
  supervisor->state_written_ = true;
  return supervisor;
}

void Supervisor::InstallRoutes() {
  auto authorized = [this](net::HttpExchange& exchange) {
    const std::string* header = exchange.request().Header("authorization");
    if (header == nullptr || *header != absl::StrCat("Bearer ", state_.token)) {
      exchange.ReplyError(401, "missing or wrong bearer token (see the deployment's state.json)");
      return false;
    }
    return true;
  };
  server_->Handle("GET", "/v1/status", [this, authorized](std::shared_ptr<net::HttpExchange> x) {
    if (!authorized(*x)) return;
    x->ReplyJson(200, StatusToJson(orchestrator_->Status()).dump());
  });
  server_->Handle(
      "POST", "/v1/scale",
      [this, authorized](std::shared_ptr<net::HttpExchange> x) {
        if (!authorized(*x)) return;
        json body = json::parse(x->request().body, nullptr, false);
        if (!body.is_object() || !body.contains("target") || !body["target"].is_string() ||
            !body.contains("replicas") || !body["replicas"].is_number_integer()) {
          x->ReplyError(400, R"(expected {"target": "<role or scaling group>", "replicas": N})");
          return;
        }
        absl::Status scaled =
            orchestrator_->Scale(body["target"].get<std::string>(), body["replicas"].get<int>());
        if (!scaled.ok()) return ReplyStatus(*x, scaled);
        x->ReplyJson(200, json{{"target", body["target"]}, {"replicas", body["replicas"]}}.dump());
      },
      {.json_body = true});
  server_->Handle(
      "POST", "/v1/apply",
      [this, authorized](std::shared_ptr<net::HttpExchange> x) {
        if (!authorized(*x)) return;
        json body = json::parse(x->request().body, nullptr, false);
        if (!body.is_object() || !body.contains("spec") || !body["spec"].is_string()) {
          x->ReplyError(400, R"(expected {"spec": "<deployment spec YAML>", "path": "..."})");
          return;
        }
        const std::string path = body.value("path", "spec.yaml");
        absl::StatusOr<DeploymentSpec> spec = ParseSpec(body["spec"].get<std::string>(), path);
        if (!spec.ok()) return ReplyStatus(*x, spec.status());
        absl::StatusOr<int> generation = orchestrator_->Apply(*std::move(spec));
        if (!generation.ok()) return ReplyStatus(*x, generation.status());
        DeploymentStatus status = orchestrator_->Status();
        x->ReplyJson(200, json{{"generation", *generation},
                               {"changes", status.update.generation == *generation
                                               ? status.update.changes
                                               : std::vector<std::string>{}}}
                              .dump());
      },
      {.json_body = true});
  server_->Handle("POST", "/v1/down", [this, authorized](std::shared_ptr<net::HttpExchange> x) {
    if (!authorized(*x)) return;
    down_requested_ = true;
    orchestrator_->RequestDown();
    x->ReplyJson(202, R"({"stopping":true})");
  });
}

void Supervisor::RefreshStateFile() {
  if (shut_down_ || !orchestrator_) return;
  std::vector<pid_t> groups = orchestrator_->ProcessGroups();
  std::sort(groups.begin(), groups.end());
  if (groups == written_groups_) return;
  state_.process_groups = groups;
  if (WriteStateFile(state_).ok()) written_groups_ = std::move(groups);
}

void Supervisor::Shutdown() {
  if (shut_down_.exchange(true)) return;
  if (orchestrator_) orchestrator_->Down();
  if (server_) server_->Shutdown(absl::Seconds(1));
  // Only our own state file: a refused start must not remove the running deployment's.
  if (state_written_) ::unlink(StateFilePath(state_.run_dir).c_str());
}

Supervisor::~Supervisor() { Shutdown(); }

absl::StatusOr<SupervisorClient> SupervisorClient::Connect(const std::string& run_root,
                                                           const std::string& name) {
  TANDEM_ASSIGN_OR_RETURN(StateFile state, FindDeployment(run_root, name));
  return SupervisorClient(std::move(state));
}

bool SupervisorClient::SupervisorAlive() const { return ProcessExists(state_.supervisor_pid); }

absl::StatusOr<json> SupervisorClient::Call(const std::string& method, const std::string& path,
                                            const json& body) const {
  std::string address(absl::StripPrefix(state_.control_url, "http://"));
  absl::StatusOr<internal::HttpCallResult> answer =
      internal::HttpCall({.address = address,
                          .method = method,
                          .path = path,
                          .body = method == "GET" ? "" : body.dump(),
                          .headers = {{"Authorization", absl::StrCat("Bearer ", state_.token)}},
                          .timeout = absl::Seconds(30)});
  if (!answer.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "the supervisor of deployment '", state_.name, "' (pid ", state_.supervisor_pid,
        ") does not answer at ", state_.control_url, ": ", answer.status().message(),
        SupervisorAlive() ? "" : "; it is not running (`tandem down` cleans up what it left)"));
  }
  json value = json::parse(answer->body, nullptr, false);
  if (answer->status >= 300) {
    std::string message = answer->body;
    if (value.is_object() && value.contains("error") && value["error"].is_object()) {
      message = value["error"].value("message", message);
    }
    return StatusForHttp(answer->status, message);
  }
  if (value.is_discarded()) {
    return absl::DataLossError(absl::StrCat(state_.control_url, path, ": answer is not JSON"));
  }
  return value;
}

absl::StatusOr<DeploymentStatus> SupervisorClient::Status() const {
  TANDEM_ASSIGN_OR_RETURN(json value, Call("GET", "/v1/status", json()));
  return StatusFromJson(value);
}

absl::Status SupervisorClient::Scale(const std::string& target, int replicas) const {
  return Call("POST", "/v1/scale", json{{"target", target}, {"replicas", replicas}}).status();
}

absl::StatusOr<std::pair<int, std::vector<std::string>>> SupervisorClient::Apply(
    const std::string& spec_text, const std::string& path) const {
  TANDEM_ASSIGN_OR_RETURN(json value,
                          Call("POST", "/v1/apply", json{{"spec", spec_text}, {"path", path}}));
  return std::make_pair(value.value("generation", 0),
                        value.value("changes", std::vector<std::string>{}));
}

absl::Status SupervisorClient::RequestDown() const {
  return Call("POST", "/v1/down", json::object()).status();
}

int CleanUpStaleDeployment(const StateFile& state, absl::Duration grace) {
  int existing = 0;
  for (pid_t group : state.process_groups) {
    if (ProcessGroupExists(group)) {
      ++existing;
      SignalProcessGroup(group, SIGTERM);
    }
  }
  const absl::Time deadline = absl::Now() + grace;
  while (absl::Now() < deadline) {
    bool any = false;
    for (pid_t group : state.process_groups) any = any || ProcessGroupExists(group);
    if (!any) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  for (pid_t group : state.process_groups) SignalProcessGroup(group, SIGKILL);
  ::unlink(StateFilePath(state.run_dir).c_str());
  return existing;
}

}  // namespace tandem::deploy
