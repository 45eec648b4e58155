// KvSubscriber: follows every live worker's KV event stream (`GET /v1/kv/events?since=N`,
// docs/protocols.md) and feeds the router's KV index. A broken stream is reopened from the last
// applied event; a gap in the ids, or events of another epoch, make it start over from scratch
// (the worker answers an old `since` with a snapshot).
//
//   KvSubscriber subscriber(loop, state, {.cluster_token = token});
//   subscriber.Sync(state.KvSources());   // periodically: follows new workers, drops gone ones
//   subscriber.Stop();
//
// Thread-safety: Sync and Stop may be called from any thread; the streams live on `loop`.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/time/time.h"
#include "core/metrics.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "router/router_state.h"

namespace tandem::router {

class KvSubscriber {
 public:
  struct Options {
    std::string cluster_token;
    absl::Duration reconnect_delay = absl::Milliseconds(500);
    Counter* events = nullptr;   // tandem_router_kv_events_total
    Counter* resyncs = nullptr;  // tandem_router_kv_resyncs_total
  };
  KvSubscriber(net::EventLoop& loop, RouterState& state, Options options);
  ~KvSubscriber();

  void Sync(std::vector<KvSource> sources);
  // Closes every stream; waits for nothing (the loop's owner stops it afterwards).
  void Stop();

 private:
  struct Subscription {
    KvSource source;
    std::shared_ptr<net::SseClient> stream;
    uint64_t generation = 0;
    uint64_t since = 0;
    bool started_over = false;  // reconnected from scratch after a gap or a foreign epoch
  };
  void SyncOnLoop(const std::vector<KvSource>& sources);
  void Connect(WorkerId id);
  void OnEvent(WorkerId id, uint64_t generation, const net::SseEvent& event);
  void OnDone(WorkerId id, uint64_t generation, const absl::Status& status);
  void StartOver(Subscription& subscription);

  net::EventLoop& loop_;
  RouterState& state_;
  const Options options_;
  // Touched only on loop_'s thread.
  absl::flat_hash_map<WorkerId, Subscription> subscriptions_;
  uint64_t next_generation_ = 1;
  KvEvent decoded_;  // the event being applied, reused
  bool stopped_ = false;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace tandem::router
