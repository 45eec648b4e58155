#include "router/server.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/logging.h"
#include "core/status.h"
#include "dashboard/dashboard.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "router/kv_subscriber.h"
#include "router/prompt_renderer.h"
#include "router/router_metrics.h"
#include "router/router_state.h"
#include "router/stop_matcher.h"

namespace tandem::router {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

double SecondsSince(SteadyClock::time_point start) {
  return std::chrono::duration<double>(SteadyClock::now() - start).count();
}

std::string RandomHex(int digits) {
  static std::atomic<uint64_t> counter{0};
  uint64_t x = static_cast<uint64_t>(SteadyClock::now().time_since_epoch().count()) ^
               (counter.fetch_add(1) * 0x9e3779b97f4a7c15ULL);
  std::string out;
  static constexpr char kHex[] = "0123456789abcdef";
  while (static_cast<int>(out.size()) < digits) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    for (int i = 0; i < 16 && static_cast<int>(out.size()) < digits; ++i) {
      out.push_back(kHex[(x >> (4 * i)) & 15]);
    }
    x += 0x9e3779b97f4a7c15ULL;
  }
  return out;
}

// A request id a client supplied is echoed when it is printable and short.
bool UsableRequestId(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
           c == ':';
  });
}

std::string_view RoleLabel(WorkerRole role) {
  switch (role) {
    case WorkerRole::kPrefill:
      return "prefill";
    case WorkerRole::kDecode:
      return "decode";
    default:
      return "both";
  }
}

// Replaces every byte that does not start a complete, valid UTF-8 character with U+FFFD. The
// decoder only splits text between characters, so applying this to each piece gives the same
// text whether the pieces are streamed or joined: streamed and non-streamed answers agree even
// for tokens that are not valid UTF-8 on their own.
std::string ValidUtf8(std::string text) {
  size_t i = 0;
  while (i < text.size() && static_cast<unsigned char>(text[i]) < 0x80) ++i;
  if (i == text.size()) return text;  // ASCII: the common case
  std::string out = text.substr(0, i);
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    size_t length = 0;
    uint32_t min = 0;
    if (c < 0x80) {
      length = 1;
    } else if (c >= 0xC2 && c <= 0xDF) {
      length = 2;
      min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
      length = 3;
      min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
      length = 4;
      min = 0x10000;
    }
    bool valid = length > 0 && i + length <= text.size();
    uint32_t code = length == 1 ? c : (c & (0x7F >> length));
    for (size_t k = 1; valid && k < length; ++k) {
      const unsigned char next = static_cast<unsigned char>(text[i + k]);
      valid = (next & 0xC0) == 0x80;
      code = (code << 6) | (next & 0x3F);
    }
    valid = valid && code >= min && code <= 0x10FFFF && !(code >= 0xD800 && code <= 0xDFFF);
    if (valid) {
      out.append(text, i, length);
      i += length;
    } else {
      out += "\xEF\xBF\xBD";
      ++i;
    }
  }
  return out;
}

// One choice of one request: its prompt, what the workers generated so far, and the stream
// that currently produces it.
struct Sequence {
  int index = 0;
  const std::vector<int32_t>* prompt = nullptr;
  int64_t max_tokens = 0;
  std::vector<int32_t> generated;
  std::unique_ptr<model::StreamDecoder> decoder;
  std::unique_ptr<StopMatcher> stop;
  std::string text;                            // non-streaming: the answer so far
  std::vector<TokenLogprob> logprobs;          // non-streaming
  std::vector<TokenLogprob> pending_logprobs;  // streaming: not yet sent with text
  std::string finish_reason;
  bool done = false;
  bool sent_first_chunk = false;

  // The current attempt.
  std::shared_ptr<net::SseClient> stream;
  uint64_t route_id = 0;
  WorkerId decode_worker = 0;
  std::string decode_url;
  bool attempt_first_token = false;
  int migrations = 0;
  bool migrated = false;
  std::vector<WorkerId> excluded;
  int64_t cached_tokens = -1;  // from the first attempt's usage
  SteadyClock::time_point last_token_time;
  SteadyClock::time_point first_token_time;
  SteadyClock::time_point dispatch_time;
  json timing;  // the first attempt's timing, for the TTFT spans
};

}  // namespace

class RouterServer::Impl {
 public:
  explicit Impl(RouterServerOptions options) : options_(std::move(options)) {}

  absl::Status Init();
  absl::Status Start();
  void Shutdown(absl::Duration grace);

  struct Request;

  RouterServerOptions options_;
  std::string served_name_;
  std::unique_ptr<PromptRenderer> renderer_;
  std::unique_ptr<RouterState> state_;
  std::unique_ptr<AdmissionController> admission_;
  MetricsRegistry registry_;
  std::unique_ptr<RouterMetrics> metrics_;
  std::unique_ptr<net::HttpServer> server_;
  std::unique_ptr<dashboard::Dashboard> dashboard_;  // after server_: destroyed first
  std::unique_ptr<net::EventLoopGroup> upstream_;
  std::unique_ptr<net::EventLoop> kv_loop_;
  std::unique_ptr<KvSubscriber> subscriber_;
  std::thread housekeeper_;
  std::mutex housekeeping_mu_;
  std::condition_variable housekeeping_cv_;
  bool stopping_ = false;                 // guarded by housekeeping_mu_
  std::vector<std::string> new_workers_;  // guarded by housekeeping_mu_: to check once
  std::atomic<bool> draining_{false};
  std::atomic<bool> started_{false};
  std::atomic<uint64_t> next_route_id_{1};
  std::atomic<int64_t> queued_{0};
  std::atomic<size_t> next_loop_{0};

  // HTTP handlers (server loop threads).
  void HandleApi(ApiKind kind, std::shared_ptr<net::HttpExchange> exchange);
  void HandleModels(std::shared_ptr<net::HttpExchange> exchange);
  void HandleHeartbeat(std::shared_ptr<net::HttpExchange> exchange);
  void HandleWorkers(std::shared_ptr<net::HttpExchange> exchange);
  bool CheckApiKey(net::HttpExchange& exchange);
  bool CheckClusterToken(net::HttpExchange& exchange);
  void ReplyApiError(net::HttpExchange& exchange, const ApiError& error,
                     const std::string& request_id, int64_t retry_after = 0);

