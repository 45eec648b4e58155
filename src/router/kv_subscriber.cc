#include "router/kv_subscriber.h"

#include <future>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "router/kv_event_wire.h"

namespace tandem::router {

KvSubscriber::KvSubscriber(net::EventLoop& loop, RouterState& state, Options options)
    : loop_(loop), state_(state), options_(std::move(options)) {}

KvSubscriber::~KvSubscriber() { Stop(); }

void KvSubscriber::Sync(std::vector<KvSource> sources) {
  std::weak_ptr<bool> alive = alive_;
  loop_.Post([this, alive, sources = std::move(sources)] {
    if (alive.lock()) SyncOnLoop(sources);
  });
}

void KvSubscriber::Stop() {
  if (!alive_) return;
  if (loop_.InLoopThread()) {
    stopped_ = true;
    for (auto& [id, subscription] : subscriptions_) {
      if (subscription.stream) subscription.stream->Cancel();
    }
    subscriptions_.clear();
  } else {
    auto done = std::make_shared<std::promise<void>>();
    std::weak_ptr<bool> alive = alive_;
    loop_.Post([this, alive, done] {
      if (alive.lock()) {
        stopped_ = true;
        for (auto& [id, subscription] : subscriptions_) {
          if (subscription.stream) subscription.stream->Cancel();
        }
        subscriptions_.clear();
      }
      done->set_value();
    });
    // The loop may already be stopped (then the work is dropped and nothing runs): bound the
    // wait so shutdown never hangs.
    done->get_future().wait_for(std::chrono::seconds(2));
  }
  alive_.reset();
}

void KvSubscriber::SyncOnLoop(const std::vector<KvSource>& sources) {
  if (stopped_) return;
  absl::flat_hash_map<WorkerId, const KvSource*> wanted;
  for (const KvSource& source : sources) wanted[source.id] = &source;
  for (auto it = subscriptions_.begin(); it != subscriptions_.end();) {
    if (!wanted.contains(it->first)) {
      if (it->second.stream) it->second.stream->Cancel();
      subscriptions_.erase(it++);
    } else {
      ++it;
    }
  }
  for (const auto& [id, source] : wanted) {
    if (subscriptions_.contains(id)) continue;
    Subscription& subscription = subscriptions_[id];
    subscription.source = *source;
    Connect(id);
  }
}

void KvSubscriber::Connect(WorkerId id) {
  auto it = subscriptions_.find(id);
  if (it == subscriptions_.end() || stopped_) return;
  Subscription& subscription = it->second;
  subscription.generation = next_generation_++;
  net::HttpClientRequest request;
  request.method = "GET";
  // With our epoch the worker answers a stream of another incarnation with a snapshot.
  request.url = absl::StrCat(subscription.source.url, "/v1/kv/events?since=", subscription.since,
                             "&epoch=", HexId(subscription.source.epoch));
  request.timeout = absl::Seconds(5);  // connecting and the header; the stream itself is open-ended
  if (!options_.cluster_token.empty()) {
    request.headers.emplace_back("authorization", absl::StrCat("Bearer ", options_.cluster_token));
  }
  const uint64_t generation = subscription.generation;
  std::weak_ptr<bool> alive = alive_;
  subscription.stream = net::SseClient::Open(
      loop_, std::move(request),
      [this, alive, id, generation](const net::SseEvent& event) {
        if (alive.lock()) OnEvent(id, generation, event);
      },
      [this, alive, id, generation](absl::Status status, int, const std::string&) {
        if (alive.lock()) OnDone(id, generation, status);
      });
}

void KvSubscriber::StartOver(Subscription& subscription) {
  // Drop what the index knows of this worker and read its state again from the beginning:
  // a `since` of 0 is answered with every event kept from id 1, or with a snapshot.
  state_.ForgetKv(subscription.source.id);
  if (subscription.stream) subscription.stream->Cancel();
  subscription.stream = nullptr;
  subscription.since = 0;
  subscription.started_over = true;
  if (options_.resyncs != nullptr) options_.resyncs->Increment();
  Connect(subscription.source.id);
}

void KvSubscriber::OnEvent(WorkerId id, uint64_t generation, const net::SseEvent& event) {
  auto it = subscriptions_.find(id);
  if (it == subscriptions_.end() || it->second.generation != generation) return;
  Subscription& subscription = it->second;
  if (event.event == "snapshot") {
    absl::StatusOr<KvSnapshot> snapshot = KvSnapshotFromJson(event.data);
    if (!snapshot.ok()) {
      LogWarn("kv snapshot unreadable",
              {{"worker", subscription.source.url}, {"error", snapshot.status().ToString()}});
      return StartOver(subscription);
    }
    if (snapshot->epoch != subscription.source.epoch) {
      // Another incarnation answers at this address; the registry will learn of it and give it
      // its own subscription.
      if (subscription.stream) subscription.stream->Cancel();
      subscription.stream = nullptr;
      return;
    }
    absl::Status applied = state_.ApplyKvSnapshot(id, *snapshot);
    if (!applied.ok()) {
      LogWarn("kv snapshot refused",
              {{"worker", subscription.source.url}, {"error", applied.ToString()}});
      return;
    }
    subscription.since = snapshot->event_id;
    if (!subscription.started_over && options_.resyncs != nullptr) options_.resyncs->Increment();
    subscription.started_over = false;
    return;
  }
  KvEvent* parsed = &decoded_;  // reused: no allocation per event
  if (absl::Status decoded = KvEventFromJsonInto(event.data, parsed); !decoded.ok()) {
    LogWarn("kv event unreadable",
            {{"worker", subscription.source.url}, {"error", decoded.ToString()}});
    return StartOver(subscription);
  }
  if (parsed->epoch != subscription.source.epoch) {
    if (subscription.stream) subscription.stream->Cancel();
    subscription.stream = nullptr;
    return;
  }
  absl::StatusOr<ApplyOutcome> outcome = state_.ApplyKvEvent(id, *parsed);
  if (!outcome.ok()) {
    LogWarn("kv event refused",
            {{"worker", subscription.source.url}, {"error", outcome.status().ToString()}});
    return;
  }
  switch (*outcome) {
    case ApplyOutcome::kApplied:
      subscription.since = parsed->event_id;
      subscription.started_over = false;
      if (options_.events != nullptr) options_.events->Increment();
      break;
    case ApplyOutcome::kDuplicate:
    case ApplyOutcome::kStaleEpoch:
      break;
    case ApplyOutcome::kNeedsResync:
      LogInfo("kv event gap; reading the worker's state again",
              {{"worker", subscription.source.url},
               {"after", static_cast<int64_t>(subscription.since)},
               {"got", static_cast<int64_t>(parsed->event_id)}});
      StartOver(subscription);
      break;
  }
}

void KvSubscriber::OnDone(WorkerId id, uint64_t generation, const absl::Status& status) {
  auto it = subscriptions_.find(id);
  if (it == subscriptions_.end() || it->second.generation != generation || stopped_) return;
  it->second.stream = nullptr;
  std::weak_ptr<bool> alive = alive_;
  loop_.RunAfter(options_.reconnect_delay, [this, alive, id, generation] {
    if (!alive.lock()) return;
    auto again = subscriptions_.find(id);
    // Still the same stream that ended (not replaced, not dropped by Sync).
    if (again == subscriptions_.end() || again->second.generation != generation) return;
    Connect(id);
  });
}

}  // namespace tandem::router
