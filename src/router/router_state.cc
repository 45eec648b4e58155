#include "router/router_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "core/status.h"
#include "router/kv_event_wire.h"

namespace tandem::router {

std::string_view KvBytesSourceName(KvBytesSource source) {
  switch (source) {
    case KvBytesSource::kFlag:
      return "flag";
    case KvBytesSource::kWorker:
      return "worker";
    case KvBytesSource::kLargestReported:
      return "largest_reported";
    case KvBytesSource::kDefault:
      return "default";
  }
  return "default";
}

absl::StatusOr<std::unique_ptr<RouterState>> RouterState::Create(const Options& options) {
  TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<KvRouter> router, KvRouter::Create(options.routing));
  if (options.max_streams_per_worker < 0) {
    return absl::InvalidArgumentError("max-streams-per-worker must be 0 (no limit) or positive");
  }
  return std::unique_ptr<RouterState>(new RouterState(options, std::move(router)));
}

RouterState::RouterState(const Options& options, std::unique_ptr<KvRouter> router)
    : options_(options),
      block_size_(options.routing.routing.block_size),
      registry_(options.registry),
      router_(std::move(router)) {}

absl::StatusOr<RouteResult> RouterState::Route(uint64_t route_id,
                                               std::span<const int32_t> prompt_tokens,
                                               int64_t max_tokens,
                                               std::span<const WorkerId> excluded) {
  absl::MutexLock lock(&mu_);
  registry_.FillWorkerInfo(&infos_);
  const KvBytesPerToken fallback = FallbackKvBytesPerToken(infos_);
  bool any_at_limit = false;
  for (WorkerInfo& info : infos_) {
    info.kv_bytes_per_token = KvBytesPerTokenOf(info, fallback).value;
    if (std::find(excluded.begin(), excluded.end(), info.id) != excluded.end()) {
      info.ready = false;
      continue;
    }
    if (options_.max_streams_per_worker > 0 && info.role != WorkerRole::kPrefill && info.ready &&
        !info.draining) {
      auto it = streams_.find(info.id);
      if (it != streams_.end() && it->second >= options_.max_streams_per_worker) {
        // At its stream limit: a prefill-capable worker may still serve as a prefill worker.
        if (info.role == WorkerRole::kDecode) info.ready = false;
        if (info.role == WorkerRole::kBoth) info.role = WorkerRole::kPrefill;
        any_at_limit = true;
      }
    }
  }
  absl::StatusOr<RoutingDecision> decision =
      router_->Route(route_id, prompt_tokens, max_tokens, infos_);
  if (!decision.ok()) {
    if (any_at_limit && absl::IsUnavailable(decision.status())) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "every decode worker carries ", options_.max_streams_per_worker, " streams already"));
    }
    return decision.status();
  }
  RouteResult result;
  result.decision = *decision;
  const RegisteredWorker* decode = registry_.Find(decision->decode_worker);
  if (decode == nullptr) {
    router_->OnFinished(route_id);
    return absl::InternalError("the routing policy chose a worker the registry does not know");
  }
  result.decode_url = decode->report.url;
  if (decision->disaggregated()) {
    const RegisteredWorker* prefill = registry_.Find(decision->prefill_worker);
    if (prefill == nullptr) {
      router_->OnFinished(route_id);
      return absl::InternalError("the routing policy chose a prefill worker nobody knows");
    }
    result.prefill_url = prefill->report.url;
  }
  ++streams_[decision->decode_worker];
  route_worker_[route_id] = decision->decode_worker;
  return result;
}

void RouterState::PrefillDone(uint64_t route_id) {
  absl::MutexLock lock(&mu_);
  router_->OnPrefillDone(route_id);
}

void RouterState::Finished(uint64_t route_id) {
  absl::MutexLock lock(&mu_);
  router_->OnFinished(route_id);
  auto it = route_worker_.find(route_id);
  if (it == route_worker_.end()) return;
  auto streams = streams_.find(it->second);
  if (streams != streams_.end() && --streams->second <= 0) streams_.erase(streams);
  route_worker_.erase(it);
}

absl::StatusOr<RegistryChange> RouterState::Report(const WorkerReport& report, int64_t now_micros,
                                                   bool from_static_list) {
  absl::MutexLock lock(&mu_);
  TANDEM_ASSIGN_OR_RETURN(RegistryChange change,
                          registry_.Report(report, now_micros, from_static_list));
  if (change.retired) router_->index().RemoveWorker(*change.retired);
  return change;
}

