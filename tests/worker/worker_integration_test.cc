// Multi-process tests of `tandem worker`: real worker processes on 127.0.0.1 (and, as root, across
// a veth pair into a network namespace), talking the control API and the KV transfer protocol.
//
// Exactness: greedy disaggregated serving (one prefill + one decode worker, over shared memory
// and over TCP) produces exactly the aggregated tokens. Faults: killed peers, expired leases,
// stale epochs and corrupt chunks end cleanly. After every test the pools hold no reserved or
// used blocks beyond the prefix cache.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "core/kv_type.h"
#include "gtest/gtest.h"
#include "kv/auth.h"
#include "kv/wire.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "net/http_server.h"
#include "worker_process.h"

namespace tandem::worker::testing {
namespace {

using nlohmann::json;

json Greedy(const std::vector<int32_t>& prompt, int max_tokens) {
  return {{"prompt_ids", prompt},
          {"max_tokens", max_tokens},
          {"ignore_eos", true},
          {"sampling", {{"temperature", 0}}}};
}

json Remote(json request, const std::string& prefill_url, int timeout_ms = 30'000) {
  request["prefill"] = {{"url", prefill_url}, {"timeout_ms", timeout_ms}};
  return request;
}

#define EXPECT_CLEAN(url)                                              \
  do {                                                                 \
    std::string info_;                                                 \
    EXPECT_TRUE(PoolIsClean(url, absl::Seconds(10), &info_)) << info_; \
  } while (false)

// Prometheus' own linter on a worker's /metrics: what it printed ("" when clean).
std::string PromtoolProblems(const std::string& url) {
  if (std::system("command -v promtool > /dev/null 2>&1") != 0) {
    ADD_FAILURE() << "promtool is missing: run scripts/install-deps.sh";
    return "";
  }
  absl::StatusOr<net::HttpResult> metrics = Call("GET", url + "/metrics", "", "");
  if (!metrics.ok()) return metrics.status().ToString();
  char path[] = "/tmp/tandem-worker-metrics-XXXXXX";
  int fd = ::mkstemp(path);
  (void)!::write(fd, metrics->body.data(), metrics->body.size());
  ::close(fd);
  std::string output;
  if (FILE* pipe = ::popen(absl::StrCat("promtool check metrics < ", path, " 2>&1").c_str(), "r")) {
    char buffer[512];
    while (size_t n = std::fread(buffer, 1, sizeof(buffer), pipe)) output.append(buffer, n);
    ::pclose(pipe);
  }
  ::unlink(path);
  return output;
}

// ---------------------------------------------------------------------------------------------
// Exactness

TEST(WorkerExactnessTest, DisaggregatedMatchesAggregatedOverSharedMemoryAndTcp) {
  auto both = WorkerProcess::Start({.role = "both"});
  auto prefill_shm = WorkerProcess::Start({.role = "prefill"});
  auto prefill_tcp = WorkerProcess::Start({.role = "prefill", .extra = {"--kv-transport", "tcp"}});
  auto decode = WorkerProcess::Start({.role = "decode"});
  ASSERT_TRUE(both && prefill_shm && prefill_tcp && decode);

  // 200 prompts from 1 to 4,096 tokens: lengths around block boundaries, then families that share
  // prefixes of a 4,096-token base (prefix-cache hits on the prefill side, delta transfers on the
  // decode side).
  std::vector<std::vector<int32_t>> prompts;
  for (int length :
       {1,   2,   3,   15,  16,   17,   31,   32,   33,   63,   64,   65,   100,  255, 256,
        257, 511, 512, 513, 1000, 1023, 1024, 1025, 1500, 2047, 2048, 2049, 3000, 4095}) {
    prompts.push_back(MakePrompt(length, length));
  }
  const std::vector<int32_t> base = MakePrompt(4096, 99);
  prompts.push_back(base);
  const int kShared[] = {0, 16, 100, 300, 700, 1024, 1500, 2000, 3000, 3900};
  for (int k = 0; prompts.size() < 200; ++k) {
    const int shared = kShared[k % 10];
    const int tail = 1 + (k * 37) % 150;
    std::vector<int32_t> p(base.begin(), base.begin() + shared);
    std::vector<int32_t> rest = MakePrompt(tail, 10'000 + k);
    p.insert(p.end(), rest.begin(), rest.end());
    prompts.push_back(p);
  }
  SCOPED_TRACE("prompt seeds: MakePrompt(length, length) and MakePrompt(4096, 99) families");

  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(::testing::Message() << "prompt " << i << " of length " << prompts[i].size());
    const json request = Greedy(prompts[i], 8);
    Generation expected = Generate(both->url(), request);
    ASSERT_EQ(expected.http_status, 200) << expected.error;
    ASSERT_EQ(expected.tokens.size(), 8u) << expected.error;
    // Each prompt goes through both transports; the second run finds the prompt's full blocks
    // in the decode worker's cache and transfers only the rest.
    const WorkerProcess* order[2] = {prefill_shm.get(), prefill_tcp.get()};
    if (i % 2 == 1) std::swap(order[0], order[1]);
    for (int run = 0; run < 2; ++run) {
      Generation got = Generate(decode->url(), Remote(request, order[run]->url()));
      ASSERT_EQ(got.http_status, 200) << got.error;
      EXPECT_EQ(got.tokens, expected.tokens) << "via " << order[run]->url();
      EXPECT_EQ(got.finish["finish_reason"], expected.finish["finish_reason"]);
      // A prompt whose every block the decode worker already caches needs no transfer.
      const bool all_cached = run == 1 && prompts[i].size() % 16 == 0;
      EXPECT_EQ(got.finish["timing"]["prefill"], all_cached ? "local" : "remote")
          << got.finish << got.error;
    }
  }

  // 32 at once, half over each transport.
  std::vector<std::vector<int32_t>> batch;
  for (int i = 0; i < 32; ++i) {
    std::vector<int32_t> p(base.begin(), base.begin() + 20 * (i % 8));
    std::vector<int32_t> rest = MakePrompt(30 + 37 * i, 1000 + i);
    p.insert(p.end(), rest.begin(), rest.end());
    batch.push_back(p);
  }
  auto run_all = [&](auto make_request, const std::string& url) {
    std::vector<std::future<Generation>> futures;
    for (int i = 0; i < 32; ++i) {
      futures.push_back(
          std::async(std::launch::async, [&, i] { return Generate(url, make_request(i)); }));
    }
    std::vector<Generation> out;
    for (auto& f : futures) out.push_back(f.get());
    return out;
  };
  std::vector<Generation> expected =
      run_all([&](int i) { return Greedy(batch[i], 12); }, both->url());
  std::vector<Generation> got = run_all(
      [&](int i) {
        return Remote(Greedy(batch[i], 12), (i % 2 ? prefill_tcp : prefill_shm)->url());
      },
      decode->url());
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(expected[i].tokens.size(), 12u) << "request " << i << " " << expected[i].error;
    EXPECT_EQ(got[i].tokens, expected[i].tokens) << "concurrent request " << i << got[i].error;
    EXPECT_EQ(got[i].finish["timing"]["prefill"], "remote") << got[i].finish << got[i].error;
  }

