#include "worker/worker.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "core/logging.h"
#include "core/status.h"
#include "engine/engine.h"
#include "engine/model_loader.h"
#include "kv/auth.h"
#include "kv/receiver.h"
#include "kv/reservation.h"
#include "kv/sender.h"
#include "kv/shared_segment.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"
#include "worker/decisions.h"
#include "worker/kv_event_hub.h"
#include "worker/protocol.h"
#include "worker/worker_metrics.h"

namespace tandem::worker {
namespace {

using nlohmann::json;

double MillisBetween(int64_t from_micros, int64_t to_micros) {
  return from_micros <= 0 || to_micros < from_micros ? 0.0 : (to_micros - from_micros) / 1000.0;
}

// Runs blocking work (prefill calls, transfers) on threads of its own, and waits for all of it
// at shutdown.
class TaskRunner {
 public:
  void Run(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++active_;
    }
    std::thread([this, task = std::move(task)]() mutable {
      task();
      task = nullptr;  // destroy captures before saying we are done
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) idle_.notify_all();
    }).detach();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    idle_.wait(lock, [&] { return active_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable idle_;
  int active_ = 0;
};

// The decode worker's reserved blocks as the KV receiver sees them.
class ImportTarget : public kv::KvTarget {
 public:
  ImportTarget(const engine::BlockPool* pool, std::vector<engine::BlockId> blocks,
               const kv::SharedSegment* segment)
      : pool_(pool), blocks_(std::move(blocks)), segment_(segment) {}

  uint8_t* LayerBlock(uint32_t layer, uint32_t block) override {
    return pool_->LayerSpan(blocks_.at(block), static_cast<int>(layer)).data();
  }
  bool SharedOffsets(std::vector<uint64_t>* block_offsets, uint64_t* layer_stride) override {
    if (segment_ == nullptr) return false;
    block_offsets->clear();
    for (engine::BlockId b : blocks_) {
      block_offsets->push_back(static_cast<uint64_t>(pool_->BlockData(b) - segment_->data()));
    }
    *layer_stride = static_cast<uint64_t>(pool_->layout().layer_block_bytes());
    return true;
  }

 private:
  const engine::BlockPool* pool_;
  std::vector<engine::BlockId> blocks_;
  const kv::SharedSegment* segment_;
};

// One POST /v1/generate.
struct GenerateCall {
  GenerateParams params;
  std::vector<int32_t> stop_ids;  // the request's and, unless ignore_eos, the model's EOS
  std::shared_ptr<net::SseStream> stream;
  int64_t arrival = 0;

  absl::Mutex mu;
  bool finished ABSL_GUARDED_BY(mu) = false;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  std::string cancel_reason ABSL_GUARDED_BY(mu);
  uint64_t engine_id ABSL_GUARDED_BY(mu) = 0;  // once the engine runs it
  std::string prefill_mode ABSL_GUARDED_BY(mu) = "local";
  int64_t queued_tokens ABSL_GUARDED_BY(mu) = 0;  // counted in the prefill queue gauge
  bool queued ABSL_GUARDED_BY(mu) = false;
  int64_t tokens_sent ABSL_GUARDED_BY(mu) = 0;
  int64_t last_token_micros ABSL_GUARDED_BY(mu) = 0;
  int64_t cached_tokens ABSL_GUARDED_BY(mu) = 0;
  double queue_ms ABSL_GUARDED_BY(mu) = 0;
  double prefill_ms ABSL_GUARDED_BY(mu) = 0;
  double transfer_ms ABSL_GUARDED_BY(mu) = 0;

  // Remote prefill (decode-first disaggregation).
  bool remote ABSL_GUARDED_BY(mu) = false;
  bool remote_resolved ABSL_GUARDED_BY(mu) = false;
  RemotePrefillState state ABSL_GUARDED_BY(mu);
  uint64_t engine_reservation ABSL_GUARDED_BY(mu) = 0;
  uint64_t kv_reservation ABSL_GUARDED_BY(mu) = 0;
  int64_t reserved_blocks ABSL_GUARDED_BY(mu) = 0;
  absl::Status kv_status ABSL_GUARDED_BY(mu);
  int32_t kv_first_token ABSL_GUARDED_BY(mu) = -1;
  absl::Status call_status ABSL_GUARDED_BY(mu);
  int http_status ABSL_GUARDED_BY(mu) = 0;
  PrefillAnswer answer ABSL_GUARDED_BY(mu);
};

// One POST /v1/prefill.
struct PrefillJob {
  PrefillParams params;
  std::shared_ptr<net::HttpExchange> exchange;
  int64_t arrival = 0;
  // Set before the engine runs the job, then used by the engine thread only.
  std::unique_ptr<kv::OutgoingTransfer> transfer;
  std::unique_ptr<LayerPushTracker> tracker;
  bool restarted = false;
  int64_t first_layer_micros = 0;

  absl::Mutex mu;
  bool cancelled ABSL_GUARDED_BY(mu) = false;
  std::string cancel_reason ABSL_GUARDED_BY(mu);
  uint64_t engine_id ABSL_GUARDED_BY(mu) = 0;
  bool have_first ABSL_GUARDED_BY(mu) = false;
  engine::SampledToken first ABSL_GUARDED_BY(mu);
  int64_t first_token_micros ABSL_GUARDED_BY(mu) = 0;
  int64_t queued_tokens ABSL_GUARDED_BY(mu) = 0;
  bool queued ABSL_GUARDED_BY(mu) = false;
};

}  // namespace

class Worker::Impl {
 public:
  Impl(WorkerOptions options, Env& env)
      : options_(std::move(options)),
        env_(env),
        epoch_(kv::RandomU64()),
        timers_("worker-timers") {}

  ~Impl() { Stop(); }

  absl::Status Start();
  void Stop();
  void Drain() {
    if (!draining_.exchange(true)) LogInfo("draining: no new work is taken", {});
  }
  bool WaitIdle(absl::Duration timeout);
  int http_port() const { return http_ != nullptr ? http_->port() : 0; }
  int kv_port() const { return receiver_ != nullptr ? receiver_->port() : 0; }
  uint64_t epoch() const { return epoch_; }

 private:
  absl::Status LoadModel();
  void RegisterRoutes();
  bool Authorize(const std::shared_ptr<net::HttpExchange>& exchange);
  // Refuses work while loading or draining; true when the request may proceed.
  // `kind` labels tandem_worker_requests_total (empty: not a generate or prefill request).
  bool AcceptingWork(const std::shared_ptr<net::HttpExchange>& exchange, std::string_view kind);
  void Refuse(const std::shared_ptr<net::HttpExchange>& exchange, const absl::Status& status,
              std::string_view kind);

  void HandleInfo(const std::shared_ptr<net::HttpExchange>& exchange);
  void HandleGenerate(const std::shared_ptr<net::HttpExchange>& exchange);
  void HandlePrefill(const std::shared_ptr<net::HttpExchange>& exchange);
  void HandleCancel(const std::shared_ptr<net::HttpExchange>& exchange);
  void HandleKvEvents(const std::shared_ptr<net::HttpExchange>& exchange);

  // Generate.
  void StartLocal(const std::shared_ptr<GenerateCall>& call);
  void StartRemote(const std::shared_ptr<GenerateCall>& call);
  void DriveRemote(const std::shared_ptr<GenerateCall>& call);
  void JoinRemote(const std::shared_ptr<GenerateCall>& call);
  void FallBack(const std::shared_ptr<GenerateCall>& call, std::string_view reason,
                const absl::Status& why);
  engine::GenerateRequest EngineRequest(const std::shared_ptr<GenerateCall>& call);
  void SendToken(const std::shared_ptr<GenerateCall>& call, const engine::SampledToken& token);
  void OnEngineFinish(const std::shared_ptr<GenerateCall>& call, const engine::FinishEvent& f);
  void CancelCall(const std::shared_ptr<GenerateCall>& call, std::string_view reason);
  // Ends the call once: `event` (may be empty) is its last SSE event.
  void EndCall(const std::shared_ptr<GenerateCall>& call, std::string_view outcome,
               const std::string& event);
  void EndCallWithError(const std::shared_ptr<GenerateCall>& call, const absl::Status& status);
  void SettleQueue(int64_t* tokens, bool* queued);

