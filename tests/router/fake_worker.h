// FakeWorker: a worker that speaks the worker control API of docs/protocols.md (`/v1/info`,
// `/v1/generate` as SSE, `/v1/prefill`, `/v1/kv/events` with snapshots, `/ready`, `/metrics`,
// heartbeats to a router) without an engine, for the router's tests. It "generates" a
// deterministic greedy continuation — each next token is a function of the whole context — so a
// stream resubmitted with prompt + tokens so far continues exactly as the original would have.
// Prompts are hashed into KV blocks exactly as engines publish them, so routing by prefix
// works against it.
//
//   FakeWorker worker({.role = "decode", .token_ids = ids, .token_delay = absl::Milliseconds(5)});
//   ASSERT_TRUE(worker.Start().ok());
//   ... worker.url() ... worker.Kill();   // cuts every connection, like kill -9
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "net/http_server.h"
#include "router/kv_index.h"

namespace tandem::router::testing {

struct FakeWorkerOptions {
  std::string role = "both";       // prefill, decode, both
  std::vector<int32_t> token_ids;  // tokens it may generate (must not be empty)
  int block_size = 16;
  absl::Duration token_delay = absl::Milliseconds(2);  // zero: answer each request at once
  std::string router_url;                              // empty: no heartbeats
  absl::Duration heartbeat_interval = absl::Milliseconds(100);
  std::string cluster_token;
  std::string host = "host-a";
  std::string rack = "rack-0";
  int64_t capacity_blocks = 0;
  uint64_t epoch = 0;  // 0: random
  std::string model = "random-tiny";
  // The "kv" object of its /v1/info as JSON text; empty: none (a worker that does not say, which
  // the router warns about once). Not checked, so tests can send bad layouts. The default is a
  // layout of the router's default cost, 131072 bytes per token, as a real worker always sends
  // one.
  std::string info_kv = R"({"block_size": 16, "block_bytes": 2097152})";
};

class FakeWorker {
 public:
  explicit FakeWorker(FakeWorkerOptions options);
  ~FakeWorker();

  absl::Status Start();
  // Stops everything abruptly: open streams are cut mid-way, heartbeats stop.
  void Kill();
  // Restarts on the same port with a new epoch and an empty cache.
  absl::Status Restart();

  std::string url() const;
  int port() const { return port_; }
  uint64_t epoch() const;

  void SetDraining(bool draining);
  void SetReady(bool ready);
  void SetHeartbeats(bool on) { heartbeats_on_ = on; }
  // Publishes the next KV event with an id that skips one (the router must resync).
  void InjectEventGap() { gap_pending_ = true; }

  // Greedy continuation of `context` (the same function for every fake worker).
  static int32_t NextToken(const std::vector<int32_t>& context,
                           const std::vector<int32_t>& token_ids);

  int64_t generate_requests() const { return generate_requests_.load(); }
  int64_t prefill_requests() const { return prefill_requests_.load(); }
  int64_t remote_prefills() const { return remote_prefills_.load(); }
  int active_streams() const;
  int64_t held_blocks() const;  // blocks of running streams (the fake's "active KV")
  int64_t snapshots_served() const { return snapshots_served_.load(); }

 private:
  struct Stream;
  struct Subscriber;
  void RegisterRoutes();
  void Generator();
  // Emits the stream's next token (or its end); true when the stream has finished.
  bool Step(Stream& stream);
  void Heartbeater();
  void StoreBlocks(const std::vector<int32_t>& tokens);
  std::string InfoJson(bool heartbeat) const;

  FakeWorkerOptions options_;
  int port_ = 0;
  std::unique_ptr<net::HttpServer> server_;
  std::thread generator_;
  std::thread heartbeater_;
  std::atomic<bool> running_{false};
  std::atomic<bool> heartbeats_on_{true};
  std::atomic<bool> gap_pending_{false};
  std::atomic<int64_t> generate_requests_{0};
  std::atomic<int64_t> prefill_requests_{0};
  std::atomic<int64_t> remote_prefills_{0};
  std::atomic<int64_t> snapshots_served_{0};

  mutable absl::Mutex mu_;
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
  bool ready_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Subscriber>> subscribers_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);  // JSON of events 1..N
  std::vector<BlockHash> held_ ABSL_GUARDED_BY(mu_);
  uint64_t next_event_id_ ABSL_GUARDED_BY(mu_) = 1;
};

}  // namespace tandem::router::testing