  const std::string receive = "side=\"receive\"";
  EXPECT_GT(Metric(decode->url(), "tandem_kv_transfers_total",
                   {receive, "transport=\"shm\"", "outcome=\"ok\""}),
            0);
  EXPECT_GT(Metric(decode->url(), "tandem_kv_transfers_total",
                   {receive, "transport=\"tcp\"", "outcome=\"ok\""}),
            0);
  EXPECT_EQ(Metric(decode->url(), "tandem_worker_prefill_fallbacks_total"), 0);
  EXPECT_GT(Metric(decode->url(), "tandem_worker_cached_prompt_tokens_total"), 0);
  EXPECT_GT(Metric(prefill_shm->url(), "tandem_worker_cached_prompt_tokens_total"), 0);
  for (const auto* w : {both.get(), prefill_shm.get(), prefill_tcp.get(), decode.get()}) {
    EXPECT_CLEAN(w->url());
    EXPECT_EQ(PromtoolProblems(w->url()), "") << "promtool check metrics on " << w->url();
  }
}

// ---------------------------------------------------------------------------------------------
// Faults

// Starts a generation on another thread.
std::future<Generation> GenerateAsync(const std::string& url, json request) {
  return std::async(std::launch::async,
                    [url, request = std::move(request)] { return Generate(url, request); });
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return condition();
}

int RunningPrefills(const std::string& url) {
  json info = Info(url);
  return info.is_object() && info.contains("requests") ? info["requests"]["prefill"].get<int>()
                                                       : -1;
}

// A slow prefill: the small model computes a long prompt in 64-token chunks for seconds.
WorkerConfig Slow(std::string role) {
  return {.role = std::move(role), .model = "random:small", .extra = {"--max-batch-tokens", "64"}};
}

TEST(WorkerFaultTest, PrefillKilledMidTransferFallsBackAndFreesTheReservation) {
  auto decode = WorkerProcess::Start(Slow("decode"));
  auto prefill = WorkerProcess::Start(Slow("prefill"));
  ASSERT_TRUE(decode && prefill);
  const json request = Greedy(MakePrompt(1500, 5), 4);
  std::future<Generation> running = GenerateAsync(decode->url(), Remote(request, prefill->url()));
  ASSERT_TRUE(WaitFor([&] { return RunningPrefills(prefill->url()) == 1; }, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(300));  // the transfer is open, the prompt half computed
  prefill->Signal(SIGKILL);
  Generation got = running.get();
  ASSERT_EQ(got.http_status, 200) << got.error;
  EXPECT_EQ(got.finish["timing"]["prefill"], "fallback") << got.finish;
  Generation local = Generate(decode->url(), request);  // aggregated, on the same worker
  EXPECT_EQ(got.tokens, local.tokens);
  EXPECT_EQ(local.tokens.size(), 4u);
  EXPECT_EQ(Metric(decode->url(), "tandem_worker_prefill_fallbacks_total"), 1);
  EXPECT_CLEAN(decode->url());
}

TEST(WorkerFaultTest, DecodeKilledMidTransferStopsThePrefillAndFreesItsBlocks) {
  auto decode = WorkerProcess::Start(Slow("decode"));
  auto prefill = WorkerProcess::Start(Slow("prefill"));
  ASSERT_TRUE(decode && prefill);
  std::future<Generation> running =
      GenerateAsync(decode->url(), Remote(Greedy(MakePrompt(1500, 6), 4), prefill->url()));
  ASSERT_TRUE(WaitFor([&] { return RunningPrefills(prefill->url()) == 1; }, absl::Seconds(10)));
  absl::SleepFor(absl::Milliseconds(300));
  decode->Signal(SIGKILL);
  EXPECT_TRUE(running.get().finish.is_null());  // the client saw its stream break
  // The prefill worker notices its caller is gone, stops computing and releases the blocks
  // well before the prompt would have finished.
  EXPECT_CLEAN(prefill->url());
  EXPECT_GE(Metric(prefill->url(), "tandem_worker_requests_total",
                   {"kind=\"prefill\"", "outcome=\"cancelled\""}),
            1);
  // It keeps serving.
  absl::StatusOr<net::HttpResult> health = Call("GET", prefill->url() + "/health");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
}

// An in-process stand-in for a prefill worker: it records each POST /v1/prefill and answers
// only when told to.
class FakePrefill {
 public:
  FakePrefill() : server_({.host = "127.0.0.1", .port = 0, .threads = 1}) {
    server_.Handle("POST", "/v1/prefill",
                   [this](std::shared_ptr<net::HttpExchange> x) {
                     std::lock_guard<std::mutex> lock(mu_);
                     jobs_.push_back({json::parse(x->request().body), x});
                     wake_.notify_all();
                   },
                   {.json_body = true});
    server_.Handle("POST", "/v1/cancel",
                   [](std::shared_ptr<net::HttpExchange> x) { x->ReplyJson(200, "{}"); });
    EXPECT_TRUE(server_.Start().ok());
  }
  ~FakePrefill() { server_.Shutdown(absl::ZeroDuration()); }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", server_.port()); }

  struct Job {
    json body;
    std::shared_ptr<net::HttpExchange> exchange;
  };
  // The next job's request (waits up to 10 s).
  std::optional<Job> Next() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!wake_.wait_for(lock, std::chrono::seconds(10), [&] { return taken_ < jobs_.size(); })) {
      return std::nullopt;
    }
    return jobs_[taken_++];
  }