  // Prefill.
  void RunPrefillJob(const std::shared_ptr<PrefillJob>& job);
  void OnPrefillLayer(const std::shared_ptr<PrefillJob>& job, const engine::LayerKvEvent& e);
  void CompletePrefillJob(const std::shared_ptr<PrefillJob>& job, const engine::FinishEvent& f);
  void CancelJob(const std::shared_ptr<PrefillJob>& job, std::string_view reason);
  void EndJob(const std::shared_ptr<PrefillJob>& job, std::string_view outcome, int status,
              std::string body);

  int64_t EstimateUncached(const std::vector<int32_t>& prompt) const;
  bool Overloaded() {
    absl::MutexLock lock(&mu_);
    return static_cast<int64_t>(calls_.size() + jobs_.size()) >= options_.max_requests;
  }
  void StatsLoop();
  void HeartbeatLoop();
  std::string HeartbeatJson();
  std::string KvAddress() const { return kv_advertise_.ToString(); }

  WorkerOptions options_;
  Env& env_;
  const uint64_t epoch_;
  WorkerMetrics metrics_;
  net::EventLoop timers_;
  TaskRunner tasks_;

  std::unique_ptr<net::HttpServer> http_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<bool> stopped_{false};
  std::atomic<bool> engine_closing_{false};

  // Set while loading, before ready_ (release) publishes them.
  std::string model_name_;
  std::unique_ptr<kv::SharedSegment> segment_;
  std::unique_ptr<engine::Engine> engine_;
  engine::KvLayout layout_;
  RequestLimits limits_;
  std::vector<int32_t> eos_ids_;
  std::unique_ptr<kv::ReservationTable> table_;
  std::unique_ptr<kv::KvReceiver> receiver_;
  std::unique_ptr<kv::KvSender> sender_;
  std::unique_ptr<KvEventHub> events_;
  HostPort kv_advertise_;
  std::string advertise_url_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<GenerateCall>> calls_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<PrefillJob>> jobs_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> reserved_blocks_{0};
  std::atomic<int64_t> queued_requests_{0};
  std::atomic<int64_t> queued_tokens_{0};

  std::mutex loop_mu_;
  std::condition_variable loop_wake_;
  bool loops_stop_ = false;  // guarded by loop_mu_
  std::thread stats_thread_;
  std::thread heartbeat_thread_;
};

// ---------------------------------------------------------------------------------------------
// Start and stop

absl::Status Worker::Impl::Start() {
  net::HttpServerOptions http_options;
  http_options.host = options_.listen.host;
  http_options.port = options_.listen.port;
  http_options.threads = std::max(1, options_.http_threads);
  http_options.access_log = [](const net::AccessLogEntry& entry) {
    // /ready answers 503 while loading or draining: a state, not a refusal.
    if (entry.status >= 400 && entry.path != "/ready") {
      LogWarn("request refused", {{"method", entry.method},
                                  {"path", entry.path},
                                  {"status", entry.status},
                                  {"remote", entry.remote_address}});
    }
  };
  http_ = std::make_unique<net::HttpServer>(http_options);
  RegisterRoutes();
  TANDEM_RETURN_IF_ERROR(
      Annotate(http_->Start(), absl::StrCat("--listen ", options_.listen.ToString())));
  HostPort advertise = options_.advertise;
  if (advertise.host.empty()) advertise = options_.listen;
  if (advertise.port == 0) advertise.port = http_->port();
  if (IsWildcardHost(advertise.host)) advertise.host = "127.0.0.1";
  advertise_url_ = absl::StrCat("http://", advertise.ToString());
  LogInfo("worker listening", {{"role", std::string(RoleName(options_.role))},
                               {"url", advertise_url_},
                               {"port", http_->port()},
                               {"epoch", HexId(epoch_)}});

  TANDEM_RETURN_IF_ERROR(LoadModel());
  metrics_.SetIdentity(RoleName(options_.role), model_name_, HexId(epoch_));
  ready_.store(true, std::memory_order_release);
  LogInfo("worker ready", {{"model", model_name_},
                           {"kv_address", ServesGenerate(options_.role) ? KvAddress() : ""},
                           {"capacity_blocks", engine_->kv_pool().num_blocks()},
                           {"shared_memory", segment_ != nullptr}});
  stats_thread_ = std::thread([this] { StatsLoop(); });
  if (!options_.router_url.empty()) heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  return absl::OkStatus();
}

absl::Status Worker::Impl::LoadModel() {
  absl::StatusOr<engine::LoadedModel> loaded = engine::LoadEngineModel(options_.model);
  if (!loaded.ok()) return Annotate(loaded.status(), absl::StrCat("--model ", options_.model));
  model_name_ = loaded->model.name.empty() ? options_.model : loaded->model.name;
  if (loaded->tokenizer != nullptr) {
    for (int32_t id = 0; id < loaded->tokenizer->vocab_size(); ++id) {
      if (loaded->tokenizer->IsEos(id)) eos_ids_.push_back(id);
    }
  }
  const engine::TransformerConfig& config = loaded->model.config;
  const KvType kv_type = engine::ResolveKvType(options_.kv_type, loaded->model.weights);
  layout_ = {.num_layers = static_cast<int>(config.num_layers),
             .num_kv_heads = static_cast<int>(config.num_kv_heads),
             .head_dim = static_cast<int>(config.head_dim),
             .block_size = options_.block_size,
             .type = kv_type};
  engine::EngineOptions engine_options;
  engine_options.threads = options_.threads;
  engine_options.block_size = options_.block_size;
  engine_options.kv_type = kv_type;
  engine_options.kv_budget_bytes = options_.kv_budget_bytes;
  engine_options.lock_memory = options_.lock_memory;
  engine_options.max_batch_tokens = options_.max_batch_tokens;
  // Decode-side pools live in shared memory so a prefill worker on this host writes KV into
  // them directly; --kv-transport tcp keeps them private.
  const bool receives = ServesGenerate(options_.role);
  if (receives && options_.kv_transport != kv::Transport::kTcp) {
    kv::SharedSegment::RemoveStaleSegments();
    const int64_t block_bytes = layout_.block_bytes();
    const int64_t blocks = std::max<int64_t>(1, options_.kv_budget_bytes / block_bytes);
    absl::StatusOr<std::unique_ptr<kv::SharedSegment>> segment =
        kv::SharedSegment::Create(static_cast<size_t>(blocks * block_bytes));
    if (segment.ok()) {
      segment_ = std::move(*segment);
      engine_options.kv_memory = segment_->data() + kv::SharedSegment::kHeaderBytes;
      engine_options.kv_memory_bytes = blocks * block_bytes;
    } else if (options_.kv_transport == kv::Transport::kSharedMemory) {
      return Annotate(segment.status(), "--kv-transport shm: the shared KV segment");
    } else {
      LogWarn("no shared-memory KV segment; prefill workers will use TCP",
              {{"reason", segment.status().ToString()}});
    }
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Create(std::move(loaded->model), engine_options);
  if (!engine.ok()) return Annotate(engine.status(), "starting the engine");
  engine_ = std::move(*engine);
  limits_ = {.vocab_size = static_cast<int32_t>(engine_->model_config().vocab_size),
             .max_context = engine_->max_context(),
             .max_timeout_ms = options_.max_prefill_timeout_ms};
  events_ = std::make_unique<KvEventHub>(&engine_->kv_pool(), epoch_);

  if (receives) {
    table_ = std::make_unique<kv::ReservationTable>(epoch_);
    kv::KvReceiverOptions receiver_options;
    receiver_options.host = options_.kv_listen.host;
    receiver_options.port = options_.kv_listen.port;
    receiver_options.token = options_.cluster_token;
    receiver_options.segment = segment_.get();
    receiver_options.verify_shared_memory_checksums = options_.kv_verify_shm;
    receiver_options.metrics = &metrics_.kv();
    absl::StatusOr<std::unique_ptr<kv::KvReceiver>> receiver =
        kv::KvReceiver::Start(receiver_options, table_.get(), env_);
    if (!receiver.ok()) {
      return Annotate(receiver.status(),
                      absl::StrCat("--kv-listen ", options_.kv_listen.ToString()));
    }
    receiver_ = std::move(*receiver);
    kv_advertise_ = options_.kv_listen;
    kv_advertise_.port = receiver_->port();
    if (IsWildcardHost(kv_advertise_.host)) {
      kv_advertise_.host =
          options_.advertise.host.empty() || IsWildcardHost(options_.advertise.host)
              ? "127.0.0.1"
              : options_.advertise.host;
    }
  }
  if (ServesPrefill(options_.role)) {
    sender_ = std::make_unique<kv::KvSender>(kv::KvSenderOptions{.token = options_.cluster_token,
                                                                 .epoch = epoch_,
                                                                 .transport = options_.kv_transport,
                                                                 .metrics = &metrics_.kv()});
  }
  return absl::OkStatus();
}

bool Worker::Impl::WaitIdle(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (calls_.empty() && jobs_.empty()) return true;
    }
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

void Worker::Impl::Stop() {
  if (stopped_.exchange(true)) return;
  draining_ = true;
  ready_ = false;
  {
    std::lock_guard<std::mutex> lock(loop_mu_);
    loops_stop_ = true;
  }
  loop_wake_.notify_all();
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  if (stats_thread_.joinable()) stats_thread_.join();
  // Cancel what is left; the engine and the receiver end every request and reservation.
  std::vector<std::shared_ptr<GenerateCall>> calls;
  std::vector<std::shared_ptr<PrefillJob>> jobs;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, call] : calls_) calls.push_back(call);
    for (auto& [id, job] : jobs_) jobs.push_back(job);
  }
  for (auto& call : calls) CancelCall(call, "the worker is stopping");
  for (auto& job : jobs) CancelJob(job, "the worker is stopping");
  if (events_ != nullptr) events_->Stop();
  if (receiver_ != nullptr) receiver_->Stop();  // ends every reservation: blocks go back
  WaitIdle(absl::Seconds(10));
  if (http_ != nullptr) http_->Shutdown(absl::Seconds(1));
  tasks_.Wait();
  timers_.Stop();
  engine_closing_ = true;
  engine_.reset();
  tasks_.Wait();
  sender_.reset();
  LogInfo("worker stopped", {});
}