  // Request state machine (the request's upstream loop thread).
  void StartRequest(const std::shared_ptr<Request>& request);
  void Dispatch(const std::shared_ptr<Request>& request, Sequence& seq);
  void OnWorkerEvent(const std::shared_ptr<Request>& request, Sequence& seq, uint64_t route_id,
                     const net::SseEvent& event);
  void OnWorkerDone(const std::shared_ptr<Request>& request, Sequence& seq, uint64_t route_id,
                    absl::Status status, int http_status, const std::string& body);
  void OnToken(const std::shared_ptr<Request>& request, Sequence& seq, const json& event);
  void EmitText(const std::shared_ptr<Request>& request, Sequence& seq, std::string text,
                bool final_chunk);
  void FinishSequence(const std::shared_ptr<Request>& request, Sequence& seq,
                      std::string finish_reason);
  void EndAttempt(Sequence& seq, bool cancel_stream);
  void Migrate(const std::shared_ptr<Request>& request, Sequence& seq, const std::string& why);
  void FailRequest(const std::shared_ptr<Request>& request, const ApiError& error,
                   const std::string& outcome, int64_t retry_after = 0);
  void CancelRequest(const std::shared_ptr<Request>& request);
  void CompleteRequest(const std::shared_ptr<Request>& request);
  // Ends the request: its accounting (admission, the outcome counter, e2e), then `reply` (the
  // last bytes to the client), then lets the exchange go. The accounting comes first so that a
  // client that reads /metrics right after its answer finds the request counted.
  void ReleaseRequest(const std::shared_ptr<Request>& request, const std::string& outcome,
                      const std::function<void()>& reply);
  void EnsureStreamStarted(const std::shared_ptr<Request>& request);

  void Housekeeping();
  void PollStaticWorkers();
  void CheckNewWorkers();
  void WarnOnBlockSize(const std::string& url, int32_t block_size);
  void LearnKvLayout(const WorkerReport& info);
  void UpdateWorkerGauges();
};

struct RouterServer::Impl::Request {
  net::EventLoop* loop = nullptr;
  std::shared_ptr<net::HttpExchange> exchange;
  std::shared_ptr<net::SseStream> sse;
  ApiRequest api;
  ResponseMeta meta;
  std::string request_id;
  std::string endpoint;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<Sequence> sequences;
  int remaining = 0;
  AdmissionController::Ticket ticket;
  SteadyClock::time_point arrival;
  SteadyClock::time_point queue_deadline;
  bool first_token_sent = false;
  bool finished = false;
  bool queued = false;  // counted in queued_
  int queue_retries = 0;
  int64_t prompt_tokens = 0;
};

namespace {

ApiError MakeError(int status, std::string type, std::string message, std::string code = {}) {
  ApiError error;
  error.http_status = status;
  error.type = std::move(type);
  error.message = std::move(message);
  error.code = std::move(code);
  return error;
}

}  // namespace

absl::Status RouterServer::Impl::Init() {
  if (options_.model.empty()) {
    return absl::InvalidArgumentError(
        "--model is required: the model file (or random:<preset>) the workers serve, for its "
        "tokenizer and chat template");
  }
  if (options_.threads < 1 || options_.upstream_threads < 1) {
    return absl::InvalidArgumentError("--threads and --upstream-threads must be at least 1");
  }
  if (options_.max_migrations < 0) {
    return absl::InvalidArgumentError("--max-migrations must be 0 or more");
  }
  if (options_.max_queued < 0) return absl::InvalidArgumentError("--max-queued must be 0 or more");
  if (options_.admission.max_in_flight < 1) {
    return absl::InvalidArgumentError("--max-in-flight must be at least 1");
  }
  if (options_.queue_timeout <= absl::ZeroDuration() ||
      options_.request_timeout <= absl::ZeroDuration() ||
      options_.heartbeat_timeout <= absl::ZeroDuration() ||
      options_.poll_interval <= absl::ZeroDuration() ||
      options_.prefill_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("timeouts and intervals must be positive");
  }
  TANDEM_ASSIGN_OR_RETURN(renderer_,
                          PromptRenderer::Create(options_.model, options_.chat_template));
  served_name_ = options_.served_model_name.empty() ? renderer_->default_model_name()
                                                    : options_.served_model_name;
  options_.limits.max_tokens = std::min<int64_t>(options_.limits.max_tokens,
                                                 std::max<int64_t>(1, renderer_->context_length()));
  RouterState::Options state_options;
  state_options.routing = options_.routing;
  state_options.registry.heartbeat_timeout_micros =
      absl::ToInt64Microseconds(options_.heartbeat_timeout);
  state_options.max_streams_per_worker = options_.max_streams_per_worker;
  state_options.learn_kv_bytes_per_token = options_.learn_kv_bytes_per_token;
  TANDEM_ASSIGN_OR_RETURN(state_, RouterState::Create(state_options));
  admission_ = std::make_unique<AdmissionController>(options_.admission);
  metrics_ = std::make_unique<RouterMetrics>(registry_);
  for (std::string& url : options_.static_workers) url = NormalizeWorkerUrl(url);
  return absl::OkStatus();
}

absl::Status RouterServer::Impl::Start() {
  net::HttpServerOptions http;
  http.host = options_.host;
  http.port = options_.port;
  http.threads = options_.threads;
  http.server_name = "tandem-router";
  if (options_.access_log) {
    http.access_log = [](const net::AccessLogEntry& entry) {
      LogInfo("http", {{"method", entry.method},
                       {"path", entry.path},
                       {"status", static_cast<int64_t>(entry.status)},
                       {"seconds", entry.seconds},
                       {"remote", entry.remote_address}});
    };
  }
  server_ = std::make_unique<net::HttpServer>(http);
  server_->Handle("POST", "/v1/completions",
                  [this](auto x) { HandleApi(ApiKind::kCompletion, std::move(x)); });
  server_->Handle("POST", "/v1/chat/completions",
                  [this](auto x) { HandleApi(ApiKind::kChat, std::move(x)); });
  server_->Handle("GET", "/v1/models", [this](auto x) { HandleModels(std::move(x)); });
  server_->Handle("POST", "/v1/workers/heartbeat",
                  [this](auto x) { HandleHeartbeat(std::move(x)); });
  server_->Handle("GET", "/v1/workers", [this](auto x) { HandleWorkers(std::move(x)); });
  // The epoch names this process incarnation, as the workers' does.
  const std::string health =
      json({{"status", "ok"}, {"role", "router"}, {"epoch", RandomHex(16)}}).dump();
  server_->Handle("GET", "/health",
                  [health](std::shared_ptr<net::HttpExchange> x) { x->ReplyJson(200, health); });
  // Ready means "takes registrations and requests": workers start after the router (they
  // register with it), so a router waiting for workers before it is ready would deadlock every
  // `startsAfter: [router]`. Whether a decode worker is there yet is reported in the body; the
  // API answers 503 while there is none.
  // Ready means serving: the router is what workers register with (they start after it), so
  // it cannot wait for them. Whether a decode worker is there is in the body.
  server_->Handle("GET", "/ready", [this](std::shared_ptr<net::HttpExchange> x) {
    if (draining_.load()) {
      x->Reply(
          {.status = 503, .body = R"({"status":"draining"})", .headers = {{"Retry-After", "1"}}});
      return;
    }
    x->ReplyJson(200,
                 json({{"status", "ready"}, {"decode_workers_ready", state_->CanServe()}}).dump());
  });
  server_->Handle("GET", "/metrics", [this](std::shared_ptr<net::HttpExchange> x) {
    UpdateWorkerGauges();
    x->ReplyText(200, registry_.RenderPrometheus(), "text/plain; version=0.0.4");
  });
  dashboard_ = std::make_unique<dashboard::Dashboard>(
      dashboard::DashboardOptions{.planner_url = options_.planner_url});
  dashboard_->AddRoutes(*server_);

  upstream_ = std::make_unique<net::EventLoopGroup>(options_.upstream_threads, "router-up");
  kv_loop_ = std::make_unique<net::EventLoop>("router-kv");
  subscriber_ =
      std::make_unique<KvSubscriber>(*kv_loop_, *state_,
                                     KvSubscriber::Options{.cluster_token = options_.cluster_token,
                                                           .events = &metrics_->kv_events,
                                                           .resyncs = &metrics_->kv_resyncs});
  TANDEM_RETURN_IF_ERROR(server_->Start());
  housekeeper_ = std::thread([this] { Housekeeping(); });
  started_ = true;
  LogInfo("router listening",
          {{"address", absl::StrCat(options_.host, ":", server_->port())},
           {"model", served_name_},
           {"static_workers", static_cast<int64_t>(options_.static_workers.size())}});
  return absl::OkStatus();
}