 private:
  net::HttpServer server_;
  std::mutex mu_;
  std::condition_variable wake_;
  std::vector<Job> jobs_;
  size_t taken_ = 0;
};

TEST(WorkerFaultTest, AReservationNobodyFillsIsFreedWhenItsLeaseExpires) {
  FakePrefill fake;  // never answers
  auto decode = WorkerProcess::Start({.role = "decode", .extra = {"--lease-ms", "1500"}});
  ASSERT_TRUE(decode);
  const json request = Greedy(MakePrompt(100, 7), 4);
  const absl::Time start = absl::Now();
  std::future<Generation> running = GenerateAsync(decode->url(), Remote(request, fake.url()));
  ASSERT_TRUE(fake.Next().has_value());
  EXPECT_EQ(Info(decode->url())["kv"]["open_reservations"], 1);
  EXPECT_GT(Info(decode->url())["kv"]["reserved_blocks"], 0);
  Generation got = running.get();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1400));
  ASSERT_EQ(got.http_status, 200) << got.error;
  EXPECT_EQ(got.finish["timing"]["prefill"], "fallback");
  EXPECT_EQ(got.tokens, Generate(decode->url(), request).tokens);
  EXPECT_EQ(
      Metric(decode->url(), "tandem_worker_prefill_fallbacks_total", {"reason=\"lease_expired\""}),
      1);
  EXPECT_EQ(Metric(decode->url(), "tandem_kv_lease_expirations_total"), 1);
  EXPECT_CLEAN(decode->url());
}

TEST(WorkerFaultTest, ARestartedDecodeWorkerRefusesStaleTransfers) {
  FakePrefill fake;
  auto decode = WorkerProcess::Start({.role = "decode", .extra = {"--lease-ms", "20000"}});
  auto prefill = WorkerProcess::Start({.role = "prefill"});
  ASSERT_TRUE(decode && prefill);
  const json request = Greedy(MakePrompt(40, 8), 3);

  // The decode worker reserves blocks and names its epoch in the prefill job; it restarts.
  std::future<Generation> first = GenerateAsync(decode->url(), Remote(request, fake.url()));
  std::optional<FakePrefill::Job> old_job = fake.Next();
  ASSERT_TRUE(old_job.has_value());
  ASSERT_TRUE(decode->Restart());
  EXPECT_NE(Info(decode->url())["epoch"], old_job->body["kv"]["epoch"]);
  old_job->exchange->ReplyJson(503, "{}");
  first.get();

  // A prefill job for the old incarnation is refused by the new one: 409, stale epoch.
  absl::StatusOr<net::HttpResult> stale =
      Call("POST", prefill->url() + "/v1/prefill", old_job->body.dump());
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->status, 409) << stale->body;
  EXPECT_NE(stale->body.find("stale"), std::string::npos) << stale->body;

  // The same for a live reservation named with the previous epoch.
  std::future<Generation> second = GenerateAsync(decode->url(), Remote(request, fake.url()));
  std::optional<FakePrefill::Job> live = fake.Next();
  ASSERT_TRUE(live.has_value());
  json forged = live->body;
  forged["kv"]["epoch"] = old_job->body["kv"]["epoch"];
  stale = Call("POST", prefill->url() + "/v1/prefill", forged.dump());
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(stale->status, 409) << stale->body;
  EXPECT_NE(stale->body.find("stale"), std::string::npos) << stale->body;
  // The genuine job still goes through, through the real prefill worker.
  absl::StatusOr<net::HttpResult> genuine =
      Call("POST", prefill->url() + "/v1/prefill", live->body.dump());
  ASSERT_TRUE(genuine.ok());
  EXPECT_EQ(genuine->status, 200) << genuine->body;
  live->exchange->ReplyJson(200, genuine->body);
  Generation got = second.get();
  EXPECT_EQ(got.finish["timing"]["prefill"], "remote") << got.finish << got.error;
  EXPECT_EQ(got.tokens, Generate(decode->url(), request).tokens);
  EXPECT_CLEAN(decode->url());
  EXPECT_CLEAN(prefill->url());
}

