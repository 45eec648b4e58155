#include "fake_worker.h"

#include <algorithm>
#include <random>

#include "absl/strings/str_cat.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"
#include "router/block_hash.h"
#include "router/kv_event_wire.h"

namespace tandem::router::testing {

using nlohmann::json;

struct FakeWorker::Stream {
  std::shared_ptr<net::SseStream> sse;
  std::vector<int32_t> context;
  size_t prompt_tokens = 0;
  int64_t max_tokens = 0;
  int64_t generated = 0;
  std::vector<int32_t> stop_ids;
  int logprobs = -1;
  std::string prefill_url;
  bool prefilled = false;
  std::string prefill_kind = "local";
};

struct FakeWorker::Subscriber {
  std::shared_ptr<net::SseStream> sse;
};

FakeWorker::FakeWorker(FakeWorkerOptions options) : options_(std::move(options)) {
  if (options_.epoch == 0) options_.epoch = std::random_device{}() | (uint64_t{1} << 40);
  epoch_ = options_.epoch;
}

FakeWorker::~FakeWorker() { Kill(); }

int32_t FakeWorker::NextToken(const std::vector<int32_t>& context,
                              const std::vector<int32_t>& token_ids) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ context.size();
  const size_t window = std::min<size_t>(context.size(), 8);
  for (size_t i = context.size() - window; i < context.size(); ++i) {
    h = (h ^ static_cast<uint64_t>(context[i])) * 0x100000001b3ULL;
    h ^= h >> 29;
  }
  return token_ids[h % token_ids.size()];
}

std::string FakeWorker::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

uint64_t FakeWorker::epoch() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

void FakeWorker::SetDraining(bool draining) {
  absl::MutexLock lock(&mu_);
  draining_ = draining;
}

void FakeWorker::SetReady(bool ready) {
  absl::MutexLock lock(&mu_);
  ready_ = ready;
}

int FakeWorker::active_streams() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(streams_.size());
}

int64_t FakeWorker::held_blocks() const {
  absl::MutexLock lock(&mu_);
  int64_t blocks = 0;
  for (const auto& stream : streams_) {
    blocks += (static_cast<int64_t>(stream->context.size()) + options_.block_size - 1) /
              options_.block_size;
  }
  return blocks;
}

std::string FakeWorker::InfoJson(bool heartbeat) const {
  absl::MutexLock lock(&mu_);
  json body = {{"url", url()},
               {"role", options_.role},
               {"epoch", HexId(epoch_)},
               {"model", options_.model},
               {"kv_address", "127.0.0.1:1"},
               {"location", {{"host", options_.host}, {"rack", options_.rack}}},
               {"capacity_blocks", options_.capacity_blocks},
               {"active_blocks", 0},
               {"prefill_queue_requests", 0},
               {"prefill_queue_tokens", 0},
               {"block_size", options_.block_size}};
  if (heartbeat) {
    body["ready"] = ready_ && !draining_;
    body["draining"] = draining_;
  } else if (!options_.info_kv.empty()) {
    body["kv"] = json::parse(options_.info_kv);
  }
  return body.dump();
}

void FakeWorker::StoreBlocks(const std::vector<int32_t>& tokens) {
  std::vector<BlockHash> hashes = HashPromptBlocks(tokens, options_.block_size);
  absl::MutexLock lock(&mu_);
  KvEvent event;
  event.type = KvEvent::Type::kStored;
  event.epoch = epoch_;
  BlockHash parent = kRootParentHash;
  for (BlockHash hash : hashes) {
    if (std::find(held_.begin(), held_.end(), hash) != held_.end()) {
      parent = hash;
      continue;
    }
    if (event.block_hashes.empty()) event.parent_hash = parent;
    event.block_hashes.push_back(hash);
    held_.push_back(hash);
  }
  if (event.block_hashes.empty()) return;
  if (gap_pending_.exchange(false)) {
    // The event in between is lost: the worker no longer keeps anything before this one.
    ++next_event_id_;
    events_.clear();
  }
  event.event_id = next_event_id_++;
  std::string text = KvEventToJson(event);
  events_.push_back(text);
  for (const auto& subscriber : subscribers_) subscriber->sse->Send(text);
}

