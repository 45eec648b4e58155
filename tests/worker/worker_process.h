// Test helpers for multi-process worker tests: start real `tandem worker` processes on loopback
// (ports chosen by the OS), talk to their control API, read their pools, and always stop them.
//
//   auto worker = WorkerProcess::Start({.role = "both"});
//   Generation g = Generate(worker->url(), {{"prompt_ids", {1, 2, 3}}, {"max_tokens", 4}});
//   EXPECT_TRUE(PoolIsClean(worker->url()));
//
// Thread-safety: WorkerProcess is used from the test's main thread (it forks); the HTTP helpers
// may run on any thread.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"

namespace tandem::worker::testing {

inline constexpr char kToken[] = "worker-test-token";

// A port that was free a moment ago (bound to port 0 and released).
int PickFreePort(const std::string& host = "127.0.0.1");

struct WorkerConfig {
  std::string role = "both";
  std::string model = "random:tiny";
  std::string host = "127.0.0.1";  // --listen and --kv-listen host
  int port = 0;                    // 0: pick one
  int kv_port = 0;
  std::vector<std::string> extra;   // more flags
  std::vector<std::string> prefix;  // runs the worker under this command (e.g. ip netns exec)
  std::string token = kToken;
};

class WorkerProcess {
 public:
  // Starts the worker and waits until /ready answers 200 (fails the test otherwise).
  static std::unique_ptr<WorkerProcess> Start(WorkerConfig config);
  ~WorkerProcess();  // SIGKILL and reap

  const std::string& url() const { return url_; }
  int port() const { return config_.port; }
  int kv_port() const { return config_.kv_port; }
  pid_t pid() const { return pid_; }
  std::string Log() const;

  void Signal(int signal);
  // Waits for the process to exit; its exit status (or 128 + signal), -1 on timeout.
  int Wait(absl::Duration timeout);
  // SIGKILL, then start again on the same ports (a new epoch).
  bool Restart();

 private:
  explicit WorkerProcess(WorkerConfig config);
  bool Launch();
  bool WaitReady(absl::Duration timeout);

  WorkerConfig config_;
  std::string url_;
  std::string log_path_;
  pid_t pid_ = -1;
};

absl::StatusOr<net::HttpResult> Call(const std::string& method, const std::string& url,
                                     const std::string& body = "",
                                     const std::string& token = kToken,
                                     absl::Duration timeout = absl::Seconds(60));

struct Generation {
  int http_status = 0;
  std::vector<int32_t> tokens;
  nlohmann::json finish;  // the last event when it carried finish_reason
  nlohmann::json error;   // the error event or body
};
Generation Generate(const std::string& url, const nlohmann::json& request);

nlohmann::json Info(const std::string& url);
// Sum of every sample of `name` whose labels contain each of `labels` (e.g. `side="receive"`).
double Metric(const std::string& url, const std::string& name,
              const std::vector<std::string>& labels = {});
// True once the worker holds no referenced or reserved KV blocks beyond its prefix cache and
// no request is in flight (polls for up to `timeout`).
bool PoolIsClean(const std::string& url, absl::Duration timeout = absl::Seconds(10),
                 std::string* last_info = nullptr);

// Prompts of the exactness tests: deterministic for a seed.
std::vector<int32_t> MakePrompt(int length, uint64_t seed, int vocab = 512);

}  // namespace tandem::worker::testing
