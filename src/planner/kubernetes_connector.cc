#include "planner/kubernetes_connector.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace tandem::planner {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

constexpr char kServiceAccountDir[] = "/var/run/secrets/kubernetes.io/serviceaccount";

std::string DefaultVersion(const std::string& group) {
  if (group == "apps") return "v1";
  if (group == "grove.io") return "v1alpha1";
  if (group == "leaderworkerset.x-k8s.io") return "v1";
  return "";
}

bool ValidName(const std::string& name) {
  if (name.empty() || name.size() > 253) return false;
  for (char c : name) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-' || c == '.')) return false;
  }
  return true;
}

}  // namespace

std::string ScaleObject::Path(const std::string& kubernetes_namespace) const {
  return absl::StrCat("/apis/", group, "/", version, "/namespaces/", kubernetes_namespace, "/",
                      resource, "/", name, "/scale");
}

absl::StatusOr<ScaleObject> ParseScaleObject(const std::string& text) {
  ScaleObject object;
  std::string spec = text;
  if (size_t star = spec.find('*'); star != std::string::npos) {
    if (!absl::SimpleAtoi(spec.substr(star + 1), &object.pods_per_unit) ||
        object.pods_per_unit < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("scale target '", text, "': '*PODS' must be a positive integer"));
    }
    spec = spec.substr(0, star);
  }
  std::vector<std::string> parts = absl::StrSplit(spec, '/');
  if (parts.size() == 3) {
    object.group = parts[0];
    object.version = DefaultVersion(parts[0]);
    object.resource = parts[1];
    object.name = parts[2];
    if (object.version.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("scale target '", text, "': the API version of group '", parts[0],
                       "' is not known; write GROUP/VERSION/RESOURCE/NAME"));
    }
  } else if (parts.size() == 4) {
    object.group = parts[0];
    object.version = parts[1];
    object.resource = parts[2];
    object.name = parts[3];
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "scale target '", text,
        "' must be GROUP/RESOURCE/NAME[*PODS] or GROUP/VERSION/RESOURCE/NAME[*PODS], e.g. "
        "apps/statefulsets/demo-decode"));
  }
  for (const std::string* part : {&object.group, &object.version, &object.resource, &object.name}) {
    if (!ValidName(*part)) {
      return absl::InvalidArgumentError(
          absl::StrCat("scale target '", text, "': '", *part,
                       "' is not a valid Kubernetes name (lower-case letters, digits, '-', '.')"));
    }
  }
  return object;
}

absl::StatusOr<KubernetesOptions> InClusterOptions(Env& env) {
  KubernetesOptions options;
  std::optional<std::string> host = env.GetVar("KUBERNETES_SERVICE_HOST");
  std::optional<std::string> port = env.GetVar("KUBERNETES_SERVICE_PORT");
  if (!host.has_value() || !port.has_value()) {
    return absl::FailedPreconditionError(
        "not running in a Kubernetes pod: KUBERNETES_SERVICE_HOST/PORT are unset "
        "(use the local connector outside a cluster)");
  }
  options.host = *host;
  if (!absl::SimpleAtoi(*port, &options.port) || options.port <= 0 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("KUBERNETES_SERVICE_PORT '", *port, "' is not a port number"));
  }
  std::string dir = kServiceAccountDir;
  absl::StatusOr<std::string> token = env.ReadFile(dir + "/token");
  if (!token.ok()) return Annotate(token.status(), "service account token");
  options.token = std::string(absl::StripAsciiWhitespace(*token));
  options.ca_file = dir + "/ca.crt";
  if (!env.FileExists(options.ca_file)) {
    return absl::NotFoundError(absl::StrCat("service account CA '", options.ca_file, "' missing"));
  }
  absl::StatusOr<std::string> ns = env.ReadFile(dir + "/namespace");
  if (!ns.ok()) return Annotate(ns.status(), "service account namespace");
  options.kubernetes_namespace = std::string(absl::StripAsciiWhitespace(*ns));
  return options;
}

struct KubernetesScaleConnector::Impl {
  asio::io_context io;
  asio::ssl::context tls{asio::ssl::context::tls_client};