// Workers with different KV element types cannot exchange KV (the bytes mean different things):
// the prefill worker's transfer is refused before it computes anything, naming both types, and
// the decode worker serves the request itself.
TEST(WorkerFaultTest, AKvTypeMismatchIsRefusedNamingBothTypes) {
  FakePrefill fake;
  auto decode = WorkerProcess::Start({.role = "decode", .extra = {"--kv-dtype", "bf16"}});
  auto prefill = WorkerProcess::Start({.role = "prefill", .extra = {"--kv-dtype", "f32"}});
  ASSERT_TRUE(decode && prefill);
  EXPECT_EQ(Info(decode->url())["kv"]["dtype"], "bf16");
  EXPECT_EQ(Info(prefill->url())["kv"]["dtype"], "f32");
  const json request = Greedy(MakePrompt(40, 8), 3);
  std::future<Generation> call = GenerateAsync(decode->url(), Remote(request, fake.url()));
  std::optional<FakePrefill::Job> job = fake.Next();
  ASSERT_TRUE(job.has_value());
  absl::StatusOr<net::HttpResult> refused =
      Call("POST", prefill->url() + "/v1/prefill", job->body.dump());
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 409) << refused->body;
  EXPECT_NE(refused->body.find("holds bf16 KV but the sender's KV is f32"), std::string::npos)
      << refused->body;
  job->exchange->ReplyJson(409, refused->body);
  Generation got = call.get();
  ASSERT_EQ(got.http_status, 200) << got.error;
  EXPECT_EQ(got.finish["timing"]["prefill"], "fallback") << got.finish;
  EXPECT_EQ(got.tokens, Generate(decode->url(), request).tokens);
  EXPECT_CLEAN(decode->url());
  EXPECT_CLEAN(prefill->url());
}

// Minimal blocking frame I/O for a hand-written sender.
bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd, p, size, MSG_NOSIGNAL);
    if (n <= 0) return false;
    p += n;
    size -= n;
  }
  return true;
}

std::optional<kv::Message> ReadMessage(int fd) {
  std::string header(kv::kHeaderBytes, '\0');
  if (::recv(fd, header.data(), header.size(), MSG_WAITALL) !=
      static_cast<ssize_t>(header.size())) {
    return std::nullopt;
  }
  absl::StatusOr<kv::FrameHeader> decoded = kv::DecodeHeader(header);
  if (!decoded.ok()) return std::nullopt;
  std::string body(decoded->body_length, '\0');
  if (!body.empty() &&
      ::recv(fd, body.data(), body.size(), MSG_WAITALL) != static_cast<ssize_t>(body.size())) {
    return std::nullopt;
  }
  absl::StatusOr<kv::Message> message = kv::DecodeBody(decoded->type, body);
  if (!message.ok()) return std::nullopt;
  return *message;
}