// ---------------------------------------------------------------------------------------------
// Routes

void Worker::Impl::RegisterRoutes() {
  http_->Handle("GET", "/health", [this](std::shared_ptr<net::HttpExchange> x) {
    json body = {{"status", "ok"}, {"epoch", HexId(epoch_)}, {"role", RoleName(options_.role)}};
    x->ReplyJson(200, body.dump());
  });
  http_->Handle("GET", "/ready", [this](std::shared_ptr<net::HttpExchange> x) {
    if (!ready_.load(std::memory_order_acquire)) {
      x->ReplyJson(503, R"({"ready":false,"reason":"loading"})");
    } else if (draining_) {
      x->ReplyJson(503, R"({"ready":false,"reason":"draining"})");
    } else {
      x->ReplyJson(200, R"({"ready":true})");
    }
  });
  http_->Handle("GET", "/metrics", [this](std::shared_ptr<net::HttpExchange> x) {
    x->ReplyText(200, metrics_.registry().RenderPrometheus(), "text/plain; version=0.0.4");
  });
  http_->Handle("GET", "/v1/info", [this](std::shared_ptr<net::HttpExchange> x) {
    if (Authorize(x)) HandleInfo(x);
  });
  http_->Handle("POST", "/v1/generate",
                [this](std::shared_ptr<net::HttpExchange> x) {
                  if (Authorize(x)) HandleGenerate(x);
                },
                {.json_body = true});
  http_->Handle("POST", "/v1/prefill",
                [this](std::shared_ptr<net::HttpExchange> x) {
                  if (Authorize(x)) HandlePrefill(x);
                },
                {.json_body = true});
  http_->Handle("POST", "/v1/cancel",
                [this](std::shared_ptr<net::HttpExchange> x) {
                  if (Authorize(x)) HandleCancel(x);
                },
                {.json_body = true});
  http_->Handle("GET", "/v1/kv/events", [this](std::shared_ptr<net::HttpExchange> x) {
    if (Authorize(x)) HandleKvEvents(x);
  });
  http_->Handle("POST", "/admin/drain", [this](std::shared_ptr<net::HttpExchange> x) {
    if (!Authorize(x)) return;
    Drain();
    size_t in_flight;
    {
      absl::MutexLock lock(&mu_);
      in_flight = calls_.size() + jobs_.size();
    }
    x->ReplyJson(200, json({{"draining", true}, {"in_flight", in_flight}}).dump());
  });
}

bool Worker::Impl::Authorize(const std::shared_ptr<net::HttpExchange>& exchange) {
  const std::string* header = exchange->request().Header("authorization");
  const std::string expected = absl::StrCat("Bearer ", options_.cluster_token);
  bool ok = header != nullptr && header->size() == expected.size();
  if (ok) {
    unsigned char diff = 0;
    for (size_t i = 0; i < expected.size(); ++i) diff |= (*header)[i] ^ expected[i];
    ok = diff == 0;
  }
  if (!ok) {
    exchange->ReplyJson(
        401, ErrorJson("unauthenticated", header == nullptr
                                              ? "missing Authorization: Bearer <cluster token>"
                                              : "wrong cluster token"));
  }
  return ok;
}

bool Worker::Impl::AcceptingWork(const std::shared_ptr<net::HttpExchange>& exchange,
                                 std::string_view kind) {
  if (!ready_.load(std::memory_order_acquire)) {
    Refuse(exchange, absl::UnavailableError("the worker is still loading its model"), kind);
    return false;
  }
  if (draining_) {
    Refuse(exchange, absl::UnavailableError("the worker is draining"), kind);
    return false;
  }
  return true;
}

void Worker::Impl::Refuse(const std::shared_ptr<net::HttpExchange>& exchange,
                          const absl::Status& status, std::string_view kind) {
  const int code = HttpStatusFor(status);
  LogWarn("request refused", {{"path", exchange->request().path},
                              {"status", code},
                              {"reason", std::string(status.message())},
                              {"remote", exchange->request().remote_address}});
  if (!kind.empty()) {
    metrics_.requests.Get(kind, code == 429 || code == 503 ? "rejected" : "client_error")
        .Increment();
  }
  net::HttpResponse response;
  response.status = code;
  response.body = ErrorJson(ErrorCodeFor(status), status.message());
  if (code == 429 || code == 503) response.headers.push_back({"Retry-After", "1"});
  exchange->Reply(std::move(response));
}

