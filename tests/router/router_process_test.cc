// `tandem router` with real `tandem worker` processes (a tiny random model) on loopback: the
// official OpenAI SDK against router + prefill + decode, 50 greedy streams surviving a
// kill -9 of a decode worker with output equal to an undisturbed run, 50 clients
// disconnecting mid-stream leaving no reserved or active KV blocks on any worker, and the KV
// bytes per token learned from a worker or set by --kv-bytes-per-token.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"
#include "router_test_util.h"

namespace tandem::router::testing {
namespace {

using nlohmann::json;

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address));
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

// A child process whose output goes to a log file; killed when the object goes away.
class Child {
 public:
  Child(const std::vector<std::string>& argv, const std::string& log_path) : log_(log_path) {
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::setpgid(0, 0);
      // Dies with the test even if the test itself crashes: no process is left behind.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      std::vector<char*> args;
      for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Child() { Kill(SIGKILL); }
  void Kill(int signal) {
    if (pid_ <= 0) return;
    ::kill(pid_, signal);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
  bool running() const { return pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == 0; }
  const std::string& log() const { return log_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

bool HttpOk(const std::string& url) {
  auto answer = net::HttpClient::Fetch({.url = url, .timeout = absl::Seconds(1)});
  return answer.ok() && answer->status == 200;
}

double ScrapeMetric(const std::string& base_url, const std::string& sample) {
  auto answer = net::HttpClient::Fetch({.url = base_url + "/metrics", .timeout = absl::Seconds(2)});
  if (!answer.ok()) return -1;
  for (absl::string_view line : absl::StrSplit(answer->body, '\n')) {
    std::string text(line);
    if (text.rfind(sample + " ", 0) == 0) return std::stod(text.substr(sample.size() + 1));
  }
  return -1;
}

class RouterProcessTest : public ::testing::Test {
 protected:
  static constexpr const char* kToken = "cluster-secret";
  static constexpr const char* kApiKey = "sk-local";

  void SetUp() override {
    const char* binary = std::getenv("TANDEM_BINARY");
    if (binary == nullptr || !std::filesystem::exists(binary)) {
      GTEST_SKIP() << "TANDEM_BINARY is not set to a built tandem";
    }
    binary_ = binary;
    dir_ = std::filesystem::temp_directory_path() /
           absl::StrCat("tandem-router-test-", ::getpid(), "-", counter_++);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    workers_.clear();
    router_.reset();
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
  }

  void StartRouter(std::vector<std::string> extra) {
    router_port_ = FreePort();
    std::vector<std::string> argv = {binary_,
                                     "router",
                                     "--listen",
                                     absl::StrCat("127.0.0.1:", router_port_),
                                     "--model",
                                     "random:tiny",
                                     "--cluster-token",
                                     kToken,
                                     "--api-key",
                                     kApiKey,
                                     "--threads",
                                     "1",
                                     "--upstream-threads",
                                     "1",
                                     "--heartbeat-timeout",
                                     "2"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    router_ = std::make_unique<Child>(argv, (dir_ / "router.log").string());
    ASSERT_TRUE(WaitUntil([&] { return HttpOk(router_url() + "/health"); }))
        << "router did not start; see " << router_->log();
  }

  // Returns the worker's URL.
  std::string StartWorker(const std::string& role) {
    const int port = FreePort();
    const int kv_port = FreePort();
    std::vector<std::string> argv = {binary_,           "worker",
                                     "--role",          role,
                                     "--model",         "random:tiny",
                                     "--listen",        absl::StrCat("127.0.0.1:", port),
                                     "--kv-listen",     absl::StrCat("127.0.0.1:", kv_port),
                                     "--router",        router_url(),
                                     "--cluster-token", kToken,
                                     "--threads",       "1",
                                     "--http-threads",  "1"};
    workers_.push_back(std::make_unique<Child>(
        argv, (dir_ / absl::StrCat(role, "-", workers_.size(), ".log")).string()));
    std::string url = absl::StrCat("http://127.0.0.1:", port);
    worker_urls_.push_back(url);
    EXPECT_TRUE(WaitUntil([&] { return HttpOk(url + "/ready"); }, absl::Seconds(30)))
        << "worker did not become ready; see " << workers_.back()->log();
    return url;
  }

  bool WaitForRouterWorkers(int count) {
    return WaitUntil(
        [&] {
          auto answer = net::HttpClient::Fetch(
              {.url = router_url() + "/v1/workers",
               .headers = {{"authorization", absl::StrCat("Bearer ", kApiKey)}}});
          if (!answer.ok() || answer->status != 200) return false;
          const json body = json::parse(answer->body, nullptr, false);
          if (!body.is_object() || !body.contains("workers")) return false;
          int ready = 0;
          for (const json& w : body["workers"]) ready += w["state"] == "ready";
          return ready >= count;
        },
        absl::Seconds(20));
  }

  std::string router_url() const { return absl::StrCat("http://127.0.0.1:", router_port_); }
  net::HeaderList Auth() const { return {{"authorization", absl::StrCat("Bearer ", kApiKey)}}; }

  std::string binary_;
  std::filesystem::path dir_;
  int router_port_ = 0;
  std::unique_ptr<Child> router_;
  std::vector<std::unique_ptr<Child>> workers_;
  std::vector<std::string> worker_urls_;
  static inline int counter_ = 0;
};

json StreamingCompletion(const std::vector<int32_t>& prompt, int max_tokens) {
  return {{"model", "random-tiny"}, {"prompt", prompt}, {"max_tokens", max_tokens},
          {"temperature", 0},       {"stream", true},   {"ignore_eos", true}};
}

std::vector<int32_t> Prompt(std::mt19937& rng, int length) {
  const std::vector<int32_t>& tokens = TinyTextTokens();
  std::vector<int32_t> prompt;
  for (int i = 0; i < length; ++i) prompt.push_back(tokens[rng() % tokens.size()]);
  return prompt;
}

TEST_F(RouterProcessTest, OpenAiSdkAgainstRouterPrefillAndDecode) {
  if (std::system("node --version > /dev/null 2>&1") != 0) GTEST_SKIP() << "node is not installed";
  const char* source = std::getenv("TANDEM_SOURCE_DIR");
  ASSERT_NE(source, nullptr);
  const std::string script = absl::StrCat(source, "/tests/router/openai_sdk_test.mjs");
  ASSERT_TRUE(std::filesystem::exists(absl::StrCat(source, "/tests/node_modules/openai")))
      << "npm test packages missing: run scripts/install-deps.sh";
  // Short prompts go to the prefill worker too, so the SDK test crosses both roles.
  StartRouter({"--local-prefill-max-uncached-tokens", "8"});
  StartWorker("prefill");
  StartWorker("decode");
  ASSERT_TRUE(WaitForRouterWorkers(2));
  const std::string log = (dir_ / "node.log").string();
  const std::string command =
      absl::StrCat("cd ", source, "/tests && node ", script, " ", router_url(), "/v1 random-tiny ",
                   kApiKey, " > ", log, " 2>&1");
  const int status = std::system(command.c_str());
  std::string output;
  if (FILE* f = std::fopen(log.c_str(), "r")) {
    char buffer[4096];
    size_t n;
    while ((n = std::fread(buffer, 1, sizeof(buffer), f)) > 0) output.append(buffer, n);
    std::fclose(f);
  }
  EXPECT_EQ(status, 0) << output;
  std::printf("%s", output.c_str());
  EXPECT_GE(ScrapeMetric(router_url(),
                         R"(tandem_router_routing_decisions_total{decision="disaggregated"})"),
            1);
}

TEST_F(RouterProcessTest, FiftyGreedyStreamsSurviveKillMinus9OfADecodeWorker) {
  StartRouter({"--local-prefill-max-uncached-tokens", "24"});
  StartWorker("prefill");
  StartWorker("decode");
  StartWorker("decode");
  ASSERT_TRUE(WaitForRouterWorkers(3));
  std::mt19937 rng(21);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 50; ++i) prompts.push_back(Prompt(rng, 16 + i % 24));
  constexpr int kTokens = 600;
  auto run = [&](bool kill) {
    net::EventLoop loop("clients");
    std::vector<std::unique_ptr<StreamCollector>> streams;
    for (const auto& prompt : prompts) {
      streams.push_back(std::make_unique<StreamCollector>(
          loop, router_url() + "/v1/completions", StreamingCompletion(prompt, kTokens), 0, Auth()));
    }
    if (kill) {
      EXPECT_TRUE(WaitUntil(
          [&] {
            int started = 0;
            for (auto& s : streams) started += s->events() >= 3;
            return started >= 25;
          },
          absl::Seconds(60)));
      // The decode worker carrying the most streams right now dies.
      auto answer =
          net::HttpClient::Fetch({.url = router_url() + "/v1/workers", .headers = Auth()});
      size_t victim = 1;
      int most = -1;
      if (answer.ok()) {
        const json body = json::parse(answer->body, nullptr, false);
        for (const json& w : body["workers"]) {
          for (size_t i = 1; i < worker_urls_.size(); ++i) {
            if (w["url"] == worker_urls_[i] && w["streams"].get<int>() > most) {
              most = w["streams"].get<int>();
              victim = i;
            }
          }
        }
      }
      EXPECT_GT(most, 0);
      workers_[victim]->Kill(SIGKILL);
    }
    std::vector<StreamResult> results;
    for (auto& stream : streams) {
      EXPECT_TRUE(stream->Wait(absl::Seconds(90)));
      results.push_back(stream->result());
    }
    return results;
  };
  std::vector<StreamResult> reference = run(false);
  std::vector<StreamResult> disturbed = run(true);
  int compared = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(reference[i].http_status, 200) << reference[i].error_body;
    EXPECT_EQ(disturbed[i].http_status, 200) << disturbed[i].error_body;
    EXPECT_TRUE(disturbed[i].saw_done);
    EXPECT_EQ(disturbed[i].Text(), reference[i].Text());
    EXPECT_EQ(disturbed[i].FinishReason(), reference[i].FinishReason());
    compared += disturbed[i].Text() == reference[i].Text();
  }
  EXPECT_EQ(compared, 50);
  EXPECT_GE(ScrapeMetric(router_url(), R"(tandem_router_migrations_total{outcome="ok"})"), 1);
  EXPECT_EQ(ScrapeMetric(router_url(), R"(tandem_router_migrations_total{outcome="failed"})"), 0);
}

TEST_F(RouterProcessTest, SharedPrefixLandsOnTheWorkerHoldingIt) {
  StartRouter({});
  StartWorker("decode");
  StartWorker("decode");
  ASSERT_TRUE(WaitForRouterWorkers(2));
  std::mt19937 rng(23);
  const std::vector<int32_t> prefix = Prompt(rng, 320);  // 20 blocks of 16
  auto post = [&](const std::vector<int32_t>& prompt) {
    auto answer = net::HttpClient::Fetch(
        {.method = "POST",
         .url = router_url() + "/v1/completions",
         .body = json({{"model", "random-tiny"}, {"prompt", prompt}, {"max_tokens", 2}}).dump(),
         .headers = Auth()});
    ASSERT_TRUE(answer.ok());
    ASSERT_EQ(answer->status, 200) << answer->body;
  };
  post(prefix);
  ASSERT_TRUE(
      WaitUntil([&] { return ScrapeMetric(router_url(), "tandem_router_kv_events_total") >= 1; }));
  for (int i = 0; i < 5; ++i) {
    std::vector<int32_t> prompt = prefix;
    std::vector<int32_t> suffix = Prompt(rng, 24);
    prompt.insert(prompt.end(), suffix.begin(), suffix.end());
    post(prompt);
  }
  // Every follow-up found the whole prefix in the cache of the worker it was sent to.
  EXPECT_GE(ScrapeMetric(router_url(), "tandem_router_cached_prompt_tokens_total"), 5 * 320);
  double generate_requests[2];
  for (int w = 0; w < 2; ++w) {
    generate_requests[w] = ScrapeMetric(
        worker_urls_[w], R"(tandem_worker_requests_total{kind="generate",outcome="ok"})");
  }
  EXPECT_EQ(std::max(generate_requests[0], generate_requests[1]), 6);
}

TEST_F(RouterProcessTest, FiftyDisconnectsLeaveNoReservedOrActiveBlocks) {
  StartRouter({"--local-prefill-max-uncached-tokens", "24"});
  StartWorker("prefill");
  StartWorker("decode");
  StartWorker("decode");
  ASSERT_TRUE(WaitForRouterWorkers(3));
  std::mt19937 rng(22);
  net::EventLoop loop("clients");
  std::vector<std::unique_ptr<StreamCollector>> streams;
  for (int i = 0; i < 50; ++i) {
    streams.push_back(std::make_unique<StreamCollector>(loop, router_url() + "/v1/completions",
                                                        StreamingCompletion(Prompt(rng, 40), 1900),
                                                        /*cancel_after_events=*/1 + i % 3, Auth()));
  }
  for (auto& stream : streams) ASSERT_TRUE(stream->Wait(absl::Seconds(60)));
  for (const std::string& url : worker_urls_) {
    SCOPED_TRACE(url);
    EXPECT_TRUE(WaitUntil(
        [&] {
          return ScrapeMetric(url, R"(tandem_worker_kv_blocks{state="reserved"})") == 0 &&
                 ScrapeMetric(url, "tandem_worker_active_kv_blocks") == 0;
        },
        absl::Seconds(20)))
        << "reserved " << ScrapeMetric(url, R"(tandem_worker_kv_blocks{state="reserved"})")
        << " active " << ScrapeMetric(url, "tandem_worker_active_kv_blocks");
  }
  EXPECT_TRUE(
      WaitUntil([&] { return ScrapeMetric(router_url(), "tandem_router_active_requests") == 0; }));
  // A tiny model is fast: a stream may finish before its client's close reaches the router.
  // Every request ends cancelled or complete, never in error, and nearly all are cancelled.
  const double cancelled = ScrapeMetric(
      router_url(), R"(tandem_router_requests_total{endpoint="completions",outcome="cancelled"})");
  const double ok = std::max(
      0.0, ScrapeMetric(router_url(),
                        R"(tandem_router_requests_total{endpoint="completions",outcome="ok"})"));
  EXPECT_EQ(cancelled + ok, 50);
  EXPECT_GE(cancelled, 40);
  std::printf("disconnects: %.0f cancelled mid-stream, %.0f had finished first\n", cancelled, ok);
}

// The router costs transfers with the KV bytes per token of a real worker's /v1/info
// (kv.block_bytes / kv.block_size), unless --kv-bytes-per-token sets them.
TEST_F(RouterProcessTest, KvBytesPerTokenComeFromTheWorkerUnlessTheFlagSetsThem) {
  StartRouter({});
  const std::string worker = StartWorker("decode");
  auto info =
      net::HttpClient::Fetch({.url = worker + "/v1/info",
                              .headers = {{"authorization", absl::StrCat("Bearer ", kToken)}}});
  ASSERT_TRUE(info.ok() && info->status == 200);
  const json kv = json::parse(info->body)["kv"];
  const int64_t expected = kv["block_bytes"].get<int64_t>() / kv["block_size"].get<int64_t>();
  ASSERT_GT(expected, 0);
  ASSERT_NE(expected, 131072);  // distinguishable from the default
  ASSERT_NE(expected, 50000);   // and from the flag below
  auto entry = [&] {
    auto answer = net::HttpClient::Fetch({.url = router_url() + "/v1/workers", .headers = Auth()});
    const json body =
        answer.ok() ? json::parse(answer->body, nullptr, false) : json(json::value_t::discarded);
    if (body.is_object()) {
      for (const json& w : body["workers"]) {
        if (w["url"] == worker) return w;
      }
    }
    return json();
  };
  EXPECT_TRUE(WaitUntil([&] {
    const json w = entry();
    return w.is_object() && w["kv_bytes_per_token"] == expected &&
           w["kv_bytes_per_token_source"] == "worker";
  })) << entry().dump();

  // The flag wins. (The worker heartbeats to the first router; this one polls it.)
  StartRouter({"--kv-bytes-per-token", "50000", "--worker", worker});
  ASSERT_TRUE(WaitUntil([&] {
    const json w = entry();
    return w.is_object() && w["reported_kv_bytes_per_token"] == expected;
  })) << entry().dump();
  EXPECT_EQ(entry()["kv_bytes_per_token"], 50000);
  EXPECT_EQ(entry()["kv_bytes_per_token_source"], "flag");
}

}  // namespace
}  // namespace tandem::router::testing