TEST(WorkerFaultTest, ACorruptedChunkFailsTheTransferCleanly) {
  FakePrefill fake;
  auto decode = WorkerProcess::Start({.role = "decode"});
  ASSERT_TRUE(decode);
  const json request = Greedy(MakePrompt(50, 9), 4);
  std::future<Generation> running = GenerateAsync(decode->url(), Remote(request, fake.url()));
  std::optional<FakePrefill::Job> job = fake.Next();
  ASSERT_TRUE(job.has_value());
  const json& kv = job->body["kv"];
  const json info = Info(decode->url());

  // Connect as a prefill worker with the right token, over TCP, and send a chunk whose
  // checksum does not match its bytes.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(decode->kv_port());
  ::inet_pton(AF_INET, "127.0.0.1", &address.sin_addr);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  std::optional<kv::Message> hello = ReadMessage(fd);
  ASSERT_TRUE(hello && std::holds_alternative<kv::ServerHelloMessage>(*hello));
  kv::ClientHelloMessage client;
  client.sender_epoch = 77;
  client.mac = kv::ComputeMac(kToken, std::get<kv::ServerHelloMessage>(*hello).nonce, 77);
  std::string frame = kv::EncodeFrame(client);
  ASSERT_TRUE(WriteAll(fd, frame.data(), frame.size()));
  std::optional<kv::Message> ok = ReadMessage(fd);
  ASSERT_TRUE(ok && std::holds_alternative<kv::HelloOkMessage>(*ok));
  kv::BeginMessage begin;
  begin.reservation_id = std::strtoull(kv["reservation"].get<std::string>().c_str(), nullptr, 16);
  begin.receiver_epoch = std::strtoull(kv["epoch"].get<std::string>().c_str(), nullptr, 16);
  begin.num_layers = info["kv"]["num_layers"].get<uint32_t>();
  begin.num_blocks = kv["num_blocks"].get<uint32_t>();
  begin.layer_block_bytes = info["kv"]["layer_block_bytes"].get<uint64_t>();
  begin.want_shared_memory = 0;
  begin.kv_type = static_cast<uint8_t>(
      *ParseKvType(info["kv"]["dtype"].get<std::string>()));  // the decode worker's
  frame = kv::EncodeFrame(begin);
  ASSERT_TRUE(WriteAll(fd, frame.data(), frame.size()));
  std::optional<kv::Message> accept = ReadMessage(fd);
  ASSERT_TRUE(accept && std::holds_alternative<kv::AcceptMessage>(*accept));
  std::string payload(begin.num_blocks * begin.layer_block_bytes, '\x5a');
  kv::ChunkMessage chunk{begin.reservation_id, 0, 0, begin.num_blocks, payload.size(),
                         /*checksum=*/12345};
  frame = kv::EncodeFrame(chunk);
  ASSERT_TRUE(WriteAll(fd, frame.data(), frame.size()));
  ASSERT_TRUE(WriteAll(fd, payload.data(), payload.size()));
  std::optional<kv::Message> abort = ReadMessage(fd);
  ASSERT_TRUE(abort && std::holds_alternative<kv::AbortMessage>(*abort));
  EXPECT_EQ(std::get<kv::AbortMessage>(*abort).code, kv::RefusalCode::kChecksumMismatch);
  ::close(fd);

  Generation got = running.get();
  ASSERT_EQ(got.http_status, 200) << got.error;
  EXPECT_EQ(got.finish["timing"]["prefill"], "fallback");
  EXPECT_EQ(got.tokens, Generate(decode->url(), request).tokens);
  EXPECT_EQ(Metric(decode->url(), "tandem_worker_prefill_fallbacks_total", {"reason=\"corrupt\""}),
            1);
  job->exchange->ReplyJson(500, "{}");
  EXPECT_CLEAN(decode->url());
}

// ---------------------------------------------------------------------------------------------
// Control API

