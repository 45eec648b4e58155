// Worker benchmark: time to first token of one long prompt, disaggregated (a decode worker that
// has a prefill worker compute the prompt and push its KV layer by layer) against aggregated (one
// worker prefills itself), both measured in the same run on the same machine with real
// `tandem worker` processes. Every run uses a fresh prompt, so no prefix cache helps either path.
//
//   worker_bench --tandem build/tandem [--model random:small] [--prompt 2048] [--runs 5]
//                [--threads 2] [--transport auto|shm|tcp]
//
// Prints the median TTFT of each path, the disaggregated path's breakdown (prefill compute,
// KV transfer after the last layer) and the ratio disaggregated / aggregated.
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
constexpr char kToken[] = "worker-bench-token";

struct Options {
  std::string tandem;
  std::string model = "random:small";
  int prompt = 2048;
  int runs = 5;
  int threads = 2;
  std::string transport = "auto";
};

class Process {
 public:
  Process(const Options& o, const std::string& role, int port, std::vector<std::string> extra) {
    url_ = absl::StrCat("http://127.0.0.1:", port);
    std::vector<std::string> args = {o.tandem,
                                     "--log-level",
                                     "warn",
                                     "worker",
                                     "--role",
                                     role,
                                     "--model",
                                     o.model,
                                     "--listen",
                                     absl::StrCat("127.0.0.1:", port),
                                     "--kv-listen",
                                     "127.0.0.1:0",
                                     "--threads",
                                     absl::StrCat(o.threads),
                                     "--cluster-token",
                                     kToken,
                                     "--kv-budget",
                                     "268435456"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<char*> argv;
      for (std::string& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~Process() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  const std::string& url() const { return url_; }
  bool WaitReady() const {
    for (int i = 0; i < 600; ++i) {
      auto r =
          tandem::net::HttpClient::Fetch({.url = url_ + "/ready", .timeout = absl::Seconds(1)});
      if (r.ok() && r->status == 200) return true;
      ::usleep(100'000);
    }
    return false;
  }

 private:
  std::string url_;
  pid_t pid_ = -1;
};

// A loopback port that was free a moment ago.
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

struct Sample {
  double ttft_ms = 0;
  json timing;
  bool ok = false;
};

// Sends one streaming request and times the first token event.
Sample Measure(tandem::net::EventLoop& loop, const std::string& url, const json& body) {
  std::promise<Sample> result;
  auto done = std::make_shared<std::atomic<bool>>(false);
  Sample sample;
  tandem::net::HttpClientRequest request;
  request.method = "POST";
  request.url = url + "/v1/generate";
  request.body = body.dump();
  request.headers.push_back({"Authorization", absl::StrCat("Bearer ", kToken)});
  request.timeout = absl::Seconds(600);
  const Clock::time_point start = Clock::now();
  auto stream = tandem::net::SseClient::Open(
      loop, request,
      [&](const tandem::net::SseEvent& event) {
        json data = json::parse(event.data, nullptr, false);
        if (data.contains("token") && sample.ttft_ms == 0) {
          sample.ttft_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        }
        if (data.contains("finish_reason")) {
          sample.timing = data["timing"];
          sample.ok = sample.ttft_ms > 0;
        }
        if (data.contains("error")) std::fprintf(stderr, "error: %s\n", event.data.c_str());
      },
      [&, done](absl::Status, int status, const std::string& error) {
        if (status != 200) std::fprintf(stderr, "HTTP %d: %s\n", status, error.c_str());
        if (!done->exchange(true)) result.set_value(sample);
      });
  return result.get_future().get();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

std::vector<int32_t> Prompt(int length, uint64_t seed) {
  std::vector<int32_t> tokens;
  uint64_t state = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int i = 0; i < length; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    tokens.push_back(static_cast<int32_t>((state >> 33) % 500));
  }
  return tokens;
}

int Run(const Options& o) {
  Process both(o, "both", FreePort(), {});
  Process prefill(o, "prefill", FreePort(), {"--kv-transport", o.transport});
  Process decode(o, "decode", FreePort(), {});
  if (!both.WaitReady() || !prefill.WaitReady() || !decode.WaitReady()) {
    std::fprintf(stderr, "workers did not become ready\n");
    return 1;
  }
  tandem::net::EventLoop loop("bench");
  std::vector<double> aggregated, disaggregated, prefill_ms, transfer_ms;
  for (int run = -1; run < o.runs; ++run) {  // run -1 warms both paths up
    json body = {{"prompt_ids", Prompt(o.prompt, 2 * run + 100)},
                 {"max_tokens", 1},
                 {"ignore_eos", true},
                 {"sampling", {{"temperature", 0}}}};
    Sample local = Measure(loop, both.url(), body);
    body["prompt_ids"] = Prompt(o.prompt, 2 * run + 101);
    body["prefill"] = {{"url", prefill.url()}, {"timeout_ms", 600'000}};
    Sample remote = Measure(loop, decode.url(), body);
    if (!local.ok || !remote.ok || remote.timing["prefill"] != "remote") {
      std::fprintf(stderr, "run %d failed (remote path: %s)\n", run, remote.timing.dump().c_str());
      return 1;
    }
    if (run < 0) continue;
    aggregated.push_back(local.ttft_ms);
    disaggregated.push_back(remote.ttft_ms);
    prefill_ms.push_back(remote.timing["prefill_ms"].get<double>());
    transfer_ms.push_back(remote.timing["transfer_ms"].get<double>());
  }
  loop.Stop();
  const double a = Median(aggregated), d = Median(disaggregated);
  std::printf("worker TTFT, %d-token prompt, model %s, %d engine threads, transport %s, %d runs\n",
              o.prompt, o.model.c_str(), o.threads, o.transport.c_str(), o.runs);
  std::printf("  aggregated (both)             median TTFT %9.1f ms\n", a);
  std::printf(
      "  disaggregated (prefill+decode) median TTFT %9.1f ms  (prefill %.1f ms, KV "
      "transfer after last layer %.2f ms)\n",
      d, Median(prefill_ms), Median(transfer_ms));
  std::printf("  ratio disaggregated / aggregated: %.3f\n", d / a);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : "";
    bool ok = true;
    if (flag == "--tandem") {
      o.tandem = value;
    } else if (flag == "--model") {
      o.model = value;
    } else if (flag == "--prompt") {
      ok = absl::SimpleAtoi(value, &o.prompt);
    } else if (flag == "--runs") {
      ok = absl::SimpleAtoi(value, &o.runs);
    } else if (flag == "--threads") {
      ok = absl::SimpleAtoi(value, &o.threads);
    } else if (flag == "--transport") {
      o.transport = value;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr,
                   "usage: worker_bench --tandem PATH [--model M] [--prompt N] [--runs N] "
                   "[--threads N] [--transport auto|shm|tcp]\n");
      return 2;
    }
    ++i;
  }
  if (o.tandem.empty()) {
    std::fprintf(stderr, "worker_bench: --tandem PATH is required\n");
    return 2;
  }
  return Run(o);
}