void Worker::Impl::HandleInfo(const std::shared_ptr<net::HttpExchange>& exchange) {
  // What loading writes is read only once ready_ published it.
  const bool loaded = ready_.load(std::memory_order_acquire);
  json body = {{"role", std::string(RoleName(options_.role))},
               {"epoch", HexId(epoch_)},
               {"model", loaded ? model_name_ : options_.model},
               {"ready", loaded && !draining_.load()},
               {"draining", draining_.load()},
               {"tp", options_.tp},
               {"location", {{"host", options_.location.host}, {"rack", options_.location.rack}}}};
  if (loaded) {
    body["url"] = advertise_url_;
    const engine::BlockPoolStats pool = engine_->kv_pool().Stats();
    const int64_t reserved = std::min(reserved_blocks_.load(), pool.referenced_blocks);
    size_t calls, jobs;
    {
      absl::MutexLock lock(&mu_);
      calls = calls_.size();
      jobs = jobs_.size();
    }
    body["vocab_size"] = limits_.vocab_size;
    body["max_context"] = limits_.max_context;
    body["kv"] = {{"block_size", layout_.block_size},
                  {"num_layers", layout_.num_layers},
                  {"dtype", std::string(KvTypeName(layout_.type))},
                  {"layer_block_bytes", layout_.layer_block_bytes()},
                  {"block_bytes", layout_.block_bytes()},
                  {"capacity_blocks", pool.total_blocks},
                  {"used_blocks", pool.referenced_blocks - reserved},
                  {"reserved_blocks", reserved},
                  {"cached_blocks", pool.cached_blocks},
                  {"free_blocks", pool.free_blocks},
                  {"open_reservations", table_ != nullptr ? table_->Stats().active : 0},
                  {"address", receiver_ != nullptr ? KvAddress() : ""},
                  {"shared_memory", segment_ != nullptr},
                  {"last_event_id", engine_->kv_pool().last_event_id()}};
    body["requests"] = {{"generate", calls}, {"prefill", jobs}};
  }
  exchange->ReplyJson(200, body.dump());
}

void Worker::Impl::HandleCancel(const std::shared_ptr<net::HttpExchange>& exchange) {
  absl::StatusOr<std::string> id = ParseCancelRequest(exchange->request().body);
  if (!id.ok()) {
    Refuse(exchange, id.status(), "");
    return;
  }
  std::shared_ptr<GenerateCall> call;
  std::shared_ptr<PrefillJob> job;
  {
    absl::MutexLock lock(&mu_);
    if (auto it = calls_.find(*id); it != calls_.end()) call = it->second;
    if (auto it = jobs_.find(*id); it != jobs_.end()) job = it->second;
  }
  if (call == nullptr && job == nullptr) {
    LogWarn("cancel of an unknown request", {{"request_id", *id}});
    exchange->ReplyJson(404, ErrorJson("not_found", absl::StrCat("no request '", *id, "' here")));
    return;
  }
  if (call != nullptr) CancelCall(call, "cancelled by /v1/cancel");
  if (job != nullptr) CancelJob(job, "cancelled by /v1/cancel");
  exchange->ReplyJson(200, json({{"cancelled", *id}}).dump());
}

void Worker::Impl::HandleKvEvents(const std::shared_ptr<net::HttpExchange>& exchange) {
  if (!ready_.load(std::memory_order_acquire)) {
    Refuse(exchange, absl::UnavailableError("the worker is still loading its model"), "");
    return;
  }
  uint64_t since = 0;
  std::optional<uint64_t> consumer_epoch;
  if (std::optional<std::string> text = exchange->request().QueryParam("since"); text) {
    if (!absl::SimpleAtoi(*text, &since)) {
      Refuse(exchange, absl::InvalidArgumentError("'since' must be a non-negative event id"), "");
      return;
    }
  }
  if (std::optional<std::string> text = exchange->request().QueryParam("epoch"); text) {
    absl::StatusOr<uint64_t> epoch = ParseHexId(*text, "epoch");
    if (!epoch.ok()) {
      Refuse(exchange, epoch.status(), "");
      return;
    }
    consumer_epoch = *epoch;
  }
  events_->Subscribe(exchange->StartSse(), since, consumer_epoch);
}

// ---------------------------------------------------------------------------------------------
// Generate

int64_t Worker::Impl::EstimateUncached(const std::vector<int32_t>& prompt) const {
  std::vector<engine::BlockHash> hashes = engine::HashKvBlocks(prompt, layout_.block_size);
  const int64_t cached =
      engine_->kv_pool().MatchPrefix(hashes) * static_cast<int64_t>(layout_.block_size);
  return std::max<int64_t>(
      1, static_cast<int64_t>(prompt.size()) - std::min<int64_t>(cached, prompt.size() - 1));
}

void Worker::Impl::SettleQueue(int64_t* tokens, bool* queued) {
  if (!*queued) return;
  *queued = false;
  queued_requests_ -= 1;
  queued_tokens_ -= *tokens;
  metrics_.prefill_queue_tokens.Set(static_cast<double>(queued_tokens_.load()));
}

void Worker::Impl::HandleGenerate(const std::shared_ptr<net::HttpExchange>& exchange) {
  if (!AcceptingWork(exchange, "generate")) return;
  if (!ServesGenerate(options_.role)) {
    Refuse(exchange,
           absl::FailedPreconditionError("this is a prefill worker: POST /v1/generate goes to a "
                                         "decode or both worker"),
           "generate");
    return;
  }
  absl::StatusOr<GenerateParams> params = ParseGenerateRequest(exchange->request().body, limits_);
  if (!params.ok()) {
    Refuse(exchange, params.status(), "generate");
    return;
  }
  if (Overloaded()) {
    Refuse(exchange,
           absl::ResourceExhaustedError(
               absl::StrCat("the worker runs its maximum of ", options_.max_requests, " requests")),
           "generate");
    return;
  }
  auto call = std::make_shared<GenerateCall>();
  call->arrival = env_.NowMicros();
  call->params = std::move(*params);
  call->stop_ids = call->params.stop_ids;
  if (!call->params.ignore_eos) {
    call->stop_ids.insert(call->stop_ids.end(), eos_ids_.begin(), eos_ids_.end());
  }
  // A request that could never fit the KV pool is refused up front.
  const int64_t longest =
      std::min<int64_t>(static_cast<int64_t>(call->params.prompt.size()) + call->params.max_tokens,
                        limits_.max_context);
  const int64_t blocks_needed = (longest + layout_.block_size - 1) / layout_.block_size;
  if (blocks_needed > engine_->kv_pool().num_blocks()) {
    Refuse(exchange,
           absl::InvalidArgumentError(absl::StrCat(
               "the request needs ", blocks_needed, " KV blocks; this worker's pool holds ",
               engine_->kv_pool().num_blocks(), " (lower max_tokens or raise --kv-budget)")),
           "generate");
    return;
  }
  bool duplicate;
  {
    absl::MutexLock lock(&mu_);
    duplicate = !calls_.try_emplace(call->params.request_id, call).second;
  }
  if (duplicate) {
    Refuse(exchange,
           absl::AlreadyExistsError(
               absl::StrCat("request '", call->params.request_id, "' is already running here")),
           "generate");
    return;
  }
  call->stream = exchange->StartSse();
  std::weak_ptr<GenerateCall> weak = call;
  call->stream->OnClose([this, weak](absl::Status why) {
    if (auto call = weak.lock()) CancelCall(call, absl::StrCat("client gone: ", why.message()));
  });
  if (call->params.prefill.has_value()) {
    StartRemote(call);
  } else {
    StartLocal(call);
  }
}

engine::GenerateRequest Worker::Impl::EngineRequest(const std::shared_ptr<GenerateCall>& call) {
  engine::GenerateRequest request;
  request.prompt = call->params.prompt;
  request.sampling = call->params.sampling;
  request.max_tokens = call->params.max_tokens;
  request.stop_token_ids = call->stop_ids;
  request.on_token = [this, call](const engine::TokenEvent& event) {
    metrics_.generated_tokens.Increment();
    SendToken(call, event.sampled);
    return true;
  };
  request.on_finish = [this, call](const engine::FinishEvent& event) {
    OnEngineFinish(call, event);
  };
  return request;
}

