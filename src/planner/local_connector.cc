#include "planner/local_connector.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"

namespace tandem::planner {
namespace {

using nlohmann::json;

}  // namespace

absl::StatusOr<LocalOrchestrator> LocalOrchestratorFromEnvironment(Env& env, std::string url,
                                                                   const std::string& state_file) {
  LocalOrchestrator orchestrator;
  orchestrator.url = std::move(url);
  orchestrator.token = env.GetVar("TANDEM_ORCHESTRATOR_TOKEN").value_or("");
  if ((orchestrator.url.empty() || orchestrator.token.empty()) && !state_file.empty()) {
    absl::StatusOr<std::string> text = env.ReadFile(state_file);
    if (!text.ok()) {
      return absl::Status(text.status().code(),
                          absl::StrCat("orchestrator state file: ", text.status().message()));
    }
    json state = json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (!state.is_object() || !state.contains("control_url") || !state["control_url"].is_string() ||
        !state.contains("token") || !state["token"].is_string()) {
      return absl::DataLossError(absl::StrCat(
          "orchestrator state file '", state_file,
          "' is not a JSON object with string 'control_url' and 'token' (is it the state.json "
          "that `tandem up` writes?)"));
    }
    if (orchestrator.url.empty()) orchestrator.url = state["control_url"].get<std::string>();
    if (orchestrator.token.empty()) orchestrator.token = state["token"].get<std::string>();
  }
  if (orchestrator.url.empty()) {
    return absl::InvalidArgumentError(
        "the local connector needs the orchestrator's control URL: --orchestrator URL, or "
        "--orchestrator-state RUN_DIR/NAME/state.json");
  }
  if (orchestrator.token.empty()) {
    return absl::InvalidArgumentError(
        "the local connector needs the orchestrator's token: set TANDEM_ORCHESTRATOR_TOKEN (the "
        "orchestrator does so for the planner it starts), or pass --orchestrator-state "
        "RUN_DIR/NAME/state.json");
  }
  while (!orchestrator.url.empty() && orchestrator.url.back() == '/') orchestrator.url.pop_back();
  return orchestrator;
}

LocalScaleConnector::LocalScaleConnector(LocalOrchestrator orchestrator,
                                         std::vector<ScaleTarget> targets)
    : orchestrator_(std::move(orchestrator)), targets_(std::move(targets)) {}

absl::StatusOr<std::string> LocalScaleConnector::Call(const std::string& method,
                                                      const std::string& path,
                                                      const std::string& body) {
  net::HttpClientRequest request;
  request.method = method;
  request.url = orchestrator_.url + path;
  request.body = body;
  request.headers = {{"Authorization", absl::StrCat("Bearer ", orchestrator_.token)}};
  request.timeout = orchestrator_.timeout;
  absl::StatusOr<net::HttpResult> answer = net::HttpClient::Fetch(request);
  if (!answer.ok()) {
    return absl::Status(answer.status().code(),
                        absl::StrCat(method, " ", request.url, ": ", answer.status().message()));
  }
  if (answer->status / 100 == 2) return answer->body;
  std::string message = answer->body;
  json error = json::parse(answer->body, nullptr, /*allow_exceptions=*/false);
  if (error.is_object() && error.contains("error") && error["error"].is_object() &&
      error["error"].contains("message") && error["error"]["message"].is_string()) {
    message = error["error"]["message"].get<std::string>();
  }
  message = absl::StrCat(method, " ", request.url, " answered ", answer->status, ": ", message);
  switch (answer->status) {
    case 400:
      return absl::InvalidArgumentError(message);
    case 401:
    case 403:
      return absl::PermissionDeniedError(message);
    case 404:
      return absl::NotFoundError(message);
    case 409:
      return absl::FailedPreconditionError(message);
    default:
      return absl::UnavailableError(message);
  }
}

absl::Status LocalScaleConnector::Resolve() {
  ignored_.clear();
  absl::StatusOr<std::string> body = Call("GET", "/v1/status", "");
  if (!body.ok()) return body.status();
  json status = json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (!status.is_object() || !status.contains("roles") || !status["roles"].is_array() ||
      !status.contains("units") || !status["units"].is_array()) {
    return absl::DataLossError(
        absl::StrCat("GET ", orchestrator_.url, "/v1/status: not a deployment status"));
  }
  std::map<std::string, int> unit_desired;
  for (const json& unit : status["units"]) {
    unit_desired[unit.value("name", "")] = unit.value("desired", 0);
  }
  for (ScaleTarget& target : targets_) {
    UnitComposition composition;
    bool known = unit_desired.count(target.name) > 0;
    for (const json& role : status["roles"]) {
      if (role.value("unit", "") != target.name) continue;
      known = true;
      const std::string kind = role.value("kind", "");
      if (kind != "prefill" && kind != "decode") continue;
      // Instances of this role in one replica of its unit.
      const int units = unit_desired.count(target.name) ? unit_desired[target.name] : 0;
      const int desired = role.value("desired", 0);
      const int per_unit = role.value("unit", "") == role.value("name", "") || units <= 0
                               ? 1
                               : std::max(1, desired / units);
      (kind == "prefill" ? composition.prefill : composition.decode) += per_unit;
    }
    if (!known) {
      return absl::NotFoundError(
          absl::StrCat("scale target '", target.name,
                       "': the deployment has no role or scaling group of that name"));
    }
    target.composition = composition;
  }
  // A unit holding neither (an aggregated `worker` role) is not the planner's to size: it is
  // left alone, and said so.
  std::vector<ScaleTarget> kept;
  for (ScaleTarget& target : targets_) {
    if (target.composition.prefill + target.composition.decode == 0) {
      ignored_.push_back(absl::StrCat(
          "scale target '", target.name,
          "' holds no prefill or decode role (the planner sizes only those); left alone"));
    } else {
      kept.push_back(std::move(target));
    }
  }
  targets_ = std::move(kept);
  resolved_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, int>> LocalScaleConnector::DesiredUnits() {
  absl::StatusOr<std::string> body = Call("GET", "/v1/status", "");
  if (!body.ok()) return body.status();
  json status = json::parse(*body, nullptr, /*allow_exceptions=*/false);
  if (!status.is_object() || !status.contains("units") || !status["units"].is_array()) {
    return absl::DataLossError(
        absl::StrCat("GET ", orchestrator_.url, "/v1/status: not a deployment status"));
  }
  std::map<std::string, int> desired;
  for (const json& unit : status["units"])
    desired[unit.value("name", "")] = unit.value("desired", 0);
  return desired;
}

absl::Status LocalScaleConnector::Apply(const Decision& decision) {
  if (!resolved_) {
    absl::Status resolved = Resolve();
    if (!resolved.ok()) return resolved;
  }
  absl::StatusOr<std::map<std::string, int>> desired = DesiredUnits();
  if (!desired.ok()) return desired.status();
  for (const ScaleTarget& target : targets_) {
    const int units = UnitsFor(target, decision);
    auto it = desired->find(target.name);
    if (it != desired->end() && it->second == units) continue;
    ++scale_calls_;
    absl::StatusOr<std::string> answer =
        Call("POST", "/v1/scale", json{{"target", target.name}, {"replicas", units}}.dump());
    if (!answer.ok()) {
      // A renamed or removed unit: resolve again next time.
      if (absl::IsNotFound(answer.status())) resolved_ = false;
      return answer.status();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ReplicaCounts> LocalScaleConnector::Current() {
  if (!resolved_) {
    absl::Status resolved = Resolve();
    if (!resolved.ok()) return resolved;
  }
  absl::StatusOr<std::map<std::string, int>> desired = DesiredUnits();
  if (!desired.ok()) return desired.status();
  ReplicaCounts counts;
  for (const ScaleTarget& target : targets_) {
    auto it = desired->find(target.name);
    if (it == desired->end()) {
      resolved_ = false;
      return absl::NotFoundError(
          absl::StrCat("scale target '", target.name, "' is no longer in the deployment's status"));
    }
    counts.prefill += it->second * target.composition.prefill;
    counts.decode += it->second * target.composition.decode;
  }
  return counts;
}

}  // namespace tandem::planner