void FakeWorker::RegisterRoutes() {
  auto authorized = [this](net::HttpExchange& x) {
    if (options_.cluster_token.empty()) return true;
    const std::string* header = x.request().Header("authorization");
    if (header != nullptr && *header == "Bearer " + options_.cluster_token) return true;
    x.ReplyError(401, "wrong cluster token", "unauthenticated");
    return false;
  };
  server_->Handle("GET", "/health", [](std::shared_ptr<net::HttpExchange> x) {
    x->ReplyJson(200, R"({"status":"ok"})");
  });
  server_->Handle("GET", "/ready", [this](std::shared_ptr<net::HttpExchange> x) {
    absl::MutexLock lock(&mu_);
    if (draining_) return x->ReplyJson(503, R"({"status":"draining"})");
    x->ReplyJson(ready_ ? 200 : 503, ready_ ? R"({"status":"ready"})" : R"({"status":"loading"})");
  });
  server_->Handle("GET", "/v1/info", [this, authorized](std::shared_ptr<net::HttpExchange> x) {
    if (!authorized(*x)) return;
    x->ReplyJson(200, InfoJson(false));
  });
  server_->Handle("GET", "/metrics", [this](std::shared_ptr<net::HttpExchange> x) {
    x->ReplyText(200, absl::StrCat("tandem_worker_active_kv_blocks ", held_blocks(), "\n"));
  });
  server_->Handle("POST", "/v1/prefill",
                  [this, authorized](std::shared_ptr<net::HttpExchange> x) {
                    if (!authorized(*x)) return;
                    ++prefill_requests_;
                    json body = json::parse(x->request().body, nullptr, false);
                    if (!body.is_object() || !body.contains("prompt_ids")) {
                      return x->ReplyError(400, "prompt_ids required", "invalid_argument");
                    }
                    std::vector<int32_t> prompt = body["prompt_ids"].get<std::vector<int32_t>>();
                    StoreBlocks(prompt);
                    x->ReplyJson(200, json({{"first_token", NextToken(prompt, options_.token_ids)},
                                            {"logprob", -0.5},
                                            {"cached_tokens", 0},
                                            {"computed_tokens", prompt.size()},
                                            {"transferred_blocks", 0},
                                            {"transport", "tcp"}})
                                          .dump());
                  },
                  {.json_body = true});
  server_->Handle(
      "POST", "/v1/generate",
      [this, authorized](std::shared_ptr<net::HttpExchange> x) {
        if (!authorized(*x)) return;
        json body = json::parse(x->request().body, nullptr, false);
        if (!body.is_object() || !body.contains("prompt_ids") || !body["prompt_ids"].is_array() ||
            body["prompt_ids"].empty()) {
          return x->ReplyError(400, "prompt_ids must be a non-empty array", "invalid_argument");
        }
        {
          absl::MutexLock lock(&mu_);
          if (draining_ || !ready_) return x->ReplyError(503, "not ready", "unavailable");
        }
        ++generate_requests_;
        auto stream = std::make_shared<Stream>();
        stream->context = body["prompt_ids"].get<std::vector<int32_t>>();
        stream->prompt_tokens = stream->context.size();
        stream->max_tokens = body.value("max_tokens", int64_t{16});
        if (body.contains("stop_ids")) {
          stream->stop_ids = body["stop_ids"].get<std::vector<int32_t>>();
        }
        stream->logprobs = body.value("logprobs", -1);
        if (body.contains("prefill") && body["prefill"].is_object()) {
          stream->prefill_url = body["prefill"].value("url", "");
        }
        stream->sse = x->StartSse();
        if (options_.token_delay == absl::ZeroDuration() && stream->prefill_url.empty()) {
          // No pacing: answer at once (what latency benchmarks measure against).
          StoreBlocks(stream->context);
          stream->prefilled = true;
          while (!Step(*stream)) {
          }
          return;
        }
        absl::MutexLock lock(&mu_);
        streams_.push_back(stream);
      },
      {.json_body = true});
  server_->Handle("GET", "/v1/kv/events", [this, authorized](std::shared_ptr<net::HttpExchange> x) {
    if (!authorized(*x)) return;
    uint64_t since = 0;
    if (auto value = x->request().QueryParam("since")) since = std::stoull(*value);
    auto subscriber = std::make_shared<Subscriber>();
    subscriber->sse = x->StartSse();
    absl::MutexLock lock(&mu_);
    const uint64_t last = next_event_id_ - 1;
    const uint64_t first_kept = last + 1 - events_.size();
    if (since + 1 < first_kept) {
      ++snapshots_served_;
      subscriber->sse->Send(
          KvSnapshotToJson({.epoch = epoch_, .event_id = last, .block_hashes = held_}), "snapshot");
    } else {
      for (uint64_t id = since + 1; id <= last; ++id) {
        subscriber->sse->Send(events_[id - first_kept]);
      }
    }
    subscribers_.push_back(subscriber);
  });
}