KvLayoutChange RouterState::LearnKvLayout(const WorkerReport& info) {
  absl::MutexLock lock(&mu_);
  return registry_.LearnKvLayout(info);
}

KvBytesPerToken RouterState::FallbackKvBytesPerToken(std::span<const WorkerInfo> workers) const {
  const int64_t configured = options_.routing.routing.kv_bytes_per_token;
  if (!options_.learn_kv_bytes_per_token) return {configured, KvBytesSource::kFlag};
  int64_t largest = 0;
  for (const WorkerInfo& worker : workers) largest = std::max(largest, worker.kv_bytes_per_token);
  // With different layouts behind one router, a worker that did not say is costed as the
  // heaviest: its transfers are rather over- than underestimated.
  if (largest > 0) return {largest, KvBytesSource::kLargestReported};
  return {configured, KvBytesSource::kDefault};
}

KvBytesPerToken RouterState::KvBytesPerTokenOf(const WorkerInfo& worker,
                                               const KvBytesPerToken& fallback) const {
  if (options_.learn_kv_bytes_per_token && worker.kv_bytes_per_token > 0) {
    return {worker.kv_bytes_per_token, KvBytesSource::kWorker};
  }
  return fallback;
}

KvBytesPerTokenInUse RouterState::kv_bytes_per_token() const {
  std::vector<WorkerInfo> workers;
  {
    absl::MutexLock lock(&mu_);
    registry_.FillWorkerInfo(&workers);
  }
  KvBytesPerTokenInUse in_use;
  in_use.fallback = FallbackKvBytesPerToken(workers);
  for (const WorkerInfo& worker : workers) {
    in_use.workers[worker.id] = KvBytesPerTokenOf(worker, in_use.fallback);
  }
  return in_use;
}

void RouterState::MarkFailed(WorkerId id) {
  absl::MutexLock lock(&mu_);
  registry_.MarkFailed(id);
}

std::vector<WorkerId> RouterState::Expire(int64_t now_micros) {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerId> gone = registry_.Expire(now_micros);
  for (WorkerId id : gone) router_->index().RemoveWorker(id);
  return gone;
}

std::vector<RegisteredWorker> RouterState::Workers() const {
  absl::MutexLock lock(&mu_);
  return registry_.Snapshot();
}

std::vector<KvSource> RouterState::KvSources() const {
  absl::MutexLock lock(&mu_);
  std::vector<KvSource> sources;
  for (const RegisteredWorker& worker : registry_.Snapshot()) {
    absl::StatusOr<uint64_t> epoch = ParseHexId(worker.report.epoch, "epoch");
    if (!epoch.ok()) continue;
    sources.push_back({.id = worker.id, .url = worker.report.url, .epoch = *epoch});
  }
  return sources;
}

bool RouterState::IsLive(WorkerId id, uint64_t epoch) const {
  absl::MutexLock lock(&mu_);
  const RegisteredWorker* worker = registry_.Find(id);
  if (worker == nullptr) return false;
  absl::StatusOr<uint64_t> current = ParseHexId(worker->report.epoch, "epoch");
  return current.ok() && *current == epoch;
}

bool RouterState::CanServe() const {
  absl::MutexLock lock(&mu_);
  for (const RegisteredWorker& worker : registry_.Snapshot()) {
    if (worker.report.role != WorkerRole::kPrefill &&
        WorkerRegistry::StateOf(worker) == WorkerHealth::kReady) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<ApplyOutcome> RouterState::ApplyKvEvent(WorkerId id, const KvEvent& event) {
  absl::MutexLock lock(&mu_);
  if (registry_.Find(id) == nullptr) return ApplyOutcome::kStaleEpoch;  // gone meanwhile
  return router_->ApplyEvent(id, event);
}

absl::Status RouterState::ApplyKvSnapshot(WorkerId id, const KvSnapshot& snapshot) {
  absl::MutexLock lock(&mu_);
  if (registry_.Find(id) == nullptr) return absl::OkStatus();
  return router_->ApplySnapshot(id, snapshot);
}

void RouterState::ForgetKv(WorkerId id) {
  absl::MutexLock lock(&mu_);
  router_->index().RemoveWorker(id);
}

int RouterState::streams_on(WorkerId id) const {
  absl::MutexLock lock(&mu_);
  auto it = streams_.find(id);
  return it == streams_.end() ? 0 : it->second;
}

KvIndexStats RouterState::kv_stats() const {
  absl::MutexLock lock(&mu_);
  return router_->index().stats();
}

}  // namespace tandem::router