TEST(WorkerApiTest, BadInputIsRefusedWithAReasonAndTheWorkerKeepsServing) {
  auto both = WorkerProcess::Start({.role = "both"});
  auto prefill = WorkerProcess::Start({.role = "prefill"});
  ASSERT_TRUE(both && prefill);
  const std::string generate = both->url() + "/v1/generate";
  auto status_of = [](absl::StatusOr<net::HttpResult> r) { return r.ok() ? r->status : -1; };

  EXPECT_EQ(status_of(Call("POST", generate, "{\"prompt_ids\": [1, 2")), 400);
  EXPECT_EQ(status_of(Call("POST", generate, Greedy({1, 2}, 2).dump(), "")), 401);
  EXPECT_EQ(status_of(Call("POST", generate, Greedy({1, 2}, 2).dump(), "wrong-token")), 401);
  EXPECT_EQ(status_of(Call("GET", both->url() + "/v1/info", "", "")), 401);
  EXPECT_EQ(status_of(Call("POST", generate, Greedy(MakePrompt(9000, 1), 2).dump())), 400);
  EXPECT_EQ(status_of(Call("POST", generate, Greedy({1, 600}, 2).dump())), 400);
  EXPECT_EQ(status_of(Call("POST", generate, Greedy({1, 2}, 0).dump())), 400);
  json bad_sampling = Greedy({1}, 2);
  bad_sampling["sampling"]["top_p"] = 7;
  EXPECT_EQ(status_of(Call("POST", generate, bad_sampling.dump())), 400);
  // Over the body limit: 413 (or the connection closes before the client sent it all).
  std::string huge = "{\"prompt_ids\": [" + std::string(9 << 20, ' ') + "1]}";
  absl::StatusOr<net::HttpResult> too_big = Call("POST", generate, huge);
  if (too_big.ok()) {
    EXPECT_EQ(too_big->status, 413);
  }
  EXPECT_EQ(status_of(Call("POST", both->url() + "/v1/cancel", R"({"request_id": "nobody"})")),
            404);
  EXPECT_EQ(status_of(Call("GET", both->url() + "/v1/kv/events?since=x")), 400);
  EXPECT_EQ(status_of(Call("POST", prefill->url() + "/v1/generate", Greedy({1, 2}, 2).dump())),
            409);
  // Prefill jobs naming a window that does not match the prompt, or a reservation that does
  // not exist.
  const json info = Info(both->url());
  json job = {{"request_id", "p1"},
              {"prompt_ids", MakePrompt(40, 2)},
              {"kv",
               {{"address", info["kv"]["address"]},
                {"epoch", info["epoch"]},
                {"reservation", "00000000000000aa"},
                {"first_block", 0},
                {"num_blocks", 9}}}};
  EXPECT_EQ(status_of(Call("POST", prefill->url() + "/v1/prefill", job.dump())), 400);
  job["kv"]["num_blocks"] = 3;
  absl::StatusOr<net::HttpResult> unknown =
      Call("POST", prefill->url() + "/v1/prefill", job.dump());
  ASSERT_TRUE(unknown.ok());
  EXPECT_EQ(unknown->status, 409) << unknown->body;
  EXPECT_NE(unknown->body.find("unknown"), std::string::npos) << unknown->body;
  job["kv"]["address"] = absl::StrCat("127.0.0.1:", PickFreePort());  // nobody listens
  EXPECT_EQ(status_of(Call("POST", prefill->url() + "/v1/prefill", job.dump())), 503);

  // Still serving, and every refusal was logged with its reason.
  Generation fine = Generate(both->url(), Greedy({1, 2, 3}, 3));
  EXPECT_EQ(fine.tokens.size(), 3u) << fine.error;
  const std::string log = both->Log();
  EXPECT_NE(log.find("request refused"), std::string::npos);
  EXPECT_NE(log.find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(log.find("context"), std::string::npos);
  EXPECT_CLEAN(both->url());
  EXPECT_CLEAN(prefill->url());
}

// Opens a generate stream and cancels it (closes the connection) after `after` tokens.
void GenerateAndHangUp(const std::string& url, const json& request, int after) {
  net::EventLoop loop("client");
  std::promise<void> hung_up;
  std::atomic<int> tokens{0};
  std::atomic<bool> done{false};
  std::shared_ptr<net::SseClient> stream;
  net::HttpClientRequest http;
  http.method = "POST";
  http.url = url + "/v1/generate";
  http.body = request.dump();
  http.headers.push_back({"Authorization", absl::StrCat("Bearer ", kToken)});
  stream = net::SseClient::Open(
      loop, http,
      [&](const net::SseEvent& event) {
        if (event.data.find("\"token\"") != std::string::npos && ++tokens == after) {
          hung_up.set_value();
        }
      },
      [&](absl::Status, int, const std::string&) { done = true; });
  EXPECT_EQ(hung_up.get_future().wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_FALSE(done.load()) << "the stream ended before the client hung up";
  stream->Cancel();
  loop.Stop();
}

TEST(WorkerApiTest, ClosingOrCancellingAStreamFreesItsBlocksOnEveryWorker) {
  // The small model decodes slowly enough that the streams are still running when cancelled.
  auto both = WorkerProcess::Start({.role = "both", .model = "random:small"});
  auto decode = WorkerProcess::Start({.role = "decode", .model = "random:small"});
  auto prefill = WorkerProcess::Start({.role = "prefill", .model = "random:small"});
  ASSERT_TRUE(both && decode && prefill);
  const json request = Greedy(MakePrompt(300, 11), 1700);
  GenerateAndHangUp(both->url(), request, 2);
  GenerateAndHangUp(decode->url(), Remote(request, prefill->url()), 2);
  EXPECT_CLEAN(both->url());
  EXPECT_CLEAN(decode->url());
  EXPECT_CLEAN(prefill->url());
  EXPECT_GE(Metric(both->url(), "tandem_worker_requests_total",
                   {"kind=\"generate\"", "outcome=\"cancelled\""}),
            1);

  // POST /v1/cancel ends a running request with a `cancelled` error event.
  json named = request;
  named["request_id"] = "to-cancel";
  std::future<Generation> running = GenerateAsync(both->url(), named);
  ASSERT_TRUE(
      WaitFor([&] { return Info(both->url())["requests"]["generate"] == 1; }, absl::Seconds(10)));
  absl::StatusOr<net::HttpResult> cancel =
      Call("POST", both->url() + "/v1/cancel", R"({"request_id": "to-cancel"})");
  ASSERT_TRUE(cancel.ok());
  EXPECT_EQ(cancel->status, 200);
  Generation cancelled = running.get();
  EXPECT_EQ(cancelled.error["error"]["code"], "cancelled") << cancelled.error;
  EXPECT_LT(cancelled.tokens.size(), 1700u);
  EXPECT_CLEAN(both->url());
}

TEST(WorkerApiTest, KvEventsStreamResumesAndStartsWithASnapshotWhenAsked) {
  auto both = WorkerProcess::Start({.role = "both"});
  ASSERT_TRUE(both);
  ASSERT_EQ(Generate(both->url(), Greedy(MakePrompt(64, 12), 1)).tokens.size(), 1u);
  const std::string epoch = Info(both->url())["epoch"];

  auto read_events = [&](const std::string& query, size_t count) {
    net::EventLoop loop("events");
    std::mutex mu;
    std::vector<std::pair<std::string, json>> events;
    std::promise<void> enough;
    bool signalled = false;
    net::HttpClientRequest http;
    http.url = both->url() + "/v1/kv/events" + query;
    http.headers.push_back({"Authorization", absl::StrCat("Bearer ", kToken)});
    auto stream = net::SseClient::Open(
        loop, http,
        [&](const net::SseEvent& e) {
          std::lock_guard<std::mutex> lock(mu);
          events.push_back({e.event, json::parse(e.data, nullptr, false)});
          if (events.size() >= count && !signalled) {
            signalled = true;
            enough.set_value();
          }
        },
        [](absl::Status, int, const std::string&) {});
    enough.get_future().wait_for(std::chrono::seconds(5));
    stream->Cancel();
    loop.Stop();
    std::lock_guard<std::mutex> lock(mu);
    return events;
  };
  // From the start: one `stored` event per committed run of blocks, ids from 1.
  auto all = read_events("?since=0", 1);
  ASSERT_GE(all.size(), 1u);
  EXPECT_EQ(all[0].second["type"], "stored");
  EXPECT_EQ(all[0].second["event_id"], 1);
  EXPECT_EQ(all[0].second["epoch"], epoch);
  EXPECT_EQ(all[0].second["blocks"].size(), 4u);  // 64 tokens = 4 full blocks
  // Resuming after event 1 delivers what came later (a new prompt's blocks).
  ASSERT_EQ(Generate(both->url(), Greedy(MakePrompt(32, 13), 1)).tokens.size(), 1u);
  auto later = read_events("?since=1", 1);
  ASSERT_GE(later.size(), 1u);
  EXPECT_EQ(later[0].second["event_id"], 2);
  // A consumer from another epoch (or ahead of this one) gets a snapshot first.
  auto snapshot = read_events("?since=5&epoch=0000000000000001", 1);
  ASSERT_GE(snapshot.size(), 1u);
  EXPECT_EQ(snapshot[0].first, "snapshot");
  EXPECT_EQ(snapshot[0].second["epoch"], epoch);
  EXPECT_EQ(snapshot[0].second["blocks"].size(), 6u);
  EXPECT_CLEAN(both->url());
}

TEST(WorkerApiTest, RegistersWithALateRouterAndDrainsOnSigterm) {
  // The router comes up after the worker: the worker keeps retrying quietly.
  const int router_port = PickFreePort();
  auto worker =
      WorkerProcess::Start({.role = "both",
                            .model = "random:small",
                            .extra = {"--router", absl::StrCat("http://127.0.0.1:", router_port)}});
  ASSERT_TRUE(worker);
  std::mutex mu;
  std::vector<json> beats;
  net::HttpServer router({.host = "127.0.0.1", .port = router_port, .threads = 1});
  router.Handle("POST", "/v1/workers/heartbeat",
                [&](std::shared_ptr<net::HttpExchange> x) {
                  EXPECT_NE(x->request().Header("authorization"), nullptr);
                  std::lock_guard<std::mutex> lock(mu);
                  beats.push_back(json::parse(x->request().body));
                  x->ReplyJson(200, "{}");
                },
                {.json_body = true});
  absl::SleepFor(absl::Milliseconds(1500));
  ASSERT_TRUE(router.Start().ok());
  auto beat_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return beats.size();
  };
  ASSERT_TRUE(WaitFor([&] { return beat_count() >= 2; }, absl::Seconds(15)));
  {
    std::lock_guard<std::mutex> lock(mu);
    const json& beat = beats.back();
    EXPECT_EQ(beat["url"], worker->url());
    EXPECT_EQ(beat["role"], "both");
    EXPECT_EQ(beat["epoch"], Info(worker->url())["epoch"]);
    EXPECT_EQ(beat["ready"], true);
    EXPECT_EQ(beat["draining"], false);
    EXPECT_FALSE(beat["kv_address"].get<std::string>().empty());
    for (const char* field : {"model", "location", "capacity_blocks", "active_blocks",
                              "prefill_queue_requests", "prefill_queue_tokens"}) {
      EXPECT_TRUE(beat.contains(field)) << field;
    }
  }
  // SIGTERM while a request runs: it finishes, then the process exits 0.
  std::future<Generation> running = GenerateAsync(worker->url(), Greedy(MakePrompt(200, 14), 150));
  ASSERT_TRUE(
      WaitFor([&] { return Info(worker->url())["requests"]["generate"] == 1; }, absl::Seconds(10)));
  worker->Signal(SIGTERM);
  Generation finished = running.get();
  EXPECT_EQ(finished.finish["finish_reason"], "length") << finished.error;
  EXPECT_EQ(finished.tokens.size(), 150u);
  EXPECT_EQ(worker->Wait(absl::Seconds(20)), 0);
  router.Shutdown(absl::ZeroDuration());
}

TEST(WorkerApiTest, OverloadIsAnsweredEarlyWith429) {
  auto worker = WorkerProcess::Start(
      {.role = "both", .model = "random:small", .extra = {"--max-requests", "1"}});
  ASSERT_TRUE(worker);
  std::future<Generation> running = GenerateAsync(worker->url(), Greedy(MakePrompt(100, 15), 100));
  ASSERT_TRUE(
      WaitFor([&] { return Info(worker->url())["requests"]["generate"] == 1; }, absl::Seconds(10)));
  absl::StatusOr<net::HttpResult> refused =
      Call("POST", worker->url() + "/v1/generate", Greedy({1, 2}, 2).dump());
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 429) << refused->body;
  EXPECT_NE(refused->Header("retry-after"), nullptr);
  EXPECT_EQ(running.get().tokens.size(), 100u);
  EXPECT_EQ(Generate(worker->url(), Greedy({1, 2}, 2)).tokens.size(), 2u);
  EXPECT_CLEAN(worker->url());
}