absl::Status FakeWorker::Start() {
  server_ = std::make_unique<net::HttpServer>(
      net::HttpServerOptions{.host = "127.0.0.1", .port = port_, .threads = 1});
  RegisterRoutes();
  absl::Status started = server_->Start();
  if (!started.ok()) return started;
  port_ = server_->port();
  running_ = true;
  generator_ = std::thread([this] { Generator(); });
  heartbeater_ = std::thread([this] { Heartbeater(); });
  return absl::OkStatus();
}

void FakeWorker::Kill() {
  if (!running_.exchange(false)) return;
  if (generator_.joinable()) generator_.join();
  if (heartbeater_.joinable()) heartbeater_.join();
  {
    // Holding the streams would keep their connections alive through the shutdown.
    absl::MutexLock lock(&mu_);
    streams_.clear();
    subscribers_.clear();
  }
  server_->Shutdown(absl::ZeroDuration());
  server_.reset();
}

absl::Status FakeWorker::Restart() {
  Kill();
  {
    absl::MutexLock lock(&mu_);
    epoch_ = epoch_ * 6364136223846793005ULL + 1442695040888963407ULL;
    events_.clear();
    held_.clear();
    next_event_id_ = 1;
  }
  return Start();
}

void FakeWorker::Generator() {
  while (running_.load()) {
    std::vector<std::shared_ptr<Stream>> streams;
    {
      absl::MutexLock lock(&mu_);
      streams_.erase(std::remove_if(streams_.begin(), streams_.end(),
                                    [](const auto& s) { return s->sse->closed(); }),
                     streams_.end());
      streams = streams_;
    }
    for (const auto& stream : streams) {
      if (!stream->prefilled) {
        stream->prefilled = true;
        std::vector<int32_t> prompt = stream->context;
        if (!stream->prefill_url.empty()) {
          net::HttpClientRequest request{
              .method = "POST",
              .url = stream->prefill_url + "/v1/prefill",
              .body = json({{"request_id", "fake"}, {"prompt_ids", prompt}}).dump(),
              .timeout = absl::Seconds(5)};
          if (!options_.cluster_token.empty()) {
            request.headers.emplace_back("authorization", "Bearer " + options_.cluster_token);
          }
          absl::StatusOr<net::HttpResult> result = net::HttpClient::Fetch(request);
          stream->prefill_kind = result.ok() && result->status == 200 ? "remote" : "fallback";
          if (stream->prefill_kind == "remote") ++remote_prefills_;
        }
        StoreBlocks(prompt);
      }
      if (Step(*stream)) {
        absl::MutexLock lock(&mu_);
        streams_.erase(std::remove(streams_.begin(), streams_.end(), stream), streams_.end());
      }
    }
    absl::SleepFor(options_.token_delay);
  }
}

bool FakeWorker::Step(Stream& stream) {
  const int32_t next = NextToken(stream.context, options_.token_ids);
  std::string reason;
  if (std::find(stream.stop_ids.begin(), stream.stop_ids.end(), next) != stream.stop_ids.end()) {
    reason = "stop";
  } else {
    json event = {{"token", next}};
    if (stream.logprobs >= 0) {
      event["logprob"] = -0.5;
      event["top_logprobs"] = json::array({json::array({next, -0.5})});
    }
    stream.context.push_back(next);
    ++stream.generated;
    stream.sse->Send(event.dump());
    if (stream.generated >= stream.max_tokens) reason = "length";
  }
  if (reason.empty()) return false;
  json done = {{"finish_reason", reason},
               {"usage",
                {{"prompt_tokens", stream.prompt_tokens},
                 {"completion_tokens", stream.generated},
                 {"cached_tokens", 0}}},
               {"timing",
                {{"queue_ms", 0.1},
                 {"prefill_ms", 1.0},
                 {"transfer_ms", 0.0},
                 {"prefill", stream.prefill_kind}}}};
  stream.sse->Send(done.dump());
  stream.sse->Close();
  return true;
}

void FakeWorker::Heartbeater() {
  while (running_.load()) {
    if (!options_.router_url.empty() && heartbeats_on_.load()) {
      net::HttpClientRequest request{.method = "POST",
                                     .url = options_.router_url + "/v1/workers/heartbeat",
                                     .body = InfoJson(true),
                                     .timeout = absl::Seconds(1)};
      if (!options_.cluster_token.empty()) {
        request.headers.emplace_back("authorization", "Bearer " + options_.cluster_token);
      }
      (void)net::HttpClient::Fetch(request);
    }
    absl::SleepFor(options_.heartbeat_interval);
  }
}

}  // namespace tandem::router::testing