  // One request on a fresh TLS connection (the planner acts every few seconds at most).
  absl::StatusOr<http::response<http::string_body>> Send(const KubernetesOptions& options,
                                                         http::verb verb, const std::string& path,
                                                         const std::string& body,
                                                         const std::string& content_type) {
    beast::ssl_stream<beast::tcp_stream> stream(io, tls);
    beast::error_code error;
    auto fail = [&](const std::string& what) {
      return absl::UnavailableError(absl::StrCat("Kubernetes API ", options.host, ":", options.port,
                                                 ": ", what, ": ", error.message()));
    };
    if (!SSL_set_tlsext_host_name(stream.native_handle(), options.host.c_str())) {
      return absl::InternalError("cannot set TLS server name");
    }
    stream.set_verify_callback(asio::ssl::host_name_verification(options.host));
    asio::ip::tcp::resolver resolver(io);
    auto endpoints = resolver.resolve(options.host, std::to_string(options.port), error);
    if (error) return fail("cannot resolve");
    beast::get_lowest_layer(stream).expires_after(std::chrono::milliseconds(options.timeout_ms));
    beast::get_lowest_layer(stream).connect(endpoints, error);
    if (error) return fail("cannot connect");
    stream.handshake(asio::ssl::stream_base::client, error);
    if (error) return fail("TLS handshake failed (is --kubernetes-ca the cluster's CA?)");
    http::request<http::string_body> request{verb, path, 11};
    request.set(http::field::host, options.host);
    request.set(http::field::user_agent, "tandem-planner");
    request.set(http::field::accept, "application/json");
    request.set(http::field::authorization, "Bearer " + options.token);
    if (!body.empty()) {
      request.set(http::field::content_type, content_type);
      request.body() = body;
      request.prepare_payload();
    }
    http::write(stream, request, error);
    if (error) return fail("write failed");
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(1 << 20);
    http::read(stream, buffer, parser, error);
    if (error) return fail("read failed");
    stream.shutdown(error);  // the server may close first; not an error for us
    return parser.release();
  }
};

KubernetesScaleConnector::KubernetesScaleConnector(KubernetesOptions options,
                                                   std::vector<RoleScaleTargets> targets,
                                                   std::unique_ptr<Impl> impl)
    : options_(std::move(options)), targets_(std::move(targets)), impl_(std::move(impl)) {}

KubernetesScaleConnector::~KubernetesScaleConnector() = default;

absl::StatusOr<std::unique_ptr<KubernetesScaleConnector>> KubernetesScaleConnector::Create(
    KubernetesOptions options, std::vector<RoleScaleTargets> targets) {
  if (options.host.empty() || options.kubernetes_namespace.empty() || options.token.empty()) {
    return absl::InvalidArgumentError(
        "Kubernetes connector: the API server host, namespace and token are required");
  }
  for (const RoleScaleTargets& target : targets) {
    if (target.role != "prefill" && target.role != "decode") {
      return absl::InvalidArgumentError(absl::StrCat("Kubernetes connector: role '", target.role,
                                                     "' is not known (prefill, decode)"));
    }
  }
  auto impl = std::make_unique<Impl>();
  beast::error_code error;
  impl->tls.set_verify_mode(asio::ssl::verify_peer);
  impl->tls.load_verify_file(options.ca_file, error);
  if (error) {
    return absl::InvalidArgumentError(absl::StrCat("Kubernetes CA file '", options.ca_file,
                                                   "' cannot be loaded: ", error.message()));
  }
  return std::unique_ptr<KubernetesScaleConnector>(
      new KubernetesScaleConnector(std::move(options), std::move(targets), std::move(impl)));
}

namespace {

absl::Status FromHttp(int status, const std::string& body, const std::string& what) {
  std::string message = body;
  nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object() && parsed.contains("message") &&
      parsed["message"].is_string()) {
    message = parsed["message"].get<std::string>();
  }
  std::string text = absl::StrCat(what, ": HTTP ", status, ": ", message.substr(0, 300));
  switch (status) {
    case 401:
      return absl::UnauthenticatedError(text);
    case 403:
      return absl::PermissionDeniedError(absl::StrCat(
          text, " (the planner's Role must allow get and patch on this scale subresource)"));
    case 404:
      return absl::NotFoundError(text);
    case 409:
      return absl::AbortedError(text);
    case 422:
      return absl::InvalidArgumentError(text);
    default:
      return status >= 500 ? absl::UnavailableError(text) : absl::InternalError(text);
  }
}

}  // namespace