void RouterServer::Impl::Shutdown(absl::Duration grace) {
  if (!started_.exchange(false)) return;
  draining_ = true;
  {
    std::lock_guard<std::mutex> lock(housekeeping_mu_);
    stopping_ = true;
  }
  housekeeping_cv_.notify_all();
  if (housekeeper_.joinable()) housekeeper_.join();
  // Streams to clients finish (or are cut at the end of the grace period) while the upstream
  // loops still carry their workers' tokens.
  server_->Shutdown(grace);
  subscriber_->Stop();
  kv_loop_->Stop();
  upstream_->Stop();
}

// ---------------------------------------------------------------------------------------------
// HTTP front end

void RouterServer::Impl::ReplyApiError(net::HttpExchange& exchange, const ApiError& error,
                                       const std::string& request_id, int64_t retry_after) {
  net::HttpResponse response;
  response.status = error.http_status;
  response.body = FormatError(error);
  if (!request_id.empty()) response.headers.emplace_back("x-request-id", request_id);
  if (retry_after > 0) response.headers.emplace_back("Retry-After", absl::StrCat(retry_after));
  exchange.Reply(std::move(response));
}

bool RouterServer::Impl::CheckApiKey(net::HttpExchange& exchange) {
  if (options_.api_keys.empty()) return true;
  const std::string* header = exchange.request().Header("authorization");
  if (header != nullptr && absl::StartsWithIgnoreCase(*header, "bearer ")) {
    std::string key(absl::StripAsciiWhitespace(header->substr(7)));
    for (const std::string& allowed : options_.api_keys) {
      // Constant-time compare: the key is a secret.
      if (allowed.size() != key.size()) continue;
      unsigned char diff = 0;
      for (size_t i = 0; i < key.size(); ++i) diff |= allowed[i] ^ key[i];
      if (diff == 0) return true;
    }
  }
  ReplyApiError(exchange,
                MakeError(401, "invalid_request_error",
                          header == nullptr ? "missing API key: send 'Authorization: Bearer <key>'"
                                            : "the API key is not valid",
                          "invalid_api_key"),
                "");
  return false;
}

bool RouterServer::Impl::CheckClusterToken(net::HttpExchange& exchange) {
  if (options_.cluster_token.empty()) return true;
  const std::string* header = exchange.request().Header("authorization");
  std::string expected = absl::StrCat("Bearer ", options_.cluster_token);
  if (header != nullptr && header->size() == expected.size()) {
    unsigned char diff = 0;
    for (size_t i = 0; i < expected.size(); ++i) diff |= (*header)[i] ^ expected[i];
    if (diff == 0) return true;
  }
  exchange.ReplyError(401, "missing or wrong cluster token", "unauthenticated");
  return false;
}

void RouterServer::Impl::HandleModels(std::shared_ptr<net::HttpExchange> exchange) {
  if (!CheckApiKey(*exchange)) return;
  json body = {{"object", "list"},
               {"data", json::array({{{"id", served_name_},
                                      {"object", "model"},
                                      {"created", 0},
                                      {"owned_by", "tandem"},
                                      {"max_model_len", renderer_->context_length()}}})}};
  exchange->ReplyJson(200, body.dump());
}

void RouterServer::Impl::HandleHeartbeat(std::shared_ptr<net::HttpExchange> exchange) {
  if (!CheckClusterToken(*exchange)) return;
  absl::StatusOr<WorkerReport> report = ParseWorkerReport(exchange->request().body);
  if (!report.ok()) {
    exchange->ReplyError(400, std::string(report.status().message()), "invalid_request");
    return;
  }
  absl::StatusOr<RegistryChange> change = state_->Report(*report, NowMicros(), false);
  if (!change.ok()) {
    exchange->ReplyError(429, std::string(change.status().message()), "too_many_workers");
    return;
  }
  if (change->added && !report->model.empty() && !renderer_->Matches(report->model, served_name_)) {
    LogWarn("worker serves another model",
            {{"worker", report->url}, {"model", report->model}, {"router", served_name_}});
  }
  if (change->added) {
    LogInfo("worker registered", {{"worker", report->url},
                                  {"role", std::string(RoleLabel(report->role))},
                                  {"epoch", report->epoch},
                                  {"restarted", change->retired.has_value()}});
    subscriber_->Sync(state_->KvSources());
    std::lock_guard<std::mutex> lock(housekeeping_mu_);
    new_workers_.push_back(report->url);
  }
  exchange->ReplyJson(200, json({{"status", "ok"}, {"worker_id", change->id}}).dump());
}

void RouterServer::Impl::HandleWorkers(std::shared_ptr<net::HttpExchange> exchange) {
  if (!CheckApiKey(*exchange)) return;
  const KvBytesPerTokenInUse kv_bytes = state_->kv_bytes_per_token();
  json workers = json::array();
  for (const RegisteredWorker& worker : state_->Workers()) {
    const WorkerReport& r = worker.report;
    std::string health;
    switch (WorkerRegistry::StateOf(worker)) {
      case WorkerHealth::kReady:
        health = "ready";
        break;
      case WorkerHealth::kDraining:
        health = "draining";
        break;
      default:
        health = "not_ready";
    }
    workers.push_back({{"id", worker.id},
                       {"url", r.url},
                       {"role", RoleLabel(r.role)},
                       {"epoch", r.epoch},
                       {"state", health},
                       {"static", worker.from_static_list},
                       {"active_blocks", r.active_blocks},
                       {"capacity_blocks", r.capacity_blocks},
                       {"prefill_queue_requests", r.prefill_queue_requests},
                       {"streams", state_->streams_on(worker.id)}});
    // Not in kv_bytes: registered since it was read, so it has reported no layout yet.
    auto in_use = kv_bytes.workers.find(worker.id);
    const KvBytesPerToken used =
        in_use != kv_bytes.workers.end() ? in_use->second : kv_bytes.fallback;
    json& entry = workers.back();
    entry["kv_bytes_per_token"] = used.value;
    entry["kv_bytes_per_token_source"] = KvBytesSourceName(used.source);
    entry["reported_kv_bytes_per_token"] =
        worker.kv_bytes_per_token > 0 ? json(worker.kv_bytes_per_token) : json(nullptr);
  }
  exchange->ReplyJson(
      200, json({{"workers", workers},
                 {"kv_bytes_per_token", kv_bytes.fallback.value},
                 {"kv_bytes_per_token_source", KvBytesSourceName(kv_bytes.fallback.source)}})
               .dump());
}

