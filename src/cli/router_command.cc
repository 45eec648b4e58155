// `tandem router`: the OpenAI-compatible front end that routes requests to prefill and decode
// workers (docs/routing.md).
//
//   tandem router --listen 127.0.0.1:8000 --model models/demo.gguf
//   tandem router --listen 0.0.0.0:8000 --model random:tiny --worker http://127.0.0.1:8101
//       --api-key sk-local --cluster-token secret --topology links.yaml
//
// SIGTERM or SIGINT drains: /ready answers 503, requests in flight finish (up to
// --drain-timeout), then the process exits.
#include <signal.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "core/env.h"
#include "core/latency_profile.h"
#include "core/logging.h"
#include "core/status.h"
#include "router/routing_policy.h"
#include "router/server.h"
#include "router/topology.h"
#include "worker/options.h"

namespace tandem::cli {
namespace {

struct RouterCommandOptions {
  std::string listen = "127.0.0.1:8000";
  std::string model;
  std::string served_model_name;
  std::string chat_template;
  std::vector<std::string> workers;
  std::vector<std::string> api_keys;
  std::string cluster_token;
  std::string topology;
  std::string latency_profile;
  int threads = 2;
  int upstream_threads = 2;
  // Routing (docs/routing.md "Parameters").
  int block_size = 16;
  double overlap_weight = 1.0;
  double routing_temperature = 0.0;
  bool disaggregation = true;
  int64_t local_prefill_max_uncached_tokens = 512;
  int32_t prefill_queue_limit = 8;
  double prefill_queue_weight = 1.0;
  double transfer_weight = 0.1;
  std::optional<int64_t> kv_bytes_per_token;  // unset: each worker's, from its /v1/info
  int64_t forecast_output_tokens = 256;
  int max_indexed_workers = 64;
  uint64_t seed = 0;
  // Admission, deadlines, migration.
  int64_t max_in_flight = 256;
  int64_t max_queued = 1024;
  double queue_timeout_seconds = 30;
  double request_timeout_seconds = 600;
  double prefill_timeout_seconds = 30;
  int max_migrations = 3;
  int max_streams_per_worker = 0;
  double heartbeat_timeout_seconds = 3;
  double poll_interval_seconds = 1;
  double drain_timeout_seconds = 30;
  int max_n = 16;
  bool access_log = false;
  std::string planner_url;
};

absl::StatusOr<std::pair<std::string, int>> ParseListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", listen, "' is not HOST:PORT (e.g. 127.0.0.1:8000)"));
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, port);
}

absl::StatusOr<std::string> ReadFile(const std::string& path, const char* flag) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " '", path, "': cannot open (", std::strerror(errno), ")"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

