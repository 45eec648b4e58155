// WorkerRegistry: the workers the router knows, from their heartbeats (`POST
// /v1/workers/heartbeat`, docs/protocols.md "Registration") and from polling `/v1/info` of the
// static `--worker` list. It tracks each worker's incarnation (epoch), readiness, draining,
// location, load and KV layout (from `/v1/info`), and expires workers that stop reporting or
// whose streams fail.
//
// Every incarnation of a worker gets its own WorkerId: a new epoch at the same URL is a new
// process whose KV cache is empty, so the old id (and its KV index entries) is retired and a
// fresh one issued. Epochs are random values, not ordered, so the KV index never has to compare
// them.
//
//   WorkerRegistry registry({.heartbeat_timeout_micros = 3'000'000});
//   TANDEM_ASSIGN_OR_RETURN(WorkerReport report, ParseWorkerReport(body, "heartbeat"));
//   RegistryChange change = registry.Report(report, now_micros, /*from_static_list=*/false);
//   if (change.retired) index.RemoveWorker(*change.retired);
//   for (WorkerId gone : registry.Expire(now_micros)) index.RemoveWorker(gone);
//   std::vector<RegisteredWorker> workers = registry.Snapshot();
//
// Pure: no I/O and no clock of its own. Thread-safety: not thread-safe; the router guards it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "router/kv_router.h"
#include "router/topology.h"

namespace tandem::router {

// One report of a worker about itself: a heartbeat body or its `/v1/info` answer.
struct WorkerReport {
  std::string url;  // the worker's control API, e.g. http://10.0.0.5:8101 (no trailing slash)
  WorkerRole role = WorkerRole::kBoth;
  std::string epoch;  // 16-digit hex, as the worker sends it
  std::string model;
  bool ready = false;
  bool draining = false;
  std::string kv_address;
  std::string host;
  std::string rack;
  int64_t capacity_blocks = 0;
  int64_t active_blocks = 0;
  int32_t prefill_queue_requests = 0;
  int64_t prefill_queue_tokens = 0;
  int32_t block_size = 0;  // 0 when the report does not say
  // KV bytes one token occupies in the worker's cache, over all layers, K and V: `/v1/info`'s
  // kv.block_bytes / kv.block_size. 0 when the report has no KV layout (heartbeats, a worker
  // still loading) or an unusable one (then kv_layout_error says why).
  int64_t kv_bytes_per_token = 0;
  std::string kv_layout_error;
};

// Parses a heartbeat or `/v1/info` body. `url_fallback` is used when the body has no "url"
// (an `/v1/info` answer of a static worker). Errors (kInvalidArgument) name the field. An
// unusable KV layout (`kv` object) does not fail the report: it is left out, with the reason
// in kv_layout_error.
absl::StatusOr<WorkerReport> ParseWorkerReport(std::string_view body,
                                               std::string_view url_fallback = {});

// "http://h:p/" -> "http://h:p"; adds "http://" when no scheme is given.
std::string NormalizeWorkerUrl(std::string_view url);

struct RegisteredWorker {
  WorkerId id = 0;
  WorkerReport report;
  Location location;
  bool from_static_list = false;
  bool failed = false;  // a stream to it failed; not routed to until it reports again
  int64_t last_report_micros = 0;
  // This incarnation's KV layout from its `/v1/info` (LearnKvLayout): bytes per token, 0 while
  // unknown; and why the last answer's layout was ignored, empty when it was not.
  int64_t kv_bytes_per_token = 0;
  std::string kv_layout_error;
};

enum class WorkerHealth { kReady, kDraining, kNotReady };

struct RegistryChange {
  WorkerId id = 0;                  // the worker's current id
  bool added = false;               // first report of this incarnation
  std::optional<WorkerId> retired;  // the previous incarnation's id, when the epoch changed
};

// What one `/v1/info` answer's KV layout changed (LearnKvLayout).
struct KvLayoutChange {
  bool learned = false;   // the worker's bytes per token are new (or changed)
  bool rejected = false;  // the layout was ignored for a reason not reported before
  std::string error;      // that reason
  // Other registered workers with another bytes per token than the one learned: {url, value},
  // by url (different models or KV types behind one router).
  std::vector<std::pair<std::string, int64_t>> disagreeing;
};

struct RegistryOptions {
  // A worker that has not reported for this long is gone (three missed 1 s heartbeats).
  int64_t heartbeat_timeout_micros = 3'000'000;
  size_t max_workers = 4096;
};

class WorkerRegistry {
 public:
  explicit WorkerRegistry(RegistryOptions options = {}) : options_(options) {}

  // Records a report. kResourceExhausted when max_workers are registered and this one is new.
  absl::StatusOr<RegistryChange> Report(const WorkerReport& report, int64_t now_micros,
                                        bool from_static_list);
  // A stream to the worker failed (connection refused or cut): it takes no new work until its
  // next report says it is ready. Returns false when `id` is unknown.
  bool MarkFailed(WorkerId id);
  // Drops workers whose last report is older than the heartbeat timeout; returns their ids.
  std::vector<WorkerId> Expire(int64_t now_micros);
  // Records the KV layout of `info`, a worker's `/v1/info` answer: its bytes per token, or why
  // they were unusable. A ready worker's answer without a layout is unusable; a loading one's
  // says nothing yet. An unusable answer leaves a value learned before in place. Ignored when
  // no worker is at info.url or it has another epoch now (the answer crossed a restart).
  KvLayoutChange LearnKvLayout(const WorkerReport& info);
  // Forgets the worker at `url` (returns its id) — e.g. a static worker that went away.
  std::optional<WorkerId> Remove(std::string_view url);

  const RegisteredWorker* Find(WorkerId id) const;
  const RegisteredWorker* FindByUrl(std::string_view url) const;
  std::vector<RegisteredWorker> Snapshot() const;
  // The routing policy's view: ready excludes failed workers.
  void FillWorkerInfo(std::vector<WorkerInfo>* out) const;
  size_t size() const { return by_url_.size(); }

  static WorkerHealth StateOf(const RegisteredWorker& worker);

 private:
  RegistryOptions options_;
  WorkerId next_id_ = 1;
  absl::flat_hash_map<std::string, RegisteredWorker> by_url_;
  absl::flat_hash_map<WorkerId, std::string> url_of_;
  LocationInterner locations_;
};

}  // namespace tandem::router
