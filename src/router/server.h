// RouterServer: the `tandem router` process — the OpenAI-compatible front end (POST
// /v1/completions and /v1/chat/completions, streaming or not; GET /v1/models), the worker
// registry (heartbeats and a static list), the KV index fed by every worker's event stream,
// routing with conditional disaggregation, admission control, and migration of streams off a
// decode worker that dies. docs/routing.md describes the behaviour and every parameter.
//
//   RouterServerOptions options;
//   options.model = "models/demo.gguf";
//   options.static_workers = {"http://127.0.0.1:8101"};
//   TANDEM_ASSIGN_OR_RETURN(auto router, RouterServer::Create(options));
//   TANDEM_RETURN_IF_ERROR(router->Start());
//   ... router->port() ...
//   router->Shutdown(absl::Seconds(30));
//
// Threads: `threads` HTTP loops parse, authenticate and tokenize; `upstream_threads` loops run
// the streams to workers and every request's state machine (a request stays on one loop); one
// housekeeping thread polls static workers, expires silent ones and follows KV streams.
//
// Thread-safety: Start and Shutdown from one thread; the rest is internal.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/metrics.h"
#include "router/admission.h"
#include "router/kv_router.h"
#include "router/openai_api.h"

namespace tandem::router {

struct RouterServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: the OS picks one
  int threads = 2;
  int upstream_threads = 2;

  std::string model;              // GGUF file, Hugging Face folder or random:<preset>
  std::string served_model_name;  // empty: derived from `model`
  std::string chat_template;      // override: a built-in name or Jinja source

  std::vector<std::string> static_workers;  // polled on GET /v1/info
  std::vector<std::string> api_keys;        // empty: no key required
  std::string cluster_token;                // sent to workers; required of heartbeats when set

  KvRouter::Options routing;
  // Transfers into a worker are costed with the KV bytes per token its /v1/info reports
  // (kv.block_bytes / kv.block_size); false: routing.routing.kv_bytes_per_token for every
  // worker (--kv-bytes-per-token). docs/routing.md "KV bytes per token".
  bool learn_kv_bytes_per_token = true;
  AdmissionConfig admission;
  ApiLimits limits;  // max_tokens is lowered to the model's context length

  int64_t max_queued = 1024;  // requests waiting for a worker slot at once; beyond: 429
  absl::Duration queue_timeout = absl::Seconds(30);     // waiting longer: 429 (or 503)
  absl::Duration request_timeout = absl::Seconds(600);  // whole request; beyond: 504
  absl::Duration prefill_timeout = absl::Seconds(30);   // given to the decode worker
  int max_migrations = 3;                               // per sequence
  int max_streams_per_worker = 0;                       // 0: no limit
  absl::Duration heartbeat_timeout = absl::Seconds(3);  // three missed 1 s heartbeats
  absl::Duration poll_interval = absl::Seconds(1);      // static workers' /v1/info
  bool access_log = false;
  std::string planner_url;  // a planner whose decisions /dashboard shows; empty: none
};

class RouterServer {
 public:
  // Loads the tokenizer and chat template, validates the options (kInvalidArgument naming the
  // option) and builds the router; nothing listens yet.
  static absl::StatusOr<std::unique_ptr<RouterServer>> Create(RouterServerOptions options);
  ~RouterServer();

  absl::Status Start();
  int port() const;
  // Stops taking requests (/ready answers 503), lets streams finish within `grace`, then stops.
  void Shutdown(absl::Duration grace);
  // /ready answers 503 from now on; requests still run.
  void BeginDrain();

  MetricsRegistry& metrics();

  class Impl;

 private:
  explicit RouterServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::router