int RunRouter(const CLI::App* command, const RouterCommandOptions& o) {
  absl::Status required = RequireOptions(command, {"model"});
  if (!required.ok()) return ReportError(command, required);
  absl::StatusOr<std::pair<std::string, int>> listen = ParseListen(o.listen);
  if (!listen.ok()) return ReportError(command, listen.status());

  router::RouterServerOptions options;
  options.host = listen->first;
  options.port = listen->second;
  options.threads = o.threads;
  options.upstream_threads = o.upstream_threads;
  options.model = o.model;
  options.served_model_name = o.served_model_name;
  options.chat_template = o.chat_template;
  options.static_workers = o.workers;
  options.api_keys = o.api_keys;
  // The workers' rule: on loopback without a token, the per-user default token file that local
  // workers use too; beyond loopback, a token must be given.
  absl::StatusOr<std::string> token = worker::ResolveClusterToken(
      o.cluster_token, worker::IsLoopbackHost(listen->first), Env::Default());
  if (!token.ok()) return ReportError(command, token.status());
  options.cluster_token = *token;
  router::RoutingConfig& routing = options.routing.routing;
  routing.block_size = o.block_size;
  routing.overlap_weight = o.overlap_weight;
  routing.temperature = o.routing_temperature;
  routing.disaggregation = o.disaggregation;
  routing.local_prefill_max_uncached_tokens = o.local_prefill_max_uncached_tokens;
  routing.prefill_queue_limit = o.prefill_queue_limit;
  routing.prefill_queue_weight = o.prefill_queue_weight;
  routing.transfer_weight = o.transfer_weight;
  if (o.kv_bytes_per_token.has_value()) {
    // The operator's value wins over what the workers report.
    routing.kv_bytes_per_token = *o.kv_bytes_per_token;
    options.learn_kv_bytes_per_token = false;
  }
  routing.forecast_output_tokens = o.forecast_output_tokens;
  options.routing.index.max_workers = o.max_indexed_workers;
  options.routing.seed = o.seed;
  if (!o.topology.empty()) {
    absl::StatusOr<std::string> text = ReadFile(o.topology, "--topology");
    if (!text.ok()) return ReportError(command, text.status());
    absl::StatusOr<router::LinkTable> links = router::ParseLinkTable(*text, o.topology);
    if (!links.ok()) return ReportError(command, links.status());
    routing.links = *links;
  }
  // Outlives the server, which keeps a pointer to it in the routing config.
  std::unique_ptr<LatencyModel> latency_model;
  std::unique_ptr<router::ProfiledPrefillLatency> prefill_latency;
  if (!o.latency_profile.empty()) {
    absl::StatusOr<LatencyProfile> profile = ReadLatencyProfile(Env::Default(), o.latency_profile);
    if (!profile.ok()) return ReportError(command, profile.status());
    absl::StatusOr<LatencyModel> model = LatencyModel::Create(*profile);
    if (!model.ok()) return ReportError(command, model.status());
    latency_model = std::make_unique<LatencyModel>(*std::move(model));
    prefill_latency = std::make_unique<router::ProfiledPrefillLatency>(*latency_model);
    routing.latency_model = prefill_latency.get();
  }
  options.admission.max_in_flight = o.max_in_flight;
  options.limits.max_n = o.max_n;
  options.max_queued = o.max_queued;
  options.queue_timeout = absl::Seconds(o.queue_timeout_seconds);
  options.request_timeout = absl::Seconds(o.request_timeout_seconds);
  options.prefill_timeout = absl::Seconds(o.prefill_timeout_seconds);
  options.max_migrations = o.max_migrations;
  options.max_streams_per_worker = o.max_streams_per_worker;
  options.heartbeat_timeout = absl::Seconds(o.heartbeat_timeout_seconds);
  options.poll_interval = absl::Seconds(o.poll_interval_seconds);
  options.access_log = o.access_log;
  options.planner_url = o.planner_url;

  // Signals are taken synchronously; block them before any thread starts so all inherit it.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<std::unique_ptr<router::RouterServer>> server =
      router::RouterServer::Create(std::move(options));
  if (!server.ok()) return ReportError(command, server.status());
  absl::Status started = (*server)->Start();
  if (!started.ok()) return ReportError(command, started);
  int signal = 0;
  while (signal <= 0) {
    timespec wait{1, 0};
    signal = ::sigtimedwait(&signals, nullptr, &wait);
  }
  LogInfo("router draining", {{"signal", std::string(::strsignal(signal))}});
  (*server)->BeginDrain();
  (*server)->Shutdown(absl::Seconds(o.drain_timeout_seconds));
  LogInfo("router stopped");
  return 0;
}