void Worker::Impl::StartLocal(const std::shared_ptr<GenerateCall>& call) {
  const int64_t uncached = EstimateUncached(call->params.prompt);
  bool cancelled;
  {
    absl::MutexLock lock(&call->mu);
    cancelled = call->cancelled || call->finished;
    if (!cancelled) {
      call->queued = true;
      call->queued_tokens = uncached;
      call->queue_ms = MillisBetween(call->arrival, env_.NowMicros());
    }
  }
  if (cancelled) {
    EndCall(call, "cancelled", "");
    return;
  }
  queued_requests_ += 1;
  queued_tokens_ += uncached;
  metrics_.prefill_queue_tokens.Set(static_cast<double>(queued_tokens_.load()));
  absl::StatusOr<uint64_t> id = engine_->Submit(EngineRequest(call));
  if (!id.ok()) {
    EndCallWithError(call, id.status());
    return;
  }
  bool cancel = false;
  {
    absl::MutexLock lock(&call->mu);
    call->engine_id = *id;
    cancel = call->cancelled;
  }
  if (cancel) engine_->Cancel(*id);
}

void Worker::Impl::StartRemote(const std::shared_ptr<GenerateCall>& call) {
  absl::StatusOr<engine::ImportReservation> reservation =
      engine_->ReserveImport(call->params.prompt);
  if (!reservation.ok()) {
    FallBack(call, "reserve_failed", reservation.status());
    return;
  }
  const int64_t first = reservation->first_block_to_fill;
  if (first >= static_cast<int64_t>(reservation->blocks.size())) {
    // Every block of the prompt is cached here: nothing to transfer, and the local prefill
    // recomputes only the last token.
    engine_->CancelImport(reservation->reservation_id);
    StartLocal(call);
    return;
  }
  std::vector<engine::BlockId> fill(reservation->blocks.begin() + first, reservation->blocks.end());
  const int64_t num_blocks = static_cast<int64_t>(fill.size());
  const RemotePrefill remote = *call->params.prefill;
  const int timeout_ms = static_cast<int>(
      std::min<int64_t>(remote.timeout_ms, std::max<int64_t>(1, options_.lease_ms)));
  {
    absl::MutexLock lock(&call->mu);
    call->remote = true;
    call->prefill_mode = "remote";
    call->engine_reservation = reservation->reservation_id;
    call->reserved_blocks = num_blocks;
    call->cached_tokens = reservation->cached_tokens;
    call->queue_ms = MillisBetween(call->arrival, env_.NowMicros());
  }
  reserved_blocks_ += num_blocks;
  metrics_.cached_prompt_tokens.Increment(static_cast<double>(reservation->cached_tokens));
  std::weak_ptr<GenerateCall> weak = call;
  kv::ReservationSpec spec;
  spec.num_layers = static_cast<uint32_t>(layout_.num_layers);
  spec.num_blocks = static_cast<uint32_t>(num_blocks);
  spec.layer_block_bytes = static_cast<uint64_t>(layout_.layer_block_bytes());
  spec.kv_type = static_cast<uint8_t>(layout_.type);
  spec.lease_deadline_micros = env_.NowMicros() + options_.lease_ms * 1000;
  spec.target =
      std::make_shared<ImportTarget>(&engine_->kv_pool(), std::move(fill), segment_.get());
  spec.on_done = [this, weak](absl::Status status, int32_t first_token) {
    auto call = weak.lock();
    if (call == nullptr) return;
    {
      absl::MutexLock lock(&call->mu);
      call->state.kv_done = true;
      call->state.kv_ok = status.ok();
      call->kv_status = status;
      call->kv_first_token = first_token;
    }
    DriveRemote(call);
  };
  // The reservation must be known before the prefill worker can claim it.
  const uint64_t kv_id = table_->Add(std::move(spec));
  bool cancelled;
  {
    absl::MutexLock lock(&call->mu);
    call->kv_reservation = kv_id;
    cancelled = call->state.cancelled;
  }
  if (cancelled) {
    // Cancelled while reserving: end the reservation now (DriveRemote abandons the call).
    receiver_->Cancel(kv_id);
    return;
  }
  PrefillParams job;
  job.request_id = call->params.request_id;
  job.prompt = call->params.prompt;
  job.sampling = call->params.sampling;
  job.logprobs = call->params.logprobs;
  job.kv = {.host = kv_advertise_.host,
            .port = kv_advertise_.port,
            .epoch = epoch_,
            .reservation = kv_id,
            .first_block = first,
            .num_blocks = num_blocks};
  job.timeout_ms = timeout_ms;
  net::HttpClientRequest request;
  request.method = "POST";
  request.url = absl::StrCat(remote.url, "/v1/prefill");
  request.body = PrefillRequestJson(job);
  request.headers.push_back({"Authorization", absl::StrCat("Bearer ", options_.cluster_token)});
  request.timeout = absl::Milliseconds(timeout_ms) + absl::Seconds(1);
  tasks_.Run([this, weak, request = std::move(request)] {
    absl::StatusOr<net::HttpResult> result = net::HttpClient::Fetch(request);
    auto call = weak.lock();
    if (call == nullptr) return;
    {
      absl::MutexLock lock(&call->mu);
      call->state.call_done = true;
      if (!result.ok()) {
        call->call_status = result.status();
      } else if (result->status != 200) {
        call->http_status = result->status;
        call->call_status =
            absl::UnavailableError(absl::StrCat("the prefill worker answered ", result->status,
                                                ": ", ErrorMessageFromBody(result->body)));
      } else {
        call->http_status = 200;
        absl::StatusOr<PrefillAnswer> answer = ParsePrefillAnswer(result->body);
        if (answer.ok()) {
          call->answer = std::move(*answer);
        } else {
          call->call_status = Annotate(answer.status(), "the prefill worker's answer");
        }
      }
      call->state.call_ok = call->call_status.ok();
    }
    DriveRemote(call);
  });
}

void Worker::Impl::DriveRemote(const std::shared_ptr<GenerateCall>& call) {
  RemoteStep step;
  uint64_t kv_id, engine_reservation;
  int64_t reserved;
  std::string reason;
  absl::Status why;
  {
    absl::MutexLock lock(&call->mu);
    if (!call->remote || call->remote_resolved) return;
    step = DecideRemoteStep(call->state);
    kv_id = call->kv_reservation;
    engine_reservation = call->engine_reservation;
    reserved = call->reserved_blocks;
    if (step == RemoteStep::kAbortKv) call->state.kv_cancel_sent = true;
    if (step == RemoteStep::kJoin || step == RemoteStep::kFallBack ||
        step == RemoteStep::kAbandon) {
      call->remote_resolved = true;
    }
    if (step == RemoteStep::kFallBack) {
      reason = std::string(FallbackReasonFor(call->kv_status, call->call_status,
                                             call->state.call_done ? call->http_status : 0));
      why = !call->call_status.ok() ? call->call_status : call->kv_status;
    }
  }
  switch (step) {
    case RemoteStep::kWait:
      return;
    case RemoteStep::kAbortKv:
      if (kv_id != 0) receiver_->Cancel(kv_id);  // its end comes back through on_done
      return;
    case RemoteStep::kAbandon:
      engine_->CancelImport(engine_reservation);
      reserved_blocks_ -= reserved;
      EndCall(call, "cancelled", "");
      return;
    case RemoteStep::kFallBack:
      engine_->CancelImport(engine_reservation);
      reserved_blocks_ -= reserved;
      FallBack(call, reason, why);
      return;
    case RemoteStep::kJoin:
      JoinRemote(call);
      return;
  }
}

void Worker::Impl::FallBack(const std::shared_ptr<GenerateCall>& call, std::string_view reason,
                            const absl::Status& why) {
  const std::string label(reason);
  LogWarn("remote prefill failed",
          {{"request_id", call->params.request_id},
           {"reason", label},
           {"detail", std::string(why.message())},
           {"fallback", options_.prefill_fallback == PrefillFallback::kLocal ? "local" : "fail"}});
  if (options_.prefill_fallback == PrefillFallback::kFail) {
    EndCallWithError(call, absl::UnavailableError(absl::StrCat("remote prefill failed (", label,
                                                               "): ", why.message())));
    return;
  }
  metrics_.prefill_fallbacks.Get(label).Increment();
  {
    absl::MutexLock lock(&call->mu);
    call->remote = false;
    call->prefill_mode = "fallback";
    call->cached_tokens = 0;
  }
  StartLocal(call);
}

