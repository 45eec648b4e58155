#include "router_test_util.h"

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "router/prompt_renderer.h"

namespace tandem::router::testing {

using nlohmann::json;

const std::vector<int32_t>& TinyTextTokens() {
  static const std::vector<int32_t> tokens = [] {
    auto renderer = PromptRenderer::Create("random:tiny", "");
    std::vector<int32_t> ids;
    if (!renderer.ok()) std::abort();
    const model::Tokenizer& tokenizer = (*renderer)->tokenizer();
    // Printable multi-byte pieces only, so every token decodes to visible text on its own.
    for (int32_t id = 256; id < tokenizer.vocab_size(); ++id) {
      if (tokenizer.IsControl(id) || tokenizer.IsEos(id)) continue;
      std::string_view bytes = tokenizer.TokenBytes(id);
      bool ascii = !bytes.empty();
      for (char c : bytes) ascii = ascii && c >= 0x20 && c < 0x7f;
      if (ascii) ids.push_back(id);
    }
    return ids;
  }();
  return tokens;
}

RouterServerOptions TestRouterOptions() {
  RouterServerOptions options;
  options.model = "random:tiny";
  options.threads = 1;
  options.upstream_threads = 1;
  options.heartbeat_timeout = absl::Milliseconds(1500);
  options.poll_interval = absl::Milliseconds(100);
  options.routing.seed = 7;
  return options;
}

RouterHarness::RouterHarness(RouterServerOptions options) {
  if (!options.api_keys.empty()) api_key_ = options.api_keys.front();
  auto router = RouterServer::Create(std::move(options));
  if (!router.ok()) {
    std::fprintf(stderr, "router: %s\n", router.status().ToString().c_str());
    std::abort();
  }
  router_ = *std::move(router);
  absl::Status started = router_->Start();
  if (!started.ok()) {
    std::fprintf(stderr, "router start: %s\n", started.ToString().c_str());
    std::abort();
  }
}

RouterHarness::~RouterHarness() {
  for (auto& worker : workers_) worker->Kill();
  router_->Shutdown(absl::ZeroDuration());
}

std::string RouterHarness::url() const {
  return absl::StrCat("http://127.0.0.1:", router_->port());
}

FakeWorker& RouterHarness::AddWorker(FakeWorkerOptions options) {
  if (options.router_url.empty()) options.router_url = url();
  if (options.token_ids.empty()) options.token_ids = TinyTextTokens();
  workers_.push_back(std::make_unique<FakeWorker>(std::move(options)));
  absl::Status started = workers_.back()->Start();
  if (!started.ok()) std::abort();
  return *workers_.back();
}

bool RouterHarness::WaitForReadyWorkers(int count, absl::Duration timeout) {
  return WaitUntil(
      [&] {
        auto answer = Get("/v1/workers");
        if (!answer.ok() || answer->status != 200) return false;
        json body = json::parse(answer->body, nullptr, false);
        int ready = 0;
        for (const json& worker : body["workers"]) ready += worker["state"] == "ready";
        return ready >= count;
      },
      timeout);
}

absl::StatusOr<net::HttpResult> RouterHarness::Post(const std::string& path, const json& body,
                                                    net::HeaderList headers) {
  return net::HttpClient::Fetch({.method = "POST",
                                 .url = url() + path,
                                 .body = body.dump(),
                                 .headers = WithKey(std::move(headers)),
                                 .timeout = absl::Seconds(30)});
}

absl::StatusOr<net::HttpResult> RouterHarness::Get(const std::string& path,
                                                   net::HeaderList headers) {
  return net::HttpClient::Fetch({.method = "GET",
                                 .url = url() + path,
                                 .headers = WithKey(std::move(headers)),
                                 .timeout = absl::Seconds(10)});
}

net::HeaderList RouterHarness::WithKey(net::HeaderList headers) const {
  if (api_key_.empty()) return headers;
  for (const auto& [name, value] : headers) {
    if (name == "authorization") return headers;
  }
  headers.emplace_back("authorization", "Bearer " + api_key_);
  return headers;
}

double RouterHarness::Metric(const std::string& sample) {
  auto answer = Get("/metrics");
  if (!answer.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(answer->body, '\n')) {
    std::string text(line);
    if (text.rfind(sample + " ", 0) == 0) return std::stod(text.substr(sample.size() + 1));
  }
  return -1;
}

std::string StreamResult::Text(int index) const {
  std::string text;
  for (const json& chunk : chunks) {
    if (!chunk.contains("choices")) continue;
    for (const json& choice : chunk["choices"]) {
      if (choice.value("index", -1) != index) continue;
      if (choice.contains("text") && choice["text"].is_string()) text += choice["text"];
      if (choice.contains("delta") && choice["delta"].contains("content") &&
          choice["delta"]["content"].is_string()) {
        text += choice["delta"]["content"].get<std::string>();
      }
    }
  }
  return text;
}

std::string StreamResult::FinishReason(int index) const {
  for (const json& chunk : chunks) {
    if (!chunk.contains("choices")) continue;
    for (const json& choice : chunk["choices"]) {
      if (choice.value("index", -1) == index && choice["finish_reason"].is_string()) {
        return choice["finish_reason"];
      }
    }
  }
  return "";
}

StreamCollector::StreamCollector(net::EventLoop& loop, const std::string& url, const json& body,
                                 int cancel_after_events, net::HeaderList headers)
    : cancel_after_(cancel_after_events) {
  client_ = net::SseClient::Open(
      loop,
      {.method = "POST",
       .url = url,
       .body = body.dump(),
       .headers = std::move(headers),
       .timeout = absl::Seconds(30)},
      [this](const net::SseEvent& event) {
        bool cancel = false;
        {
          absl::MutexLock lock(&mu_);
          ++events_;
          if (event.data == "[DONE]") {
            result_.saw_done = true;
          } else {
            result_.chunks.push_back(json::parse(event.data, nullptr, false));
          }
          cancel = cancel_after_ > 0 && events_ == cancel_after_;
        }
        if (cancel) client_->Cancel();
      },
      [this](absl::Status status, int http_status, const std::string& error_body) {
        absl::MutexLock lock(&mu_);
        result_.status = status;
        result_.http_status = http_status;
        result_.error_body = error_body;
        done_ = true;
      });
}

bool StreamCollector::Wait(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&done_), timeout);
}

StreamResult StreamCollector::result() {
  absl::MutexLock lock(&mu_);
  return result_;
}

int StreamCollector::events() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

}  // namespace tandem::router::testing