void RouterServer::Impl::HandleApi(ApiKind kind, std::shared_ptr<net::HttpExchange> exchange) {
  const auto arrival = SteadyClock::now();
  const std::string endpoint = kind == ApiKind::kChat ? "chat" : "completions";
  std::string request_id;
  if (const std::string* given = exchange->request().Header("x-request-id");
      given != nullptr && UsableRequestId(*given)) {
    request_id = *given;
  } else {
    request_id = RandomHex(24);
  }
  auto client_error = [&](const ApiError& error, int64_t retry_after = 0,
                          const char* outcome = "client_error") {
    metrics_->requests.Get(endpoint, outcome).Increment();
    ReplyApiError(*exchange, error, request_id, retry_after);
  };
  if (!CheckApiKey(*exchange)) {
    metrics_->requests.Get(endpoint, "client_error").Increment();
    return;
  }
  if (draining_.load()) {
    return client_error(
        MakeError(503, "server_error", "the router is shutting down", "service_unavailable"), 1,
        "rejected");
  }
  if (const std::string* type = exchange->request().Header("content-type");
      type != nullptr && !absl::StartsWithIgnoreCase(*type, "application/json")) {
    ApiError error = MakeError(415, "invalid_request_error",
                               absl::StrCat("the body must be JSON with 'Content-Type: "
                                            "application/json', got '",
                                            *type, "'"),
                               "unsupported_media_type");
    return client_error(error);
  }
  ApiParseResult parsed = ParseApiRequest(kind, exchange->request().body, options_.limits);
  if (auto* error = std::get_if<ApiError>(&parsed)) return client_error(*error);
  auto request = std::make_shared<Request>();
  request->api = std::move(std::get<ApiRequest>(parsed));
  if (!renderer_->Matches(request->api.model, served_name_)) {
    ApiError error = MakeError(
        404, "invalid_request_error",
        absl::StrCat("the model '", request->api.model, "' does not exist; this router serves '",
                     served_name_, "' (GET /v1/models)"),
        "model_not_found");
    error.param = "model";
    return client_error(error);
  }
  absl::StatusOr<std::vector<std::vector<int32_t>>> prompts = renderer_->Render(request->api);
  if (!prompts.ok()) {
    ApiError error = ErrorFromStatus(prompts.status());
    error.param = kind == ApiKind::kChat ? "messages" : "prompt";
    return client_error(error);
  }
  request->prompts = *std::move(prompts);
  const int64_t context = renderer_->context_length();
  for (const std::vector<int32_t>& prompt : request->prompts) {
    const int64_t tokens = static_cast<int64_t>(prompt.size());
    const int64_t wanted = request->api.max_tokens > 0 ? request->api.max_tokens : 1;
    if (tokens + wanted > context) {
      ApiError error =
          MakeError(400, "invalid_request_error",
                    absl::StrCat("this model's maximum context length is ", context,
                                 " tokens; the prompt ", "has ", tokens, " tokens and ", wanted,
                                 " more were requested; shorten the prompt or lower max_tokens"),
                    "context_length_exceeded");
      error.param = request->api.max_tokens > 0 ? "max_tokens" : "messages";
      return client_error(error);
    }
  }
  absl::StatusOr<AdmissionController::Ticket> ticket = admission_->Admit(NowMicros());
  if (!ticket.ok()) {
    return client_error(MakeError(429, "rate_limit_error",
                                  "the router is at its limit of requests in flight; retry after "
                                  "the time in Retry-After",
                                  "rate_limit_exceeded"),
                        admission_->RetryAfterSeconds(NowMicros()), "rejected");
  }
  request->ticket = *ticket;
  request->arrival = arrival;
  request->queue_deadline = arrival + absl::ToChronoMicroseconds(options_.queue_timeout);
  request->exchange = exchange;
  request->request_id = request_id;
  request->endpoint = endpoint;
  request->meta.id = absl::StrCat(kind == ApiKind::kChat ? "chatcmpl-" : "cmpl-", request_id);
  request->meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                              std::chrono::system_clock::now().time_since_epoch())
                              .count();
  request->meta.model = served_name_;
  request->loop = &upstream_->At(next_loop_.fetch_add(1) % upstream_->size());
  metrics_->active_requests.Add(1);

  const model::Tokenizer& tokenizer = renderer_->tokenizer();
  const int n = request->api.n;
  request->sequences.resize(request->prompts.size() * n);
  for (size_t p = 0; p < request->prompts.size(); ++p) {
    const int64_t prompt_tokens = static_cast<int64_t>(request->prompts[p].size());
    request->prompt_tokens += prompt_tokens;
    for (int j = 0; j < n; ++j) {
      Sequence& seq = request->sequences[p * n + j];
      seq.index = static_cast<int>(p * n + j);
      seq.prompt = &request->prompts[p];
      seq.max_tokens =
          request->api.max_tokens > 0 ? request->api.max_tokens : context - prompt_tokens;
      seq.decoder = std::make_unique<model::StreamDecoder>(tokenizer, /*skip_special=*/true);
      seq.stop = std::make_unique<StopMatcher>(request->api.stop);
      if (request->api.echo) {
        seq.text = p < request->api.prompts.size()
                       ? request->api.prompts[p]
                       : tokenizer.Decode(request->prompts[p], /*skip_special=*/true);
      }
    }
  }
  request->remaining = static_cast<int>(request->sequences.size());
  metrics_->prompt_tokens.Increment(static_cast<double>(request->prompt_tokens));

  std::weak_ptr<Request> weak = request;
  exchange->OnClientGone([this, weak] {
    if (auto r = weak.lock()) r->loop->Post([this, r] { CancelRequest(r); });
  });
  request->loop->Post([this, request] { StartRequest(request); });
  request->loop->RunAfter(options_.request_timeout, [this, weak] {
    auto r = weak.lock();
    if (r == nullptr || r->finished) return;
    FailRequest(r,
                MakeError(504, "server_error",
                          absl::StrCat("the request did not finish within ",
                                       absl::FormatDuration(options_.request_timeout)),
                          "timeout"),
                "deadline");
  });
}

