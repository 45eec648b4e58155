#include "worker/kv_event_hub.h"

#include <chrono>

#include "router/kv_event_wire.h"
#include "worker/decisions.h"

namespace tandem::worker {
namespace {

router::KvEvent ToWire(const engine::KvEvent& event, uint64_t epoch) {
  router::KvEvent out;
  out.type = event.type == engine::KvEvent::Type::kStored    ? router::KvEvent::Type::kStored
             : event.type == engine::KvEvent::Type::kRemoved ? router::KvEvent::Type::kRemoved
                                                             : router::KvEvent::Type::kCleared;
  out.epoch = epoch;
  out.event_id = event.event_id;
  out.parent_hash = event.parent_hash;
  out.block_hashes = event.block_hashes;
  return out;
}

constexpr auto kKeepAliveInterval = std::chrono::seconds(15);

}  // namespace

KvEventHub::KvEventHub(engine::BlockPool* pool, uint64_t epoch, absl::Duration poll_interval)
    : pool_(pool), epoch_(epoch), poll_interval_(poll_interval) {
  thread_ = std::thread([this] { Run(); });
}

KvEventHub::~KvEventHub() { Stop(); }

void KvEventHub::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_ && !thread_.joinable()) return;
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::vector<Subscriber> left;
  {
    std::lock_guard<std::mutex> lock(mu_);
    left.swap(subscribers_);
  }
  for (Subscriber& s : left) s.stream->Close();
}

size_t KvEventHub::subscribers() const {
  std::lock_guard<std::mutex> lock(mu_);
  return subscribers_.size() + forwarding_;
}

uint64_t KvEventHub::SendSnapshot(net::SseStream& stream) {
  engine::KvSnapshot snapshot = pool_->Snapshot();
  router::KvSnapshot wire{.epoch = epoch_,
                          .event_id = snapshot.event_id,
                          .block_hashes = std::move(snapshot.block_hashes)};
  if (!stream.Send(router::KvSnapshotToJson(wire), "snapshot")) return 0;
  return snapshot.event_id;
}

void KvEventHub::Subscribe(std::shared_ptr<net::SseStream> stream, uint64_t since,
                           std::optional<uint64_t> consumer_epoch) {
  KvStreamStart start =
      StartKvEventStream(since, consumer_epoch, epoch_, /*oldest_kept=*/0, pool_->last_event_id());
  Subscriber subscriber{.stream = std::move(stream), .position = start.resume_after};
  if (start.snapshot) {
    subscriber.position = SendSnapshot(*subscriber.stream);
    if (subscriber.stream->closed()) return;
  } else {
    // Comment line so the consumer sees the stream is open before the first event.
    subscriber.stream->SendComment("resuming");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_) {
      subscriber.stream->Close();
      return;
    }
    subscribers_.push_back(std::move(subscriber));
  }
  wake_.notify_all();
}

bool KvEventHub::Forward(Subscriber& subscriber) {
  if (subscriber.stream->closed()) return false;
  std::vector<engine::KvEvent> events;
  absl::Status status = pool_->EventsAfter(subscriber.position, &events);
  if (!status.ok()) {
    // Fell behind the kept history: start again from a snapshot.
    uint64_t id = SendSnapshot(*subscriber.stream);
    if (id == 0 && subscriber.stream->closed()) return false;
    subscriber.position = id;
    return true;
  }
  for (const engine::KvEvent& event : events) {
    if (!subscriber.stream->Send(router::KvEventToJson(ToWire(event, epoch_)))) return false;
    subscriber.position = event.event_id;
  }
  return true;
}

void KvEventHub::Run() {
  auto last_keepalive = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    wake_.wait_for(lock, absl::ToChronoMilliseconds(poll_interval_));
    if (stop_) break;
    std::vector<Subscriber> work;
    work.swap(subscribers_);
    forwarding_ = work.size();
    lock.unlock();
    const bool keepalive = std::chrono::steady_clock::now() - last_keepalive > kKeepAliveInterval;
    if (keepalive) last_keepalive = std::chrono::steady_clock::now();
    std::vector<Subscriber> alive;
    for (Subscriber& s : work) {
      bool ok = Forward(s);
      if (ok && keepalive) ok = s.stream->SendComment("keep-alive");
      if (ok) alive.push_back(std::move(s));
    }
    lock.lock();
    forwarding_ = 0;
    // Subscribers that arrived meanwhile are in subscribers_ already.
    for (Subscriber& s : alive) subscribers_.push_back(std::move(s));
  }
}

}  // namespace tandem::worker