void RegisterRouter(CLI::App& root) {
  auto* router = root.add_subcommand(
      "router", "Serve the OpenAI API and route requests to prefill and decode workers");
  auto o = std::make_shared<RouterCommandOptions>();
  router->add_option("--listen", o->listen, "HOST:PORT to serve on")->capture_default_str();
  router->add_option("--model", o->model,
                     "The model the workers serve (GGUF file, Hugging Face folder or "
                     "random:<preset>), for its tokenizer and chat template");
  router->add_option("--served-model-name", o->served_model_name,
                     "The model name clients use (default: derived from --model)");
  router->add_option("--chat-template", o->chat_template,
                     "Override the model's chat template: a built-in name or Jinja source");
  router->add_option("--worker", o->workers,
                     "A worker URL to poll (repeatable); workers may also register themselves");
  router->add_option("--api-key", o->api_keys,
                     "An API key clients must send as 'Authorization: Bearer KEY' (repeatable)");
  router->add_option("--cluster-token", o->cluster_token,
                     "Token for the worker control API and worker heartbeats");
  router->add_option("--topology", o->topology, "YAML link table (docs/routing.md)");
  router->add_option("--latency-profile", o->latency_profile,
                     "Latency profile from `tandem profile`: prefill costs in seconds");
  router->add_option("--threads", o->threads, "HTTP threads")->capture_default_str();
  router
      ->add_option("--upstream-threads", o->upstream_threads,
                   "Threads running the streams to workers")
      ->capture_default_str();
  router->add_option("--block-size", o->block_size, "Tokens per KV block (the engines')")
      ->capture_default_str();
  router
      ->add_option("--overlap-weight", o->overlap_weight,
                   "Weight of uncached prefill blocks against decode blocks")
      ->capture_default_str();
  router
      ->add_option("--routing-temperature", o->routing_temperature,
                   "0: lowest cost wins; > 0: softmax sampling over normalised costs")
      ->capture_default_str();
  router
      ->add_option("--disaggregation", o->disaggregation,
                   "Allow prefill on separate prefill workers (true/false)")
      ->capture_default_str();
  router
      ->add_option("--local-prefill-max-uncached-tokens", o->local_prefill_max_uncached_tokens,
                   "At most this many uncached prompt tokens: prefill on the decode worker")
      ->capture_default_str();
  router
      ->add_option("--prefill-queue-limit", o->prefill_queue_limit,
                   "Queued jobs at which a prefill worker is saturated")
      ->capture_default_str();
  router
      ->add_option("--prefill-queue-weight", o->prefill_queue_weight,
                   "Weight of a prefill worker's queued work")
      ->capture_default_str();
  router
      ->add_option("--transfer-weight", o->transfer_weight,
                   "Cost of a same-host block transfer, in blocks of prefill")
      ->capture_default_str();
  router->add_option(
      "--kv-bytes-per-token", o->kv_bytes_per_token,
      absl::StrCat("KV cache bytes per token for every transfer's cost (default: each worker's, "
                   "from its /v1/info; ",
                   router::RoutingConfig{}.kv_bytes_per_token, " until one reports)"));
  router
      ->add_option("--forecast-output-tokens", o->forecast_output_tokens,
                   "Output tokens a request is expected to add")
      ->capture_default_str();
  router
      ->add_option("--max-indexed-workers", o->max_indexed_workers,
                   "Workers the KV index tracks at once (1..4096)")
      ->capture_default_str();
  router->add_option("--seed", o->seed, "Seed of the routing RNG (tie breaks, sampling)")
      ->capture_default_str();
  router
      ->add_option("--max-in-flight", o->max_in_flight,
                   "Requests admitted at once; beyond: 429 with Retry-After")
      ->capture_default_str();
  router
      ->add_option("--max-queued", o->max_queued,
                   "Admitted requests waiting for a worker slot at once; beyond: 429")
      ->capture_default_str();
  router
      ->add_option("--queue-timeout", o->queue_timeout_seconds,
                   "Seconds a request may wait for a worker slot")
      ->capture_default_str();
  router
      ->add_option("--request-timeout", o->request_timeout_seconds,
                   "Seconds a whole request may take; beyond: 504")
      ->capture_default_str();
  router
      ->add_option("--prefill-timeout", o->prefill_timeout_seconds,
                   "Seconds a decode worker waits for its remote prefill")
      ->capture_default_str();
  router
      ->add_option("--max-migrations", o->max_migrations,
                   "Times one stream may move off a failed decode worker")
      ->capture_default_str();
  router
      ->add_option("--max-streams-per-worker", o->max_streams_per_worker,
                   "Streams the router keeps open on one decode worker (0: no limit)")
      ->capture_default_str();
  router
      ->add_option("--heartbeat-timeout", o->heartbeat_timeout_seconds,
                   "Seconds without a heartbeat after which a worker is gone")
      ->capture_default_str();
  router
      ->add_option("--poll-interval", o->poll_interval_seconds,
                   "Seconds between polls of the static workers' /v1/info")
      ->capture_default_str();
  router
      ->add_option("--drain-timeout", o->drain_timeout_seconds,
                   "Seconds in-flight requests may take after SIGTERM")
      ->capture_default_str();
  router->add_option("--max-n", o->max_n, "Largest 'n' a request may ask for")
      ->capture_default_str();
  router->add_flag("--access-log", o->access_log, "Log every HTTP request");
  router->add_option("--planner", o->planner_url,
                     "Planner URL whose decisions the /dashboard page charts");
  SetAction(router, [router, o]() -> int { return RunRouter(router, *o); });
}

}  // namespace

TANDEM_REGISTER_COMMAND(RegisterRouter);

}  // namespace tandem::cli