// ---------------------------------------------------------------------------------------------
// The request state machine. Everything below runs on the request's upstream loop.

void RouterServer::Impl::StartRequest(const std::shared_ptr<Request>& request) {
  if (request->finished) return;
  for (Sequence& seq : request->sequences) {
    if (request->finished) return;
    if (!seq.done && seq.stream == nullptr) Dispatch(request, seq);
  }
}

void RouterServer::Impl::Dispatch(const std::shared_ptr<Request>& request, Sequence& seq) {
  const int64_t remaining = seq.max_tokens - static_cast<int64_t>(seq.generated.size());
  if (remaining <= 0) return FinishSequence(request, seq, "length");
  std::vector<int32_t> prompt = *seq.prompt;
  prompt.insert(prompt.end(), seq.generated.begin(), seq.generated.end());
  const uint64_t route_id = next_route_id_.fetch_add(1);
  absl::StatusOr<RouteResult> route = state_->Route(route_id, prompt, remaining, seq.excluded);
  if (!route.ok()) {
    const bool retryable =
        absl::IsResourceExhausted(route.status()) || absl::IsUnavailable(route.status());
    const auto now = SteadyClock::now();
    if (retryable && now < request->queue_deadline) {
      if (!request->queued) {
        if (queued_.load() >= options_.max_queued) {
          if (seq.migrations > 0) metrics_->migrations.Get("failed").Increment();
          return FailRequest(request,
                             MakeError(429, "rate_limit_error",
                                       "every worker is busy and the router's queue is full; "
                                       "retry after the time in Retry-After",
                                       "rate_limit_exceeded"),
                             "rejected", admission_->RetryAfterSeconds(NowMicros()));
        }
        request->queued = true;
        queued_.fetch_add(1);
        metrics_->queue_depth.Get("all").Add(1);
      }
      // Wait for a slot: retry soon (a finishing request or a new worker frees one), backing
      // off from 5 ms to 40 ms so a full queue costs little.
      auto self = request;
      const int index = seq.index;
      const absl::Duration delay = absl::Milliseconds(5 << std::min(request->queue_retries++, 3));
      request->loop->RunAfter(delay, [this, self, index] {
        if (self->finished) return;
        Sequence& again = self->sequences[index];
        if (!again.done && again.stream == nullptr) Dispatch(self, again);
      });
      return;
    }
    if (seq.migrations > 0) metrics_->migrations.Get("failed").Increment();
    ApiError error = ErrorFromStatus(route.status());
    if (absl::IsResourceExhausted(route.status())) {
      return FailRequest(request, error, "rejected", admission_->RetryAfterSeconds(NowMicros()));
    }
    if (absl::IsUnavailable(route.status())) {
      error.message = absl::StrCat("no worker can take this request: ", route.status().message());
      return FailRequest(request, error, "rejected", 1);
    }
    return FailRequest(request, error, "error");
  }
  request->queue_retries = 0;
  if (request->queued) {
    // Leaves the queue once every sequence has a worker.
    bool all_placed = true;
    for (const Sequence& other : request->sequences) {
      if (&other != &seq && !other.done && other.stream == nullptr) all_placed = false;
    }
    if (all_placed) {
      request->queued = false;
      queued_.fetch_sub(1);
      metrics_->queue_depth.Get("all").Sub(1);
    }
  }
  const RoutingDecision& decision = route->decision;
  metrics_->routing_decisions.Get(decision.disaggregated() ? "disaggregated" : "aggregated")
      .Increment();
  seq.route_id = route_id;
  seq.decode_worker = decision.decode_worker;
  seq.decode_url = route->decode_url;
  seq.attempt_first_token = false;
  seq.dispatch_time = SteadyClock::now();

  const ApiRequest& api = request->api;
  json sampling = {{"temperature", api.temperature},
                   {"top_p", api.top_p},
                   {"top_k", api.top_k},
                   {"min_p", api.min_p},
                   {"presence_penalty", api.presence_penalty},
                   {"frequency_penalty", api.frequency_penalty},
                   {"repetition_penalty", api.repetition_penalty}};
  if (api.seed.has_value()) sampling["seed"] = *api.seed + static_cast<uint64_t>(seq.index);
  std::vector<int32_t> stop_ids = api.stop_token_ids;
  if (!api.ignore_eos) {
    for (int32_t id : renderer_->stop_token_ids()) stop_ids.push_back(id);
  }
  const std::string worker_request_id =
      absl::StrCat(request->request_id, "-", seq.index, "-", seq.migrations);
  json body = {{"request_id", worker_request_id},
               {"prompt_ids", prompt},
               {"max_tokens", remaining},
               {"sampling", sampling},
               {"stop_ids", stop_ids},
               {"ignore_eos", api.ignore_eos},
               {"logprobs", api.logprobs}};
  if (decision.disaggregated()) {
    body["prefill"] = {{"url", route->prefill_url},
                       {"timeout_ms", absl::ToInt64Milliseconds(options_.prefill_timeout)}};
  }
  net::HttpClientRequest upstream;
  upstream.method = "POST";
  upstream.url = absl::StrCat(route->decode_url, "/v1/generate");
  upstream.body = body.dump();
  upstream.timeout = absl::Seconds(10);  // connect and response header
  upstream.headers.emplace_back("x-request-id", worker_request_id);
  if (!options_.cluster_token.empty()) {
    upstream.headers.emplace_back("authorization", absl::StrCat("Bearer ", options_.cluster_token));
  }
  auto self = request;
  const int index = seq.index;
  seq.stream = net::SseClient::Open(
      *request->loop, std::move(upstream),
      [this, self, index, route_id](const net::SseEvent& event) {
        OnWorkerEvent(self, self->sequences[index], route_id, event);
      },
      [this, self, index, route_id](absl::Status status, int http_status,
                                    const std::string& error_body) {
        OnWorkerDone(self, self->sequences[index], route_id, std::move(status), http_status,
                     error_body);
      });
}