void Worker::Impl::JoinRemote(const std::shared_ptr<GenerateCall>& call) {
  uint64_t engine_reservation;
  int64_t reserved;
  engine::SampledToken first;
  bool cancelled;
  {
    absl::MutexLock lock(&call->mu);
    engine_reservation = call->engine_reservation;
    reserved = call->reserved_blocks;
    first.token = call->answer.first_token;
    first.logprob = call->answer.logprob;
    first.top = call->answer.top_logprobs;
    if (call->kv_first_token >= 0 && call->kv_first_token != first.token) {
      LogWarn("prefill answer and KV transfer disagree on the first token",
              {{"request_id", call->params.request_id},
               {"answer", first.token},
               {"transfer", call->kv_first_token}});
    }
    call->prefill_ms = call->answer.timing.prefill_ms;
    call->transfer_ms = call->answer.timing.transfer_ms;
    call->queue_ms += call->answer.timing.queue_ms;
    call->cached_tokens = std::max(call->cached_tokens, call->answer.cached_tokens);
    cancelled = call->cancelled;
  }
  reserved_blocks_ -= reserved;
  auto release = [&] { engine_->CancelImport(engine_reservation); };
  if (cancelled) {
    release();
    EndCall(call, "cancelled", "");
    return;
  }
  // A first token that ends the request (a stop token, max_tokens 1, the context full) ends it
  // in the engine too, at once and through OnEngineFinish like any other end; the imported
  // prompt blocks still reach the prefix cache. A stop token is not sent.
  if (std::find(call->stop_ids.begin(), call->stop_ids.end(), first.token) ==
      call->stop_ids.end()) {
    SendToken(call, first);
  }
  absl::StatusOr<uint64_t> id =
      engine_->CompleteImport(engine_reservation, EngineRequest(call), first.token);
  if (!id.ok()) {
    // The engine released the blocks; the first token is out, so no local retry.
    EndCallWithError(call, Annotate(id.status(), "joining the imported KV"));
    return;
  }
  bool cancel;
  {
    absl::MutexLock lock(&call->mu);
    call->engine_id = *id;
    cancel = call->cancelled;
  }
  if (cancel) engine_->Cancel(*id);
}

void Worker::Impl::SendToken(const std::shared_ptr<GenerateCall>& call,
                             const engine::SampledToken& token) {
  const int64_t now = env_.NowMicros();
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished) return;
    if (call->tokens_sent == 0) {
      metrics_.ttft.Observe((now - call->arrival) / 1e6);
      if (call->prefill_ms == 0 && !call->remote) {
        call->prefill_ms = MillisBetween(call->arrival, now) - call->queue_ms;
      }
      SettleQueue(&call->queued_tokens, &call->queued);
    } else {
      metrics_.itl.Observe((now - call->last_token_micros) / 1e6);
    }
    call->last_token_micros = now;
    ++call->tokens_sent;
  }
  call->stream->Send(TokenEventJson(token, call->params.logprobs));
}

void Worker::Impl::OnEngineFinish(const std::shared_ptr<GenerateCall>& call,
                                  const engine::FinishEvent& f) {
  switch (f.reason) {
    case engine::FinishReason::kStop:
    case engine::FinishReason::kLength: {
      FinishSummary summary;
      {
        absl::MutexLock lock(&call->mu);
        if (call->prefill_mode != "remote") {
          call->cached_tokens = f.cached_tokens;
          metrics_.cached_prompt_tokens.Increment(static_cast<double>(f.cached_tokens));
          metrics_.prompt_tokens.Increment(static_cast<double>(f.prompt_tokens - f.cached_tokens));
        }
        summary = {.finish_reason = f.reason == engine::FinishReason::kStop ? "stop" : "length",
                   .prompt_tokens = static_cast<int64_t>(call->params.prompt.size()),
                   .completion_tokens = call->tokens_sent,
                   .cached_tokens = call->cached_tokens,
                   .queue_ms = call->queue_ms,
                   .prefill_ms = call->prefill_ms,
                   .transfer_ms = call->transfer_ms,
                   .prefill = call->prefill_mode};
      }
      EndCall(call, "ok", FinishEventJson(summary));
      return;
    }
    case engine::FinishReason::kCancelled:
      EndCall(call, "cancelled", "");
      return;
    case engine::FinishReason::kError:
      EndCallWithError(call, f.status);
      return;
  }
}

void Worker::Impl::CancelCall(const std::shared_ptr<GenerateCall>& call, std::string_view reason) {
  uint64_t engine_id = 0;
  bool tell_prefill = false;
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished || call->cancelled) return;
    call->cancelled = true;
    call->cancel_reason = std::string(reason);
    call->state.cancelled = true;
    engine_id = call->engine_id;
    tell_prefill = call->remote && !call->remote_resolved && !call->state.call_done;
  }
  LogInfo("request cancelled", {{"request_id", call->params.request_id}, {"reason", reason}});
  if (engine_id != 0) engine_->Cancel(engine_id);
  if (tell_prefill) {
    // The prefill worker stops computing and pushing; best effort (it also notices when this
    // worker aborts the reservation or closes the prefill call).
    net::HttpClientRequest request;
    request.method = "POST";
    request.url = absl::StrCat(call->params.prefill->url, "/v1/cancel");
    request.body = json({{"request_id", call->params.request_id}}).dump();
    request.headers.push_back({"Authorization", absl::StrCat("Bearer ", options_.cluster_token)});
    request.timeout = absl::Seconds(2);
    tasks_.Run([request = std::move(request)] { (void)net::HttpClient::Fetch(request); });
  }
  DriveRemote(call);
}

void Worker::Impl::EndCallWithError(const std::shared_ptr<GenerateCall>& call,
                                    const absl::Status& status) {
  LogWarn("request failed",
          {{"request_id", call->params.request_id}, {"reason", status.ToString()}});
  EndCall(call, "error", ErrorJson(ErrorCodeFor(status), status.message()));
}

void Worker::Impl::EndCall(const std::shared_ptr<GenerateCall>& call, std::string_view outcome,
                           const std::string& event) {
  std::string last = event;
  {
    absl::MutexLock lock(&call->mu);
    if (call->finished) return;
    call->finished = true;
    SettleQueue(&call->queued_tokens, &call->queued);
    if (outcome == "cancelled" && last.empty()) {
      last =
          ErrorJson("cancelled", call->cancel_reason.empty() ? "cancelled" : call->cancel_reason);
    }
  }
  metrics_.requests.Get("generate", outcome).Increment();
  {
    absl::MutexLock lock(&mu_);
    auto it = calls_.find(call->params.request_id);
    if (it != calls_.end() && it->second == call) calls_.erase(it);
  }
  if (!last.empty()) call->stream->Send(last);
  call->stream->Close();
}

// ---------------------------------------------------------------------------------------------
// Prefill

