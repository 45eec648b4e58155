// SSE benchmark: N concurrent streams (default 1,000) each receiving E events (default 100, one
// every 20 ms per stream) from
// a one-thread server; reports the server's memory per open stream (RSS growth / N, measured in
// the same run against the idle server) and the event latency percentiles (send stamp to
// client receipt).
#include <unistd.h>

#include <sys/resource.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net/http_client.h"
#include "net/http_server.h"

namespace {

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

long RssKb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int streams_wanted = argc > 1 ? std::atoi(argv[1]) : 1000;
  int events_each = argc > 2 ? std::atoi(argv[2]) : 100;
  // One event per stream every `interval_ms`: 20 ms is 50 tokens/s per stream, a fast decode.
  int interval_ms = argc > 3 ? std::atoi(argv[3]) : 20;
  rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 65536);
  setrlimit(RLIMIT_NOFILE, &limit);

  using namespace tandem::net;
  HttpServer server({.host = "127.0.0.1", .port = 0, .threads = 1});
  std::mutex mu;
  std::vector<std::shared_ptr<SseStream>> streams;
  server.Handle("GET", "/stream", [&](std::shared_ptr<HttpExchange> x) {
    auto stream = x->StartSse();
    std::lock_guard<std::mutex> lock(mu);
    streams.push_back(stream);
  });
  if (!server.Start().ok()) return 1;
  EventLoop client_loop("clients");
  std::atomic<int> finished{0};
  std::mutex latency_mu;
  std::vector<int64_t> latencies;
  latencies.reserve(static_cast<size_t>(streams_wanted) * events_each);
  std::string url = "http://127.0.0.1:" + std::to_string(server.port()) + "/stream";
  long rss_before = RssKb();
  std::vector<std::shared_ptr<SseClient>> clients;
  for (int i = 0; i < streams_wanted; ++i) {
    clients.push_back(SseClient::Open(
        client_loop, {.url = url},
        [&](const SseEvent& e) {
          int64_t sent = std::stoll(e.data);
          std::lock_guard<std::mutex> lock(latency_mu);
          latencies.push_back(NowMicros() - sent);
        },
        [&](absl::Status, int, const std::string&) { finished++; }));
  }
  while (true) {
    std::lock_guard<std::mutex> lock(mu);
    if (static_cast<int>(streams.size()) == streams_wanted &&
        server.open_streams() == streams_wanted) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // Both the server's and the clients' sockets live in this process: count half the growth.
  long rss_open = RssKb();
  for (int e = 0; e < events_each; ++e) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& stream : streams) stream->Send(std::to_string(NowMicros()));
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& stream : streams) stream->Close();
  }
  while (finished.load() < streams_wanted)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  client_loop.Stop();
  server.Shutdown(absl::Seconds(1));
  std::sort(latencies.begin(), latencies.end());
  auto pct = [&](double p) {
    return latencies.empty() ? 0
                             : latencies[std::min(latencies.size() - 1,
                                                  static_cast<size_t>(p * latencies.size()))];
  };
  std::printf(
      "streams %d, events each %d (one per stream every %d ms: %.0f events/s), received "
      "%zu\n",
      streams_wanted, events_each, interval_ms, streams_wanted * 1000.0 / interval_ms,
      latencies.size());
  std::printf("memory per open stream (server + client in one process, halved): %.1f KiB\n",
              (rss_open - rss_before) / 2.0 / streams_wanted);
  std::printf("event latency: p50 %.0f us, p99 %.0f us, max %.0f us\n", double(pct(0.5)),
              double(pct(0.99)), double(latencies.empty() ? 0 : latencies.back()));
  return latencies.size() == static_cast<size_t>(streams_wanted) * events_each ? 0 : 1;
}