TEST(WorkerApiTest, AdminDrainStopsNewWorkAndReportsNotReady) {
  auto worker = WorkerProcess::Start({.role = "both"});
  ASSERT_TRUE(worker);
  absl::StatusOr<net::HttpResult> drain = Call("POST", worker->url() + "/admin/drain", "");
  ASSERT_TRUE(drain.ok());
  EXPECT_EQ(drain->status, 200);
  absl::StatusOr<net::HttpResult> ready = Call("GET", worker->url() + "/ready");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 503);
  Generation refused = Generate(worker->url(), Greedy({1, 2}, 2));
  EXPECT_EQ(refused.http_status, 503);
  // /metrics carries every worker metric of docs/metrics.md.
  absl::StatusOr<net::HttpResult> metrics = Call("GET", worker->url() + "/metrics", "", "");
  ASSERT_TRUE(metrics.ok());
  for (const char* name : {"tandem_worker_info",
                           "tandem_worker_busy_seconds_total",
                           "tandem_worker_busy_ratio",
                           "tandem_worker_batch_tokens",
                           "tandem_worker_prompt_tokens_total",
                           "tandem_worker_cached_prompt_tokens_total",
                           "tandem_worker_generated_tokens_total",
                           "tandem_worker_running_requests",
                           "tandem_worker_waiting_requests",
                           "tandem_worker_prefill_queue_tokens",
                           "tandem_worker_active_kv_blocks",
                           "tandem_worker_kv_capacity_blocks",
                           "tandem_worker_kv_blocks",
                           "tandem_worker_prefix_hit_ratio",
                           "tandem_worker_ttft_seconds",
                           "tandem_worker_itl_seconds",
                           "tandem_worker_prefill_fallbacks_total",
                           "tandem_worker_requests_total",
                           "tandem_kv_transfers_total",
                           "tandem_kv_lease_expirations_total"}) {
    EXPECT_NE(metrics->body.find(absl::StrCat("# TYPE ", name, " ")), std::string::npos) << name;
  }
}