void RouterServer::Impl::OnWorkerEvent(const std::shared_ptr<Request>& request, Sequence& seq,
                                       uint64_t route_id, const net::SseEvent& event) {
  if (request->finished || seq.done || seq.route_id != route_id) return;
  json parsed = json::parse(event.data, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object()) {
    LogWarn("worker sent an unreadable event",
            {{"worker", seq.decode_url}, {"request", request->request_id}});
    return Migrate(request, seq, "unreadable event");
  }
  if (parsed.contains("token")) return OnToken(request, seq, parsed);
  if (auto error = parsed.find("error"); error != parsed.end()) {
    std::string code, message;
    if (error->is_object()) {
      code = error->value("code", "");
      message = error->value("message", "");
    }
    // A worker that is going away (draining, shutting down, lost its prefill peer and KV) is
    // the worker's problem: move the stream. Anything else is the request's.
    if (code == "unavailable" || code == "shutting_down" || code == "draining" ||
        code == "internal" || code == "resource_exhausted" || code == "aborted" ||
        code == "deadline_exceeded" || code == "cancelled" || code == "data_loss") {
      return Migrate(request, seq, absl::StrCat(code, ": ", message));
    }
    ApiError api_error =
        MakeError(code == "invalid_argument" ? 400 : 500,
                  code == "invalid_argument" ? "invalid_request_error" : "server_error",
                  absl::StrCat("worker: ", message), code);
    return FailRequest(request, api_error, code == "invalid_argument" ? "client_error" : "error");
  }
  if (auto finish = parsed.find("finish_reason"); finish != parsed.end()) {
    std::string reason = finish->is_string() ? finish->get<std::string>() : "stop";
    if (reason != "stop" && reason != "length") reason = "stop";
    if (seq.cached_tokens < 0) {
      seq.cached_tokens = 0;
      if (auto usage = parsed.find("usage"); usage != parsed.end() && usage->is_object()) {
        seq.cached_tokens = usage->value("cached_tokens", int64_t{0});
      }
      if (auto timing = parsed.find("timing"); timing != parsed.end() && timing->is_object()) {
        seq.timing = *timing;
      }
    }
    // The worker stops at max_tokens; generated tokens decide whether that happened here.
    if (static_cast<int64_t>(seq.generated.size()) >= seq.max_tokens) reason = "length";
    if (seq.migrated) metrics_->migrations.Get("ok").Increment();
    seq.migrated = false;
    EndAttempt(seq, /*cancel_stream=*/false);
    return FinishSequence(request, seq, reason);
  }
}

void RouterServer::Impl::OnToken(const std::shared_ptr<Request>& request, Sequence& seq,
                                 const json& event) {
  const json& token_value = event["token"];
  if (!token_value.is_number_integer()) return Migrate(request, seq, "malformed token event");
  const int32_t token = token_value.get<int32_t>();
  const auto now = SteadyClock::now();
  if (!seq.attempt_first_token) {
    seq.attempt_first_token = true;
    state_->PrefillDone(seq.route_id);
  }
  if (!seq.generated.empty() || seq.migrations > 0) {
    if (seq.last_token_time.time_since_epoch().count() != 0) {
      metrics_->itl.Observe(std::chrono::duration<double>(now - seq.last_token_time).count());
    }
  }
  seq.last_token_time = now;
  if (seq.generated.empty()) seq.first_token_time = now;
  seq.generated.push_back(token);
  metrics_->generated_tokens.Increment();
  if (request->api.logprobs >= 0) {
    const model::Tokenizer& tokenizer = renderer_->tokenizer();
    TokenLogprob lp;
    lp.token = std::string(tokenizer.TokenBytes(token));
    lp.logprob = event.value("logprob", 0.0);
    if (auto top = event.find("top_logprobs"); top != event.end() && top->is_array()) {
      for (const json& pair : *top) {
        if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_integer() ||
            !pair[1].is_number()) {
          continue;
        }
        if (static_cast<int>(lp.top.size()) >= request->api.logprobs) break;
        lp.top.push_back(
            {std::string(tokenizer.TokenBytes(pair[0].get<int32_t>())), pair[1].get<double>()});
      }
    }
    (request->api.stream ? seq.pending_logprobs : seq.logprobs).push_back(std::move(lp));
  }
  StopMatcher::Result piece = seq.stop->Feed(ValidUtf8(seq.decoder->Feed(token)));
  if (piece.stopped) {
    EmitText(request, seq, std::move(piece.text), false);
    EndAttempt(seq, /*cancel_stream=*/true);
    if (seq.migrated) metrics_->migrations.Get("ok").Increment();
    seq.migrated = false;
    return FinishSequence(request, seq, "stop");
  }
  EmitText(request, seq, std::move(piece.text), false);
}

void RouterServer::Impl::EnsureStreamStarted(const std::shared_ptr<Request>& request) {
  if (request->sse != nullptr || request->finished) return;
  request->sse = request->exchange->StartSse({{"x-request-id", request->request_id}});
  std::weak_ptr<Request> weak = request;
  request->sse->OnClose([this, weak](absl::Status) {
    if (auto r = weak.lock()) r->loop->Post([this, r] { CancelRequest(r); });
  });
}

void RouterServer::Impl::EmitText(const std::shared_ptr<Request>& request, Sequence& seq,
                                  std::string text, bool final_chunk) {
  if (!text.empty() && !request->first_token_sent) {
    request->first_token_sent = true;
    metrics_->ttft.Observe(SecondsSince(request->arrival));
  }
  if (!request->api.stream) {
    seq.text += text;
    return;
  }
  if (text.empty() && seq.pending_logprobs.empty() && !final_chunk) return;
  EnsureStreamStarted(request);
  Choice delta;
  delta.index = seq.index;
  delta.text = std::move(text);
  delta.logprobs = std::move(seq.pending_logprobs);
  seq.pending_logprobs.clear();
  if (final_chunk) delta.finish_reason = seq.finish_reason;
  request->sse->Send(FormatStreamChunk(request->api, request->meta, delta, !seq.sent_first_chunk));
  seq.sent_first_chunk = true;
}

void RouterServer::Impl::EndAttempt(Sequence& seq, bool cancel_stream) {
  if (seq.route_id != 0) state_->Finished(seq.route_id);
  seq.route_id = 0;
  if (seq.stream != nullptr) {
    // Closing the stream cancels the request on the worker, which frees its KV.
    if (cancel_stream) seq.stream->Cancel();
    seq.stream = nullptr;
  }
}

void RouterServer::Impl::FinishSequence(const std::shared_ptr<Request>& request, Sequence& seq,
                                        std::string finish_reason) {
  if (seq.done) return;
  seq.done = true;
  seq.finish_reason = std::move(finish_reason);
  std::string rest;
  if (!seq.stop->stopped()) {
    StopMatcher::Result tail = seq.stop->Feed(ValidUtf8(seq.decoder->Flush()));
    rest = tail.text;
    if (tail.stopped) {
      seq.finish_reason = "stop";
    } else {
      rest += seq.stop->Flush();
    }
  }
  EmitText(request, seq, std::move(rest), /*final_chunk=*/true);
  if (seq.timing.is_object() && seq.migrations == 0) {
    const double queue =
        std::chrono::duration<double>(seq.dispatch_time - request->arrival).count();
    const double prefill = seq.timing.value("prefill_ms", 0.0) / 1000;
    const double transfer = seq.timing.value("transfer_ms", 0.0) / 1000;
    metrics_->span.Get("queue").Observe(std::max(0.0, queue));
    metrics_->span.Get("prefill").Observe(std::max(0.0, prefill));
    metrics_->span.Get("kv_transfer").Observe(std::max(0.0, transfer));
    if (!seq.generated.empty()) {
      // What is left of the time to first token once queueing, prefill and transfer are taken
      // out: the decode worker's first step and the trip back.
      const double ttft =
          std::chrono::duration<double>(seq.first_token_time - request->arrival).count();
      metrics_->span.Get("first_decode").Observe(std::max(0.0, ttft - queue - prefill - transfer));
    }
  }
  if (--request->remaining == 0) CompleteRequest(request);
}

