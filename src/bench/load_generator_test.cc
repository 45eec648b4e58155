// The load generator against an in-process fake OpenAI server: counts, token totals and
// failures by reason must come out exactly as the server produced them.
#include "bench/load_generator.h"

#include <atomic>
#include <iostream>
#include <thread>

#include "gtest/gtest.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {
namespace {

using nlohmann::json;

class FakeOpenAi {
 public:
  FakeOpenAi() : server_({.host = "127.0.0.1", .port = 0, .threads = 1}) {
    auto handler = [this](std::shared_ptr<net::HttpExchange> x, bool chat) {
      int n = ++requests_;
      json body = json::parse(x->request().body);
      int max_tokens = body["max_tokens"].get<int>();
      if (n % 5 == 0) {  // every fifth request is turned away
        x->ReplyJson(429, R"({"error":{"message":"busy","type":"rate_limit_error"}})");
        return;
      }
      auto stream = x->StartSse();
      std::thread([stream, max_tokens, chat, n, prompt = body] {
        if (n % 7 == 0) {  // a broken stream
          stream->Send("this is not json");
          stream->Close();
          return;
        }
        for (int i = 0; i < max_tokens; ++i) {
          json chunk = chat ? json{{"choices", {{{"index", 0}, {"delta", {{"content", "w "}}}}}}}
                            : json{{"choices", {{{"index", 0}, {"text", "w "}}}}};
          stream->Send(chunk.dump());
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        int64_t prompt_tokens = chat ? 3 : static_cast<int64_t>(prompt["prompt"].size());
        stream->Send(
            json{{"choices", json::array()},
                 {"usage", {{"prompt_tokens", prompt_tokens}, {"completion_tokens", max_tokens}}}}
                .dump());
        stream->Send("[DONE]");
        stream->Close();
      }).detach();
    };
    server_.Handle("POST", "/v1/completions",
                   [handler](std::shared_ptr<net::HttpExchange> x) { handler(x, false); });
    server_.Handle("POST", "/v1/chat/completions",
                   [handler](std::shared_ptr<net::HttpExchange> x) { handler(x, true); });
    EXPECT_TRUE(server_.Start().ok());
  }
  ~FakeOpenAi() { server_.Shutdown(absl::Seconds(2)); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_.port()); }

 private:
  net::HttpServer server_;
  std::atomic<int> requests_{0};
};

TEST(LoadGeneratorTest, RecordsAgreeWithWhatTheServerSent) {
  FakeOpenAi fake;
  LoadOptions options;
  options.base_url = fake.url();
  options.model = "demo";
  options.workload.num_requests = 70;
  options.workload.arrivals.rate = 500;
  options.workload.input = *ParseLengthSpec("uniform:10,40");
  options.workload.output = *ParseLengthSpec("8");
  options.max_concurrency = 16;
  std::vector<LoadProgress> updates;
  auto result = RunLoad(options, [&](const LoadProgress& p) { updates.push_back(p); });
  ASSERT_TRUE(result.ok()) << result.status();
  BenchSummary s = Summarize(result->records, result->duration_s, *ParseSlo("ttft=5000"), {50});
  // Requests 5,10,...,70 get 429 (14); of the rest, 7,14,...,63 minus the multiples of 35
  // already counted (7, 14, 21, 28, 42, 49, 56, 63) break their stream (8).
  EXPECT_EQ(s.requests, 70u);
  EXPECT_EQ(s.failures["http_429"], 14u);
  EXPECT_EQ(s.failures["malformed_stream"], 8u);
  EXPECT_EQ(s.completed, 48u);
  EXPECT_EQ(s.total_output_tokens, 48 * 8);
  for (const RequestRecord& r : result->records) {
    if (!r.ok) continue;
    EXPECT_EQ(r.itl_s.size(), 7u);
    EXPECT_GE(r.input_tokens, 10);
    EXPECT_LE(r.input_tokens, 40);
    EXPECT_GT(r.ttft_s, 0);
    EXPECT_GE(r.e2e_s, r.ttft_s);
  }
  ASSERT_FALSE(updates.empty());
  EXPECT_EQ(updates.back().done, 70u);
}

TEST(LoadGeneratorTest, ChatEndpointAndUnreachableServer) {
  FakeOpenAi fake;
  LoadOptions options;
  options.base_url = fake.url();
  options.model = "demo";
  options.endpoint = Endpoint::kChat;
  options.workload.num_requests = 3;
  options.workload.output = *ParseLengthSpec("4");
  auto result = RunLoad(options);
  ASSERT_TRUE(result.ok()) << result.status();
  for (const RequestRecord& r : result->records) EXPECT_TRUE(r.ok) << r.error;

  options.base_url = "http://127.0.0.1:1";
  result = RunLoad(options);
  ASSERT_TRUE(result.ok());  // a run against nobody still reports, request by request
  for (const RequestRecord& r : result->records) EXPECT_EQ(r.error, "connection");

  options.model = "";
  EXPECT_FALSE(RunLoad(options).ok());
}

TEST(LoadGeneratorTest, ClosedLoopForADurationKeepsSlotsFullUntilTheTimeIsOver) {
  FakeOpenAi fake;
  LoadOptions options;
  options.base_url = fake.url();
  options.model = "demo";
  options.workload.num_requests = 0;  // no count, no rate: as many as 3 slots allow
  options.workload.duration_s = 0.5;
  options.workload.output = *ParseLengthSpec("4");
  options.max_concurrency = 3;
  auto result = RunLoad(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_GT(result->records.size(), 3u);
  EXPECT_LT(result->duration_s, 5.0);
  for (size_t i = 0; i < result->records.size(); ++i) {
    EXPECT_EQ(result->records[i].index, i);
    EXPECT_LE(result->records[i].start_s, 0.6);
  }
  // Without a concurrency limit the same workload would never end: refused.
  options.max_concurrency = 0;
  EXPECT_EQ(RunLoad(options).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::bench
