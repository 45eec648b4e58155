// KvEventHub: serves the engine pool's KV events (`stored`, `removed`, `cleared`) to every
// GET /v1/kv/events subscriber as Server-Sent Events, each from where that subscriber resumes,
// with a snapshot first when it is behind the kept history or on another epoch
// (docs/protocols.md, "GET /v1/kv/events").
//
// One thread polls the pool every `poll_interval` and fans the new events out; a subscriber
// whose stream ended is dropped.
//
// Thread-safety: Subscribe and Stop from any thread.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "engine/block_pool.h"
#include "net/http_server.h"

namespace tandem::worker {

class KvEventHub {
 public:
  KvEventHub(engine::BlockPool* pool, uint64_t epoch,
             absl::Duration poll_interval = absl::Milliseconds(20));
  ~KvEventHub();  // Stop()

  // Streams events after `since` (or a snapshot first, see above) to `stream` until it ends.
  void Subscribe(std::shared_ptr<net::SseStream> stream, uint64_t since,
                 std::optional<uint64_t> consumer_epoch);
  void Stop();
  size_t subscribers() const;

 private:
  struct Subscriber {
    std::shared_ptr<net::SseStream> stream;
    uint64_t position = 0;  // the last event id this subscriber has
  };
  void Run();
  // Sends a snapshot; returns the event id it reflects (0 when the stream ended).
  uint64_t SendSnapshot(net::SseStream& stream);
  // Sends what follows `position`; false when the stream ended.
  bool Forward(Subscriber& subscriber);

  engine::BlockPool* const pool_;
  const uint64_t epoch_;
  const absl::Duration poll_interval_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::vector<Subscriber> subscribers_;  // guarded by mu_
  // Subscribers the poll thread took out of subscribers_ to forward to (guarded by mu_), so
  // subscribers() counts them while it works without the lock.
  size_t forwarding_ = 0;
  std::thread thread_;
};

}  // namespace tandem::worker
