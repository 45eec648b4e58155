// Added latency of the router: the same one-token request sent straight to a worker's
// POST /v1/generate and through the router's POST /v1/completions, alternating, in one run.
// The worker is the tests' fake worker answering at once (no engine), so the difference is the
// router's own cost: parsing and validating the OpenAI body, tokenizing nothing (token-id
// prompts), admission, hashing and routing, opening the worker stream, detokenizing, formatting
// the answer, plus one more loopback hop. Both paths open a new connection per request.
//
// Usage: router_latency_bench [--quick]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/logging.h"
#include "fake_worker.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"
#include "router/prompt_renderer.h"
#include "router/server.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;
using tandem::router::RouterServer;
using tandem::router::RouterServerOptions;
using tandem::router::testing::FakeWorker;

double Percentile(std::vector<double> samples, double q) {
  std::sort(samples.begin(), samples.end());
  return samples[std::min(samples.size() - 1, size_t(q * samples.size()))];
}

int Run(bool quick) {
  auto renderer = tandem::router::PromptRenderer::Create("random:tiny", "");
  if (!renderer.ok()) return 1;
  std::vector<int32_t> tokens;
  for (int32_t id = 256; id < (*renderer)->tokenizer().vocab_size(); ++id) {
    if (!(*renderer)->tokenizer().IsControl(id)) tokens.push_back(id);
  }
  RouterServerOptions options;
  options.model = "random:tiny";
  options.threads = 1;
  options.upstream_threads = 1;
  auto router = RouterServer::Create(options);
  if (!router.ok() || !(*router)->Start().ok()) {
    std::fprintf(stderr, "router failed to start\n");
    return 1;
  }
  const std::string router_url = absl::StrCat("http://127.0.0.1:", (*router)->port());
  FakeWorker worker({.role = "both",
                     .token_ids = tokens,
                     .token_delay = absl::ZeroDuration(),
                     .router_url = router_url});
  if (!worker.Start().ok()) return 1;
  // Wait for the worker's registration.
  for (int i = 0; i < 200; ++i) {
    auto ready = tandem::net::HttpClient::Fetch({.url = router_url + "/ready"});
    if (ready.ok() && ready->body.find("\"decode_workers_ready\":true") != std::string::npos) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::vector<int32_t> prompt(tokens.begin(), tokens.begin() + 64);
  const std::string direct_body = json({{"request_id", "bench"},
                                        {"prompt_ids", prompt},
                                        {"max_tokens", 1},
                                        {"sampling", {{"temperature", 0}}}})
                                      .dump();
  const std::string routed_body =
      json({{"model", "random-tiny"}, {"prompt", prompt}, {"max_tokens", 1}, {"temperature", 0}})
          .dump();
  const int requests = quick ? 500 : 4000;
  std::vector<double> direct_us, routed_us;
  for (int i = 0; i < requests + 100; ++i) {
    auto t0 = Clock::now();
    auto direct = tandem::net::HttpClient::Fetch(
        {.method = "POST", .url = worker.url() + "/v1/generate", .body = direct_body});
    auto t1 = Clock::now();
    auto routed = tandem::net::HttpClient::Fetch(
        {.method = "POST", .url = router_url + "/v1/completions", .body = routed_body});
    auto t2 = Clock::now();
    if (!direct.ok() || direct->status != 200 || !routed.ok() || routed->status != 200) {
      std::fprintf(stderr, "request %d failed\n", i);
      return 1;
    }
    if (i < 100) continue;  // warm-up
    direct_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
    routed_us.push_back(std::chrono::duration<double, std::micro>(t2 - t1).count());
  }
  const double d50 = Percentile(direct_us, 0.5), d99 = Percentile(direct_us, 0.99);
  const double r50 = Percentile(routed_us, 0.5), r99 = Percentile(routed_us, 0.99);
  std::printf("router added latency (%d one-token requests each way, 64-token prompt)\n", requests);
  std::printf("  direct to worker   p50 %8.1f us   p99 %8.1f us\n", d50, d99);
  std::printf("  through router     p50 %8.1f us   p99 %8.1f us\n", r50, r99);
  std::printf(
      "  RESULT router_added_latency p50_ms=%.3f p99_ms=%.3f target_p50_ms=0.5 "
      "routed_vs_direct_p50=%.2fx\n",
      (r50 - d50) / 1000, (r99 - d99) / 1000, r50 / d50);
  worker.Kill();
  (*router)->Shutdown(absl::ZeroDuration());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: router_latency_bench [--quick]\n");
      return 2;
    }
  }
  tandem::InitLogging({.level = "warn"}).IgnoreError();
  return Run(quick);
}