void Worker::Impl::HandlePrefill(const std::shared_ptr<net::HttpExchange>& exchange) {
  if (!AcceptingWork(exchange, "prefill")) return;
  if (!ServesPrefill(options_.role)) {
    Refuse(exchange,
           absl::FailedPreconditionError("this is a decode worker: POST /v1/prefill goes to a "
                                         "prefill or both worker"),
           "prefill");
    return;
  }
  absl::StatusOr<PrefillParams> params = ParsePrefillRequest(exchange->request().body, limits_);
  if (!params.ok()) {
    Refuse(exchange, params.status(), "prefill");
    return;
  }
  const int64_t prompt_blocks =
      (static_cast<int64_t>(params->prompt.size()) + layout_.block_size - 1) / layout_.block_size;
  if (params->kv.first_block + params->kv.num_blocks != prompt_blocks) {
    Refuse(exchange,
           absl::InvalidArgumentError(absl::StrCat(
               "kv: blocks ", params->kv.first_block, "..",
               params->kv.first_block + params->kv.num_blocks - 1,
               " do not end at the prompt's last block (", prompt_blocks, " blocks of ",
               layout_.block_size, " tokens); do both workers use the same block size?")),
           "prefill");
    return;
  }
  if (Overloaded()) {
    Refuse(exchange,
           absl::ResourceExhaustedError(
               absl::StrCat("the worker runs its maximum of ", options_.max_requests, " requests")),
           "prefill");
    return;
  }
  auto job = std::make_shared<PrefillJob>();
  job->arrival = env_.NowMicros();
  job->params = std::move(*params);
  job->exchange = exchange;
  bool duplicate;
  {
    absl::MutexLock lock(&mu_);
    duplicate = !jobs_.try_emplace(job->params.request_id, job).second;
  }
  if (duplicate) {
    Refuse(exchange,
           absl::AlreadyExistsError(
               absl::StrCat("prefill '", job->params.request_id, "' is already running here")),
           "prefill");
    return;
  }
  std::weak_ptr<PrefillJob> weak = job;
  exchange->OnClientGone([this, weak] {
    if (auto job = weak.lock()) CancelJob(job, "the decode worker closed the prefill call");
  });
  tasks_.Run([this, job] { RunPrefillJob(job); });
}

void Worker::Impl::RunPrefillJob(const std::shared_ptr<PrefillJob>& job) {
  const PrefillParams& p = job->params;
  kv::BeginMessage begin;
  begin.reservation_id = p.kv.reservation;
  begin.receiver_epoch = p.kv.epoch;
  begin.num_layers = static_cast<uint32_t>(layout_.num_layers);
  begin.num_blocks = static_cast<uint32_t>(p.kv.num_blocks);
  begin.layer_block_bytes = static_cast<uint64_t>(layout_.layer_block_bytes());
  begin.kv_type = static_cast<uint8_t>(layout_.type);
  absl::StatusOr<std::unique_ptr<kv::OutgoingTransfer>> transfer =
      sender_->Begin(p.kv.host, p.kv.port, begin);
  if (!transfer.ok()) {
    const bool unreachable = transfer.status().code() == absl::StatusCode::kUnavailable ||
                             transfer.status().code() == absl::StatusCode::kDeadlineExceeded;
    LogWarn("KV transfer refused", {{"request_id", p.request_id},
                                    {"kv_address", HostPort{p.kv.host, p.kv.port}.ToString()},
                                    {"reason", transfer.status().ToString()}});
    EndJob(job, "rejected", unreachable ? 503 : 409,
           ErrorJson(unreachable ? "unavailable" : "kv_refused", transfer.status().message()));
    return;
  }
  job->transfer = std::move(*transfer);
  job->tracker =
      std::make_unique<LayerPushTracker>(layout_.num_layers, static_cast<int64_t>(p.prompt.size()),
                                         layout_.block_size, p.kv.first_block, p.kv.num_blocks);
  const int64_t uncached = EstimateUncached(p.prompt);
  std::string cancelled;
  {
    absl::MutexLock lock(&job->mu);
    if (job->cancelled) {
      cancelled = job->cancel_reason;
    } else {
      job->queued = true;
      job->queued_tokens = uncached;
    }
  }
  if (!cancelled.empty()) {
    job->transfer->Abort(cancelled);
    EndJob(job, "cancelled", 409, ErrorJson("cancelled", cancelled));
    return;
  }
  queued_requests_ += 1;
  queued_tokens_ += uncached;
  metrics_.prefill_queue_tokens.Set(static_cast<double>(queued_tokens_.load()));

  engine::GenerateRequest request;
  request.prompt = p.prompt;
  request.sampling = p.sampling;
  request.max_tokens = 1;  // the decode worker checks stop tokens
  request.hold_kv = true;
  request.on_layer_kv = [this, job](const engine::LayerKvEvent& e) { OnPrefillLayer(job, e); };
  request.on_token = [this, job](const engine::TokenEvent& e) {
    metrics_.generated_tokens.Increment();
    absl::MutexLock lock(&job->mu);
    job->have_first = true;
    job->first = e.sampled;
    job->first_token_micros = env_.NowMicros();
    SettleQueue(&job->queued_tokens, &job->queued);
    return true;
  };
  request.on_finish = [this, job](const engine::FinishEvent& f) {
    if (engine_closing_) {
      // The engine is being destroyed (Stop): its blocks go with it.
      job->transfer->Abort("the prefill worker is stopping");
      EndJob(job, "cancelled", 503, ErrorJson("unavailable", "the prefill worker is stopping"));
      return;
    }
    // Finishing the transfer blocks until the decode worker confirms: not on the engine thread.
    tasks_.Run([this, job, f] { CompletePrefillJob(job, f); });
  };
  absl::StatusOr<uint64_t> id = engine_->Submit(std::move(request));
  if (!id.ok()) {
    job->transfer->Abort(std::string(id.status().message()));
    {
      absl::MutexLock lock(&job->mu);
      SettleQueue(&job->queued_tokens, &job->queued);
    }
    EndJob(job, "error", HttpStatusFor(id.status()),
           ErrorJson(ErrorCodeFor(id.status()), id.status().message()));
    return;
  }
  bool cancel;
  {
    absl::MutexLock lock(&job->mu);
    job->engine_id = *id;
    cancel = job->cancelled;
  }
  if (cancel) engine_->Cancel(*id);
  std::weak_ptr<PrefillJob> weak = job;
  timers_.RunAfter(absl::Milliseconds(p.timeout_ms), [this, weak] {
    if (auto job = weak.lock()) CancelJob(job, "prefill timed out");
  });
}

void Worker::Impl::OnPrefillLayer(const std::shared_ptr<PrefillJob>& job,
                                  const engine::LayerKvEvent& e) {
  if (job->restarted) return;
  if (job->first_layer_micros == 0) job->first_layer_micros = env_.NowMicros();
  const LayerPushTracker::Step step = job->tracker->OnLayer(e.layer, e.start, e.count);
  switch (step.result) {
    case LayerPushTracker::Result::kNothing:
      return;
    case LayerPushTracker::Result::kRestarted:
      // The engine recomputes the sequence (preempted): blocks already pushed may have been
      // reused, so this transfer cannot be trusted. The decode worker falls back.
      job->restarted = true;
      engine_->Cancel(e.request_id);
      return;
    case LayerPushTracker::Result::kPush:
      break;
  }
  const int64_t first = job->params.kv.first_block + step.first;
  if (static_cast<int64_t>(e.blocks.size()) < first + step.count) {
    job->restarted = true;
    engine_->Cancel(e.request_id);
    return;
  }
  std::vector<const uint8_t*> blocks;
  blocks.reserve(step.count);
  for (int64_t i = 0; i < step.count; ++i) {
    blocks.push_back(engine_->kv_pool().LayerSpan(e.blocks[first + i], e.layer).data());
  }
  job->transfer->SendBlocks(static_cast<uint32_t>(e.layer), static_cast<uint32_t>(step.first),
                            std::move(blocks));
}

