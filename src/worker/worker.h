// Worker: the `tandem worker` process — one engine, its control API (docs/protocols.md, "Worker
// control API"), its KV transfer endpoints and its registration with the router.
//
// Roles. `both` serves POST /v1/generate with local prefill and POST /v1/prefill; `decode`
// serves /v1/generate, prefilling locally or, when the request names a prefill worker, through
// that worker (decode-first: reserve blocks for the uncached part of the prompt, ask the prefill
// worker to compute and push them layer by layer, join the batch with its first token);
// `prefill` serves /v1/prefill only. Decode-side pools live in a shared-memory segment so a
// prefill worker on the same host writes KV straight into them; other hosts use TCP.
//
//   WorkerOptions options;
//   options.role = Role::kBoth;
//   options.model = "random:tiny";
//   TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<Worker> worker, Worker::Start(options));
//   ... worker->http_port() ...
//   worker->Drain();                       // SIGTERM: stop taking work,
//   worker->WaitIdle(absl::Seconds(120));  // finish what is in flight,
//   worker->Stop();                        // then close everything
//
// Every request ends: with its answer, an error event, or cancellation when its client goes;
// its KV blocks return to the pool on every worker involved (reservations also end when their
// lease passes). Bad input is answered with the status codes of docs/error-policy.md and logged.
//
// Thread-safety: Start/Stop from one thread; Drain and WaitIdle from any thread.
#pragma once

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "core/env.h"
#include "worker/options.h"

namespace tandem::worker {

class Worker {
 public:
  // Binds the control API (answering /health, and /ready with 503 while loading), loads the
  // model, starts the engine and the KV endpoints, then reports ready and starts registration.
  static absl::StatusOr<std::unique_ptr<Worker>> Start(WorkerOptions options,
                                                       Env& env = Env::Default());
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  int http_port() const;
  int kv_port() const;  // 0 for the prefill role (it only sends)
  uint64_t epoch() const;

  // Stops taking new work; /ready answers 503 from now on.
  void Drain();
  // True once no request is in flight; false when `timeout` passed first.
  bool WaitIdle(absl::Duration timeout);
  // Cancels what is left and stops every thread. Idempotent.
  void Stop();

  class Impl;

 private:
  explicit Worker(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tandem::worker