void RouterServer::Impl::OnWorkerDone(const std::shared_ptr<Request>& request, Sequence& seq,
                                      uint64_t route_id, absl::Status status, int http_status,
                                      const std::string& body) {
  if (request->finished || seq.done || seq.route_id != route_id) return;
  seq.stream = nullptr;
  if (http_status >= 400 && http_status < 500 && http_status != 408 && http_status != 409 &&
      http_status != 429) {
    // The worker refused the request itself: the same request fails anywhere.
    std::string message = body;
    json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_object()) {
      message = parsed["error"].value("message", body);
    }
    EndAttempt(seq, false);
    if (http_status == 401 || http_status == 403) {
      return FailRequest(
          request,
          MakeError(502, "server_error", "a worker refused the router's cluster token: " + message,
                    "bad_gateway"),
          "error");
    }
    return FailRequest(request, MakeError(400, "invalid_request_error", "worker: " + message),
                       "client_error");
  }
  // The connection failed, broke, or ended without a finish: the worker is gone or going.
  std::string why =
      status.ok() ? "the stream ended without a finish event" : std::string(status.message());
  // A connection refused or cut means the process is gone; a 5xx or 429 answer only that it
  // could not take this request now.
  if (http_status == 0 || (http_status >= 200 && http_status < 300)) {
    state_->MarkFailed(seq.decode_worker);
  }
  Migrate(request, seq, why);
}

void RouterServer::Impl::Migrate(const std::shared_ptr<Request>& request, Sequence& seq,
                                 const std::string& why) {
  const WorkerId failed = seq.decode_worker;
  const std::string failed_url = seq.decode_url;
  EndAttempt(seq, /*cancel_stream=*/true);
  if (seq.migrations >= options_.max_migrations) {
    if (seq.migrations > 0) metrics_->migrations.Get("failed").Increment();
    LogWarn("stream failed; no migrations left",
            {{"request", request->request_id}, {"worker", failed_url}, {"error", why}});
    return FailRequest(
        request,
        MakeError(502, "server_error",
                  absl::StrCat("the worker serving this request failed (", why, ")",
                               options_.max_migrations > 0 ? " and so did its migrations" : ""),
                  "worker_failed"),
        "error");
  }
  ++seq.migrations;
  seq.migrated = true;
  seq.excluded.push_back(failed);
  LogInfo("migrating stream", {{"request", request->request_id},
                               {"choice", static_cast<int64_t>(seq.index)},
                               {"from", failed_url},
                               {"tokens_done", static_cast<int64_t>(seq.generated.size())},
                               {"reason", why}});
  // The new worker continues from the prompt plus every token already generated.
  request->queue_deadline = SteadyClock::now() + absl::ToChronoMicroseconds(options_.queue_timeout);
  Dispatch(request, seq);
}

void RouterServer::Impl::CompleteRequest(const std::shared_ptr<Request>& request) {
  Usage usage;
  usage.prompt_tokens = request->prompt_tokens;
  std::vector<Choice> choices;
  for (Sequence& seq : request->sequences) {
    usage.completion_tokens += static_cast<int64_t>(seq.generated.size());
    if (seq.index % request->api.n == 0)
      usage.cached_tokens += std::max<int64_t>(0, seq.cached_tokens);
    Choice choice;
    choice.index = seq.index;
    choice.text = std::move(seq.text);
    choice.finish_reason = seq.finish_reason;
    choice.logprobs = std::move(seq.logprobs);
    choices.push_back(std::move(choice));
  }
  metrics_->cached_prompt_tokens.Increment(static_cast<double>(usage.cached_tokens));
  if (request->api.stream) EnsureStreamStarted(request);
  ReleaseRequest(request, "ok", [&] {
    if (request->api.stream) {
      if (request->api.include_usage) {
        request->sse->Send(FormatUsageChunk(request->api, request->meta, usage));
      }
      request->sse->Send("[DONE]");
      request->sse->Close();
    } else {
      net::HttpResponse response;
      response.body = FormatResponse(request->api, request->meta, choices, usage);
      response.headers.emplace_back("x-request-id", request->request_id);
      request->exchange->Reply(std::move(response));
    }
  });
}

void RouterServer::Impl::FailRequest(const std::shared_ptr<Request>& request, const ApiError& error,
                                     const std::string& outcome, int64_t retry_after) {
  if (request->finished) return;
  for (Sequence& seq : request->sequences) {
    if (!seq.done) EndAttempt(seq, /*cancel_stream=*/true);
  }
  ReleaseRequest(request, outcome, [&] {
    if (request->sse != nullptr) {
      // Headers went out already: the error travels as an event (the SDKs raise it).
      request->sse->Send(FormatError(error));
      request->sse->Close();
    } else {
      ReplyApiError(*request->exchange, error, request->request_id, retry_after);
    }
  });
}

void RouterServer::Impl::CancelRequest(const std::shared_ptr<Request>& request) {
  if (request->finished) return;
  for (Sequence& seq : request->sequences) {
    if (!seq.done) EndAttempt(seq, /*cancel_stream=*/true);
  }
  ReleaseRequest(request, "cancelled", [&] {
    if (request->sse != nullptr) request->sse->Close();
  });
}

void RouterServer::Impl::ReleaseRequest(const std::shared_ptr<Request>& request,
                                        const std::string& outcome,
                                        const std::function<void()>& reply) {
  if (request->finished) return;
  request->finished = true;
  if (request->queued) {
    request->queued = false;
    queued_.fetch_sub(1);
    metrics_->queue_depth.Get("all").Sub(1);
  }
  admission_->Release(request->ticket, NowMicros());
  metrics_->active_requests.Sub(1);
  metrics_->requests.Get(request->endpoint, outcome).Increment();
  metrics_->e2e.Observe(SecondsSince(request->arrival));
  reply();
  // Nothing the request holds refers back to it any more once the exchange is let go.
  request->sse = nullptr;
  request->exchange = nullptr;
}

// ---------------------------------------------------------------------------------------------
// Housekeeping: static workers, expiry, KV streams, gauges.