void Worker::Impl::CompletePrefillJob(const std::shared_ptr<PrefillJob>& job,
                                      const engine::FinishEvent& f) {
  bool have_first;
  engine::SampledToken first;
  int64_t first_token_micros;
  std::string cancel_reason;
  {
    absl::MutexLock lock(&job->mu);
    SettleQueue(&job->queued_tokens, &job->queued);
    have_first = job->have_first;
    first = job->first;
    first_token_micros = job->first_token_micros;
    cancel_reason = job->cancel_reason;
  }
  const bool computed =
      (f.reason == engine::FinishReason::kStop || f.reason == engine::FinishReason::kLength) &&
      have_first && !job->restarted && job->tracker->AllComplete();
  if (!computed) {
    std::string reason = f.reason == engine::FinishReason::kError ? f.status.ToString()
                         : job->restarted         ? "the prefill was preempted and recomputed"
                         : !cancel_reason.empty() ? cancel_reason
                                                  : "prefill ended without a first token";
    job->transfer->Abort(reason);
    engine_->ReleaseHeldKv(f.request_id);
    const bool cancelled = f.reason == engine::FinishReason::kCancelled && !job->restarted;
    const bool timeout = cancel_reason == "prefill timed out";
    EndJob(job, cancelled ? "cancelled" : "error",
           timeout          ? 504
           : cancelled      ? 409
           : job->restarted ? 503
                            : 500,
           ErrorJson(timeout     ? "deadline_exceeded"
                     : cancelled ? "cancelled"
                                 : "internal",
                     reason));
    return;
  }
  metrics_.cached_prompt_tokens.Increment(static_cast<double>(f.cached_tokens));
  metrics_.prompt_tokens.Increment(static_cast<double>(f.prompt_tokens - f.cached_tokens));
  const int64_t finish_start = env_.NowMicros();
  absl::Status sent = job->transfer->Finish(first.token);
  const int64_t finish_end = env_.NowMicros();
  engine_->ReleaseHeldKv(f.request_id);
  if (!sent.ok()) {
    LogWarn("KV transfer failed",
            {{"request_id", job->params.request_id}, {"reason", sent.ToString()}});
    EndJob(job, "error", sent.code() == absl::StatusCode::kUnavailable ? 503 : 409,
           ErrorJson(ErrorCodeFor(sent), sent.message()));
    return;
  }
  PrefillAnswer answer;
  answer.first_token = first.token;
  answer.logprob = first.logprob;
  answer.top_logprobs = first.top;
  answer.cached_tokens = f.cached_tokens;
  answer.computed_tokens = f.prompt_tokens - f.cached_tokens;
  answer.transferred_blocks = job->params.kv.num_blocks;
  answer.transport = job->transfer->shared_memory() ? "shm" : "tcp";
  answer.timing.queue_ms = MillisBetween(job->arrival, job->first_layer_micros);
  answer.timing.prefill_ms = MillisBetween(job->first_layer_micros, first_token_micros);
  answer.timing.transfer_ms = MillisBetween(finish_start, finish_end);
  EndJob(job, "ok", 200, PrefillAnswerJson(answer));
}

void Worker::Impl::CancelJob(const std::shared_ptr<PrefillJob>& job, std::string_view reason) {
  uint64_t id;
  {
    absl::MutexLock lock(&job->mu);
    if (job->cancelled) return;
    job->cancelled = true;
    job->cancel_reason = std::string(reason);
    id = job->engine_id;
  }
  if (id != 0) engine_->Cancel(id);
}

void Worker::Impl::EndJob(const std::shared_ptr<PrefillJob>& job, std::string_view outcome,
                          int status, std::string body) {
  metrics_.requests.Get("prefill", outcome).Increment();
  {
    // Forget the id first: the caller may reuse it as soon as it has the answer.
    absl::MutexLock lock(&mu_);
    auto it = jobs_.find(job->params.request_id);
    if (it != jobs_.end() && it->second == job) jobs_.erase(it);
  }
  net::HttpResponse response;
  response.status = status;
  response.body = std::move(body);
  if (status == 503) response.headers.push_back({"Retry-After", "1"});
  job->exchange->Reply(std::move(response));
}

// ---------------------------------------------------------------------------------------------
// Background loops

void Worker::Impl::StatsLoop() {
  auto last = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lock(loop_mu_);
  while (!loops_stop_) {
    loop_wake_.wait_for(lock, std::chrono::seconds(1));
    if (loops_stop_) break;
    lock.unlock();
    engine::EngineStats stats = engine_->Stats();
    auto now = std::chrono::steady_clock::now();
    metrics_.OnEngineStats(stats, std::chrono::duration<double>(now - last).count(),
                           reserved_blocks_.load());
    last = now;
    lock.lock();
  }
}

std::string Worker::Impl::HeartbeatJson() {
  const engine::BlockPoolStats pool = engine_->kv_pool().Stats();
  json body = {{"url", advertise_url_},
               {"role", RoleName(options_.role)},
               {"epoch", HexId(epoch_)},
               {"model", model_name_},
               {"ready", ready_.load() && !draining_.load()},
               {"draining", draining_.load()},
               {"kv_address", receiver_ != nullptr ? KvAddress() : ""},
               {"location", {{"host", options_.location.host}, {"rack", options_.location.rack}}},
               {"capacity_blocks", pool.total_blocks},
               {"active_blocks", pool.referenced_blocks},
               {"prefill_queue_requests", std::max<int64_t>(0, queued_requests_.load())},
               {"prefill_queue_tokens", std::max<int64_t>(0, queued_tokens_.load())}};
  return body.dump();
}

void Worker::Impl::HeartbeatLoop() {
  RetryBackoff backoff(absl::Seconds(1), absl::Seconds(10));
  const std::string url = absl::StrCat(
      options_.router_url, options_.router_url.ends_with("/") ? "" : "/", "v1/workers/heartbeat");
  std::unique_lock<std::mutex> lock(loop_mu_);
  while (!loops_stop_) {
    lock.unlock();
    net::HttpClientRequest request;
    request.method = "POST";
    request.url = url;
    request.body = HeartbeatJson();
    request.headers.push_back({"Authorization", absl::StrCat("Bearer ", options_.cluster_token)});
    request.timeout = absl::Seconds(2);
    absl::StatusOr<net::HttpResult> result = net::HttpClient::Fetch(request);
    absl::Duration wait = options_.heartbeat_interval;
    if (result.ok() && result->status / 100 == 2) {
      if (backoff.failures() > 0) LogInfo("registered with the router", {{"router", url}});
      backoff.Reset();
    } else {
      std::string why = result.ok() ? absl::StrCat("HTTP ", result->status, ": ",
                                                   ErrorMessageFromBody(result->body))
                                    : result.status().ToString();
      // Say it once; the router may simply not be up yet.
      if (backoff.failures() == 0) {
        LogWarn("router heartbeat failed; retrying with backoff",
                {{"router", url}, {"reason", why}});
      } else {
        LogDebug("router heartbeat failed", {{"router", url}, {"reason", why}});
      }
      wait = backoff.Next();
    }
    lock.lock();
    loop_wake_.wait_for(lock, absl::ToChronoMilliseconds(wait), [&] { return loops_stop_; });
  }
}

// ---------------------------------------------------------------------------------------------

Worker::Worker(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Worker::~Worker() { impl_->Stop(); }

absl::StatusOr<std::unique_ptr<Worker>> Worker::Start(WorkerOptions options, Env& env) {
  if (options.cluster_token.empty()) {
    return absl::InvalidArgumentError("the worker needs a cluster token");
  }
  if (options.tp < 1) return absl::InvalidArgumentError("--tp must be at least 1");
  if (options.lease_ms < 1) return absl::InvalidArgumentError("--lease-ms must be at least 1");
  auto impl = std::make_unique<Impl>(std::move(options), env);
  absl::Status started = impl->Start();
  if (!started.ok()) {
    impl->Stop();
    return started;
  }
  return std::unique_ptr<Worker>(new Worker(std::move(impl)));
}

int Worker::http_port() const { return impl_->http_port(); }
int Worker::kv_port() const { return impl_->kv_port(); }
uint64_t Worker::epoch() const { return impl_->epoch(); }
void Worker::Drain() { impl_->Drain(); }
bool Worker::WaitIdle(absl::Duration timeout) { return impl_->WaitIdle(timeout); }
void Worker::Stop() { impl_->Stop(); }

}  // namespace tandem::worker