absl::StatusOr<int> KubernetesScaleConnector::GetReplicas(const ScaleObject& object) {
  std::string path = object.Path(options_.kubernetes_namespace);
  ++requests_;
  auto response = impl_->Send(options_, http::verb::get, path, "", "");
  if (!response.ok()) return response.status();
  if (response->result_int() != 200) {
    return FromHttp(response->result_int(), response->body(), "GET " + path);
  }
  nlohmann::json scale = nlohmann::json::parse(response->body(), nullptr, false);
  if (scale.is_discarded() || !scale.is_object()) {
    return absl::DataLossError(absl::StrCat("GET ", path, ": the answer is not a JSON object"));
  }
  // autoscaling/v1 Scale: spec.replicas is omitted when 0.
  const nlohmann::json* spec = scale.contains("spec") ? &scale["spec"] : nullptr;
  if (spec == nullptr || !spec->is_object()) {
    return absl::DataLossError(absl::StrCat("GET ", path, ": the Scale object has no spec"));
  }
  if (!spec->contains("replicas")) return 0;
  if (!(*spec)["replicas"].is_number_integer()) {
    return absl::DataLossError(absl::StrCat("GET ", path, ": spec.replicas is not an integer"));
  }
  return (*spec)["replicas"].get<int>();
}

absl::Status KubernetesScaleConnector::SetReplicas(const ScaleObject& object, int replicas) {
  std::string path = object.Path(options_.kubernetes_namespace);
  ++requests_;
  std::string body = nlohmann::json{{"spec", {{"replicas", replicas}}}}.dump();
  auto response =
      impl_->Send(options_, http::verb::patch, path, body, "application/merge-patch+json");
  if (!response.ok()) return response.status();
  if (response->result_int() != 200) {
    return FromHttp(response->result_int(), response->body(), "PATCH " + path);
  }
  return absl::OkStatus();
}

absl::Status KubernetesScaleConnector::Apply(const Decision& decision) {
  for (const RoleScaleTargets& target : targets_) {
    int instances = target.role == "prefill" ? decision.prefill.target : decision.decode.target;
    for (const ScaleObject& object : target.objects) {
      int want = instances * object.pods_per_unit;
      absl::StatusOr<int> have = GetReplicas(object);
      if (!have.ok()) return have.status();
      if (*have == want) continue;
      absl::Status status = SetReplicas(object, want);
      if (status.code() == absl::StatusCode::kAborted) status = SetReplicas(object, want);
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<ReplicaCounts> KubernetesScaleConnector::Current() {
  ReplicaCounts counts;
  for (const RoleScaleTargets& target : targets_) {
    if (target.objects.empty()) continue;
    const ScaleObject& object = target.objects.front();
    absl::StatusOr<int> replicas = GetReplicas(object);
    if (!replicas.ok()) return replicas.status();
    const int instances = *replicas / object.pods_per_unit;
    (target.role == "prefill" ? counts.prefill : counts.decode) = instances;
  }
  return counts;
}

absl::StatusOr<std::vector<RoleScaleTargets>> KubernetesTargets(
    const std::vector<ScaleTarget>& targets) {
  std::vector<RoleScaleTargets> roles;
  for (const ScaleTarget& target : targets) {
    const UnitComposition& c = target.composition;
    if (c.prefill + c.decode == 0) {
      return absl::InvalidArgumentError(CompositionFromName(target.name).status().message());
    }
    if (c.prefill > 0 && c.decode > 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--scale '", target.name,
          "': the Kubernetes connector scales one role per target; scale a scaling group's roles "
          "as separate targets"));
    }
    RoleScaleTargets role{c.prefill > 0 ? "prefill" : "decode", {}};
    for (const std::string& resource : target.resources) {
      absl::StatusOr<ScaleObject> object = ParseScaleObject(resource);
      if (!object.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--scale '", target.name, "': ", object.status().message()));
      }
      role.objects.push_back(*object);
    }
    roles.push_back(std::move(role));
  }
  return roles;
}

}  // namespace tandem::planner