void RouterServer::Impl::PollStaticWorkers() {
  for (const std::string& url : options_.static_workers) {
    net::HttpClientRequest request;
    request.url = absl::StrCat(url, "/v1/info");
    request.timeout = absl::Seconds(1);
    if (!options_.cluster_token.empty()) {
      request.headers.emplace_back("authorization",
                                   absl::StrCat("Bearer ", options_.cluster_token));
    }
    absl::StatusOr<net::HttpResult> result = net::HttpClient::Fetch(request);
    if (!result.ok() || result->status != 200) continue;  // expires if it stays silent
    absl::StatusOr<WorkerReport> report = ParseWorkerReport(result->body, url);
    if (!report.ok()) {
      LogWarn("worker info unreadable", {{"worker", url}, {"error", report.status().ToString()}});
      continue;
    }
    report->url = url;
    // /v1/info does not say whether the worker is ready; /ready does.
    request.url = absl::StrCat(url, "/ready");
    absl::StatusOr<net::HttpResult> ready = net::HttpClient::Fetch(request);
    report->ready = ready.ok() && ready->status == 200;
    if (ready.ok() && ready->status == 503 && absl::StrContains(ready->body, "drain")) {
      report->draining = true;
    }
    absl::StatusOr<RegistryChange> change = state_->Report(*report, NowMicros(), true);
    if (!change.ok()) continue;
    if (change->added) {
      LogInfo("worker found", {{"worker", url},
                               {"role", std::string(RoleLabel(report->role))},
                               {"epoch", report->epoch}});
      WarnOnBlockSize(url, report->block_size);
    }
    LearnKvLayout(*report);
  }
}

void RouterServer::Impl::WarnOnBlockSize(const std::string& url, int32_t block_size) {
  // Different block sizes hash prompts differently: no prefix would ever match.
  if (block_size > 0 && block_size != state_->block_size()) {
    LogWarn(
        "worker block size differs from the router's --block-size; prefix routing will not "
        "find its cached blocks",
        {{"worker", url},
         {"worker_block_size", static_cast<int64_t>(block_size)},
         {"router_block_size", static_cast<int64_t>(state_->block_size())}});
  }
}

void RouterServer::Impl::LearnKvLayout(const WorkerReport& info) {
  const KvLayoutChange change = state_->LearnKvLayout(info);
  const int64_t configured = options_.routing.routing.kv_bytes_per_token;
  const bool learning = state_->learns_kv_bytes_per_token();
  if (change.rejected) {
    LogWarn(
        "worker KV layout ignored; transfers into it are costed as for a worker that did "
        "not report one",
        {{"worker", info.url}, {"epoch", info.epoch}, {"error", change.error}});
  }
  if (!change.learned) return;
  LogInfo("worker KV layout", {{"worker", info.url},
                               {"kv_bytes_per_token", info.kv_bytes_per_token},
                               {"used_for_transfer_costs", learning}});
  if (!learning && info.kv_bytes_per_token != configured) {
    LogWarn("worker KV bytes per token differ from --kv-bytes-per-token, which is used",
            {{"worker", info.url},
             {"worker_kv_bytes_per_token", info.kv_bytes_per_token},
             {"kv_bytes_per_token", configured}});
  }
  if (!change.disagreeing.empty()) {
    std::vector<std::string> others;
    for (const auto& [url, bytes] : change.disagreeing) {
      others.push_back(absl::StrCat(url, "=", bytes));
    }
    LogWarn(
        "workers report different KV bytes per token (different models or KV types behind "
        "one router); each worker's transfers are costed with its own, and KV cannot move "
        "between them",
        {{"worker", info.url},
         {"kv_bytes_per_token", info.kv_bytes_per_token},
         {"other_workers", absl::StrJoin(others, ",")}});
  }
}

void RouterServer::Impl::CheckNewWorkers() {
  std::vector<std::string> urls;
  {
    std::lock_guard<std::mutex> lock(housekeeping_mu_);
    urls.swap(new_workers_);
  }
  // Heartbeats do not carry the KV geometry; /v1/info does.
  for (const std::string& url : urls) {
    net::HttpClientRequest request;
    request.url = absl::StrCat(url, "/v1/info");
    request.timeout = absl::Seconds(1);
    if (!options_.cluster_token.empty()) {
      request.headers.emplace_back("authorization",
                                   absl::StrCat("Bearer ", options_.cluster_token));
    }
    absl::StatusOr<net::HttpResult> result = net::HttpClient::Fetch(request);
    if (!result.ok() || result->status != 200) continue;
    absl::StatusOr<WorkerReport> report = ParseWorkerReport(result->body, url);
    if (!report.ok()) {
      LogWarn("worker info unreadable", {{"worker", url}, {"error", report.status().ToString()}});
      continue;
    }
    WarnOnBlockSize(url, report->block_size);
    report->url = url;  // as it registered
    LearnKvLayout(*report);
  }
}

void RouterServer::Impl::UpdateWorkerGauges() {
  int counts[3][3] = {};
  for (const RegisteredWorker& worker : state_->Workers()) {
    counts[static_cast<int>(worker.report.role)]
          [static_cast<int>(WorkerRegistry::StateOf(worker))]++;
  }
  static constexpr const char* kStates[] = {"ready", "draining", "not_ready"};
  for (WorkerRole role : {WorkerRole::kPrefill, WorkerRole::kDecode, WorkerRole::kBoth}) {
    for (int s = 0; s < 3; ++s) {
      metrics_->workers.Get(std::string(RoleLabel(role)), kStates[s])
          .Set(counts[static_cast<int>(role)][s]);
    }
  }
}

void RouterServer::Impl::Housekeeping() {
  auto next_poll = SteadyClock::now();
  while (true) {
    {
      std::unique_lock<std::mutex> lock(housekeeping_mu_);
      housekeeping_cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return stopping_; });
      if (stopping_) return;
    }
    if (!options_.static_workers.empty() && SteadyClock::now() >= next_poll) {
      PollStaticWorkers();
      next_poll = SteadyClock::now() + absl::ToChronoMicroseconds(options_.poll_interval);
    }
    CheckNewWorkers();
    for (WorkerId gone : state_->Expire(NowMicros())) {
      LogInfo("worker gone (no report within the heartbeat timeout)",
              {{"worker_id", static_cast<int64_t>(gone)}});
    }
    subscriber_->Sync(state_->KvSources());
    UpdateWorkerGauges();
  }
}

// ---------------------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<RouterServer>> RouterServer::Create(RouterServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  TANDEM_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<RouterServer>(new RouterServer(std::move(impl)));
}

RouterServer::RouterServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

RouterServer::~RouterServer() { Shutdown(absl::ZeroDuration()); }

absl::Status RouterServer::Start() { return impl_->Start(); }

int RouterServer::port() const { return impl_->server_ ? impl_->server_->port() : 0; }

void RouterServer::Shutdown(absl::Duration grace) { impl_->Shutdown(grace); }

void RouterServer::BeginDrain() { impl_->draining_ = true; }

MetricsRegistry& RouterServer::metrics() { return impl_->registry_; }

}  // namespace tandem::router