// ---------------------------------------------------------------------------------------------
// Two hosts: the prefill worker in a network namespace with its own host name, joined to this
// one by a veth pair, so KV crosses a real interface over TCP.

class NetworkNamespace {
 public:
  static std::unique_ptr<NetworkNamespace> Create(std::string* why) {
    if (::geteuid() != 0) {
      *why = "needs root";
      return nullptr;
    }
    if (std::system("ip netns list > /dev/null 2>&1") != 0) {
      *why = "`ip netns` is unavailable";
      return nullptr;
    }
    auto ns = std::unique_ptr<NetworkNamespace>(new NetworkNamespace());
    const int id = ::getpid() % 200 + 20;
    ns->name_ = absl::StrCat("tandem-wt-", ::getpid());
    ns->host_ip_ = absl::StrCat("10.213.", id, ".1");
    ns->peer_ip_ = absl::StrCat("10.213.", id, ".2");
    const std::string a = absl::StrCat("twa", ::getpid() % 100000);
    const std::string b = absl::StrCat("twb", ::getpid() % 100000);
    ns->link_ = a;
    const std::string script = absl::StrCat(
        "set -e; ip netns add ", ns->name_, "; ip link add ", a, " type veth peer name ", b,
        "; ip link set ", b, " netns ", ns->name_, "; ip addr add ", ns->host_ip_, "/24 dev ", a,
        "; ip link set ", a, " up; ip netns exec ", ns->name_, " ip addr add ", ns->peer_ip_,
        "/24 dev ", b, "; ip netns exec ", ns->name_, " ip link set ", b, " up; ip netns exec ",
        ns->name_, " ip link set lo up");
    if (std::system((script + " > /dev/null 2>&1").c_str()) != 0) {
      *why = "could not create a network namespace and veth pair";
      return nullptr;
    }
    return ns;
  }
  ~NetworkNamespace() {
    std::system(absl::StrCat("ip link del ", link_, " > /dev/null 2>&1; ip netns del ", name_,
                             " > /dev/null 2>&1")
                    .c_str());
  }
  const std::string& name() const { return name_; }
  const std::string& host_ip() const { return host_ip_; }
  const std::string& peer_ip() const { return peer_ip_; }

 private:
  NetworkNamespace() = default;
  std::string name_, host_ip_, peer_ip_, link_;
};

TEST(WorkerTwoHostTest, KvCrossesARealInterfaceOverTcp) {
  std::string why;
  std::unique_ptr<NetworkNamespace> ns = NetworkNamespace::Create(&why);
  if (ns == nullptr) GTEST_SKIP() << "two-host test skipped: " << why;
  {
    auto decode = WorkerProcess::Start({.role = "decode", .host = ns->host_ip()});
    // Another network namespace and another host name: another host to the KV layer.
    auto prefill = WorkerProcess::Start(
        {.role = "prefill",
         .host = ns->peer_ip(),
         .prefix = {"ip", "netns", "exec", ns->name(), "unshare", "--uts", "sh", "-c",
                    "hostname tandem-test-host-b && exec \"$@\"", "sh"}});
    ASSERT_TRUE(decode && prefill);
    for (int length : {17, 300, 1200}) {
      const json request = Greedy(MakePrompt(length, 20 + length), 6);
      Generation got = Generate(decode->url(), Remote(request, prefill->url()));
      ASSERT_EQ(got.http_status, 200) << got.error;
      EXPECT_EQ(got.finish["timing"]["prefill"], "remote") << got.finish << got.error;
      EXPECT_EQ(got.tokens, Generate(decode->url(), request).tokens) << "length " << length;
    }
    EXPECT_EQ(Metric(decode->url(), "tandem_kv_transfers_total",
                     {"side=\"receive\"", "transport=\"tcp\"", "outcome=\"ok\""}),
              3);
    EXPECT_EQ(Metric(decode->url(), "tandem_kv_transfers_total", {"transport=\"shm\""}), 0);
    EXPECT_CLEAN(decode->url());
    EXPECT_CLEAN(prefill->url());
  }
}

}  // namespace
}  // namespace tandem::worker::testing
