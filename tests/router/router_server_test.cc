// The router against fake workers in this process: the OpenAI API and its bad-input table,
// routing by cached prefix and load, conditional disaggregation, the registry (heartbeats,
// epochs, draining, expiry, static workers, KV layouts), KV resync, admission under overload,
// client disconnects, and migration off a worker that dies mid-stream.
#include <sys/resource.h>

#include <fstream>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "fake_worker.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/kv_event_wire.h"
#include "router/prompt_renderer.h"
#include "router_test_util.h"

namespace tandem::router::testing {
namespace {

using nlohmann::json;

std::vector<int32_t> RandomPrompt(std::mt19937& rng, int length) {
  const std::vector<int32_t>& tokens = TinyTextTokens();
  std::vector<int32_t> prompt;
  for (int i = 0; i < length; ++i) prompt.push_back(tokens[rng() % tokens.size()]);
  return prompt;
}

// The text fake workers produce for `prompt` with greedy decoding of `max_tokens` tokens.
std::string ExpectedText(const std::vector<int32_t>& prompt, int max_tokens) {
  static auto renderer = PromptRenderer::Create("random:tiny", "");
  std::vector<int32_t> context = prompt, generated;
  for (int i = 0; i < max_tokens; ++i) {
    int32_t next = FakeWorker::NextToken(context, TinyTextTokens());
    context.push_back(next);
    generated.push_back(next);
  }
  return (*renderer)->tokenizer().Decode(generated, /*skip_special=*/true);
}

json Completion(const std::vector<int32_t>& prompt, int max_tokens, bool stream = false) {
  return {{"model", "random-tiny"},
          {"prompt", prompt},
          {"max_tokens", max_tokens},
          {"temperature", 0},
          {"stream", stream}};
}

int WorkerOf(RouterHarness& harness, const std::vector<int64_t>& before) {
  for (size_t i = 0; i < harness.workers().size(); ++i) {
    if (harness.workers()[i]->generate_requests() > before[i]) return static_cast<int>(i);
  }
  return -1;
}

std::vector<int64_t> GenerateCounts(RouterHarness& harness) {
  std::vector<int64_t> counts;
  for (auto& worker : harness.workers()) counts.push_back(worker->generate_requests());
  return counts;
}

// ------------------------------------------------------------------------------------------
// The OpenAI API

struct BadInput {
  const char* name;
  const char* path;
  std::string body;
  int status;
  const char* param;  // nullptr: not checked
  std::string content_type = "application/json";
  net::HeaderList headers = {{"authorization", "Bearer sk-test"}};
};

TEST(RouterApiTest, BadInputTableAnswersOpenAiErrorsAndKeepsServing) {
  RouterServerOptions options = TestRouterOptions();
  options.api_keys = {"sk-test"};
  RouterHarness harness(options);
  harness.AddWorker({.role = "both"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  const std::vector<int32_t> long_prompt(8150, TinyTextTokens()[0]);
  const std::vector<BadInput> cases = {
      {"not json", "/v1/completions", "{\"model\": ", 400, nullptr},
      {"not an object", "/v1/completions", "[1, 2]", 400, nullptr},
      {"no model", "/v1/completions", R"({"prompt": "hi"})", 400, "model"},
      {"unknown model", "/v1/completions", R"({"model": "gpt-9", "prompt": "hi"})", 404, "model"},
      {"no prompt", "/v1/completions", R"({"model": "random-tiny"})", 400, "prompt"},
      {"prompt of objects", "/v1/completions", R"({"model": "random-tiny", "prompt": [{}]})", 400,
       "prompt"},
      {"token id out of range", "/v1/completions",
       R"({"model": "random-tiny", "prompt": [1, 2, 99999]})", 400, "prompt"},
      {"no messages", "/v1/chat/completions", R"({"model": "random-tiny"})", 400, "messages"},
      {"empty messages", "/v1/chat/completions", R"({"model": "random-tiny", "messages": []})", 400,
       "messages"},
      {"unknown role", "/v1/chat/completions",
       R"({"model": "random-tiny", "messages": [{"role": "wizard", "content": "x"}]})", 400,
       "messages[0].role"},
      {"image content", "/v1/chat/completions",
       R"({"model": "random-tiny", "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]})",
       400, "messages[0].content"},
      {"max_tokens 0", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "max_tokens": 0})", 400, "max_tokens"},
      {"max_tokens string", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "max_tokens": "5"})", 400, "max_tokens"},
      {"temperature 3", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "temperature": 3})", 400, "temperature"},
      {"top_p 0", "/v1/completions", R"({"model": "random-tiny", "prompt": "a", "top_p": 0})", 400,
       "top_p"},
      {"n 0", "/v1/completions", R"({"model": "random-tiny", "prompt": "a", "n": 0})", 400, "n"},
      {"n 1000", "/v1/completions", R"({"model": "random-tiny", "prompt": "a", "n": 1000})", 400,
       "n"},
      {"five stops", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "stop": ["a","b","c","d","e"]})", 400, "stop"},
      {"logprobs 50", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "logprobs": 50})", 400, "logprobs"},
      {"top_logprobs alone", "/v1/chat/completions",
       R"({"model": "random-tiny", "messages": [{"role": "user", "content": "x"}], "top_logprobs": 2})",
       400, "top_logprobs"},
      {"stream_options without stream", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "stream_options": {"include_usage": true}})", 400,
       "stream_options"},
      {"tools", "/v1/chat/completions",
       R"({"model": "random-tiny", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]})",
       400, "tools"},
      {"best_of 2", "/v1/completions", R"({"model": "random-tiny", "prompt": "a", "best_of": 2})",
       400, "best_of"},
      {"echo with stream", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "echo": true, "stream": true})", 400, "echo"},
      {"context exceeded", "/v1/completions",
       json({{"model", "random-tiny"}, {"prompt", long_prompt}, {"max_tokens", 100}}).dump(), 400,
       "max_tokens"},
      {"seed not an integer", "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a", "seed": 1.5})", 400, "seed"},
      {"text/plain body", "/v1/completions", R"({"model": "random-tiny", "prompt": "a"})", 415,
       nullptr, "text/plain"},
      {"missing API key",
       "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a"})",
       401,
       nullptr,
       "application/json",
       {}},
      {"wrong API key",
       "/v1/completions",
       R"({"model": "random-tiny", "prompt": "a"})",
       401,
       nullptr,
       "application/json",
       {{"authorization", "Bearer sk-wrong"}}},
  };
  ASSERT_GE(cases.size(), 20u);
  for (const BadInput& c : cases) {
    SCOPED_TRACE(c.name);
    auto answer = net::HttpClient::Fetch({.method = "POST",
                                          .url = harness.url() + c.path,
                                          .body = c.body,
                                          .content_type = c.content_type,
                                          .headers = c.headers});
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->status, c.status) << answer->body;
    json body = json::parse(answer->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << answer->body;
    ASSERT_TRUE(body.contains("error")) << answer->body;
    const json& error = body["error"];
    EXPECT_TRUE(error["message"].is_string() && !error["message"].get<std::string>().empty());
    EXPECT_TRUE(error["type"].is_string()) << answer->body;
    EXPECT_TRUE(error.contains("param") && error.contains("code")) << answer->body;
    if (c.param != nullptr) {
      EXPECT_EQ(error["param"], c.param) << answer->body;
    }
    // The router keeps serving after every bad request.
    auto good = harness.Post("/v1/completions",
                             {{"model", "random-tiny"}, {"prompt", "hello"}, {"max_tokens", 2}},
                             {{"authorization", "Bearer sk-test"}});
    ASSERT_TRUE(good.ok());
    EXPECT_EQ(good->status, 200) << good->body;
  }
  EXPECT_GE(harness.Metric(
                R"(tandem_router_requests_total{endpoint="completions",outcome="client_error"})"),
            20);
}

TEST(RouterApiTest, CompletionsAndChatStreamingEqualsNonStreaming) {
  RouterHarness harness;
  harness.AddWorker({.role = "both"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  std::mt19937 rng(1);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 40);
  const std::string expected = ExpectedText(prompt, 12);

  auto plain =
      harness.Post("/v1/completions", Completion(prompt, 12), {{"x-request-id", "my-request-1"}});
  ASSERT_TRUE(plain.ok());
  ASSERT_EQ(plain->status, 200) << plain->body;
  ASSERT_NE(plain->Header("x-request-id"), nullptr);
  EXPECT_EQ(*plain->Header("x-request-id"), "my-request-1");
  json body = json::parse(plain->body);
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["id"], "cmpl-my-request-1");
  EXPECT_EQ(body["choices"][0]["text"], expected);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"]["prompt_tokens"], 40);
  EXPECT_EQ(body["usage"]["completion_tokens"], 12);
  EXPECT_EQ(body["usage"]["total_tokens"], 52);

  net::EventLoop loop("client");
  json stream_body = Completion(prompt, 12, true);
  stream_body["stream_options"] = {{"include_usage", true}};
  StreamCollector stream(loop, harness.url() + "/v1/completions", stream_body);
  ASSERT_TRUE(stream.Wait(absl::Seconds(10)));
  StreamResult result = stream.result();
  EXPECT_EQ(result.http_status, 200);
  EXPECT_TRUE(result.saw_done);
  EXPECT_EQ(result.Text(), expected);
  EXPECT_EQ(result.FinishReason(), "length");
  ASSERT_FALSE(result.chunks.empty());
  EXPECT_EQ(result.chunks.back()["usage"]["completion_tokens"], 12);
  EXPECT_TRUE(result.chunks.back()["choices"].empty());

  // Chat: the template is applied; streamed deltas add up to the non-streamed message.
  json chat = {{"model", "random-tiny"},
               {"messages",
                {{{"role", "system"}, {"content", "Be brief."}},
                 {{"role", "user"}, {"content", "Hello there"}}}},
               {"max_completion_tokens", 9},
               {"temperature", 0}};
  auto chat_plain = harness.Post("/v1/chat/completions", chat);
  ASSERT_TRUE(chat_plain.ok());
  ASSERT_EQ(chat_plain->status, 200) << chat_plain->body;
  json chat_body = json::parse(chat_plain->body);
  EXPECT_EQ(chat_body["object"], "chat.completion");
  EXPECT_EQ(chat_body["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(chat_body["usage"]["completion_tokens"], 9);
  chat["stream"] = true;
  StreamCollector chat_stream(loop, harness.url() + "/v1/chat/completions", chat);
  ASSERT_TRUE(chat_stream.Wait(absl::Seconds(10)));
  StreamResult chat_result = chat_stream.result();
  EXPECT_EQ(chat_result.Text(), chat_body["choices"][0]["message"]["content"]);
  EXPECT_EQ(chat_result.chunks.front()["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(chat_result.chunks.front()["object"], "chat.completion.chunk");
}

TEST(RouterApiTest, StopStringsLogprobsAndChoices) {
  RouterHarness harness;
  harness.AddWorker({.role = "both"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  std::mt19937 rng(2);
  const std::vector<int32_t> prompt = RandomPrompt(rng, 20);
  const std::string full = ExpectedText(prompt, 30);
  ASSERT_GT(full.size(), 12u);
  // A stop string from the middle of the answer: the text ends right before it.
  const std::string stop = full.substr(full.size() / 2, 3);
  const std::string expected = full.substr(0, full.find(stop));
  json request = Completion(prompt, 30);
  request["stop"] = stop;
  auto answer = harness.Post("/v1/completions", request);
  ASSERT_TRUE(answer.ok());
  json body = json::parse(answer->body);
  EXPECT_EQ(body["choices"][0]["text"], expected);
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");

  request["stream"] = true;
  net::EventLoop loop("client");
  StreamCollector stream(loop, harness.url() + "/v1/completions", request);
  ASSERT_TRUE(stream.Wait(absl::Seconds(10)));
  EXPECT_EQ(stream.result().Text(), expected);
  EXPECT_EQ(stream.result().FinishReason(), "stop");

  json with_logprobs = Completion(prompt, 5);
  with_logprobs["logprobs"] = 1;
  with_logprobs["n"] = 3;
  answer = harness.Post("/v1/completions", with_logprobs);
  ASSERT_TRUE(answer.ok());
  body = json::parse(answer->body);
  ASSERT_EQ(body["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(body["choices"][i]["index"], i);
    EXPECT_EQ(body["choices"][i]["logprobs"]["tokens"].size(), 5u);
    EXPECT_EQ(body["choices"][i]["logprobs"]["token_logprobs"][0], -0.5);
  }
  EXPECT_EQ(body["usage"]["completion_tokens"], 15);
  EXPECT_EQ(body["usage"]["prompt_tokens"], 20);

  auto models = harness.Get("/v1/models");
  ASSERT_TRUE(models.ok());
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "random-tiny");
  auto health = harness.Get("/health");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  auto ready = harness.Get("/ready");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200);
}

TEST(RouterApiTest, TextThatIsNotValidUtf8IsTheSameStreamedOrNot) {
  // Workers that generate single bytes: lead bytes, continuation bytes and ASCII, mixed.
  auto renderer = PromptRenderer::Create("random:tiny", "");
  ASSERT_TRUE(renderer.ok());
  std::vector<int32_t> byte_tokens;
  for (int32_t id = 0; id < 256; ++id) {
    std::string_view bytes = (*renderer)->tokenizer().TokenBytes(id);
    if (bytes.size() != 1) continue;
    const unsigned char c = static_cast<unsigned char>(bytes[0]);
    if (c == 0xC3 || c == 0xE2 || c == 0xF0 || (c >= 0x80 && c <= 0x84) || c == 'a') {
      byte_tokens.push_back(id);
    }
  }
  ASSERT_GE(byte_tokens.size(), 5u);
  RouterHarness harness;
  harness.AddWorker({.role = "both", .token_ids = byte_tokens});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  net::EventLoop loop("client");
  std::mt19937 rng(13);
  for (int i = 0; i < 5; ++i) {
    const std::vector<int32_t> prompt = RandomPrompt(rng, 10);
    auto plain = harness.Post("/v1/completions", Completion(prompt, 40));
    ASSERT_TRUE(plain.ok());
    json body = json::parse(plain->body, nullptr, false);
    ASSERT_TRUE(body.is_object()) << plain->body;
    StreamCollector stream(loop, harness.url() + "/v1/completions", Completion(prompt, 40, true));
    ASSERT_TRUE(stream.Wait(absl::Seconds(10)));
    EXPECT_EQ(stream.result().Text(), body["choices"][0]["text"].get<std::string>());
  }
}

TEST(RouterApiTest, MetricsHaveTheDocumentedNamesAndPassPromtool) {
  RouterHarness harness;
  harness.AddWorker({.role = "both"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  ASSERT_TRUE(harness.Post("/v1/completions", Completion({300, 301, 302}, 3)).ok());
  auto metrics = harness.Get("/metrics");
  ASSERT_TRUE(metrics.ok());
  // docs/metrics.md, "Router": the dashboard and the planner read exactly these.
  for (const char* name :
       {"tandem_router_requests_total", "tandem_router_ttft_seconds", "tandem_router_itl_seconds",
        "tandem_router_e2e_seconds", "tandem_router_span_seconds",
        "tandem_router_prompt_tokens_total", "tandem_router_cached_prompt_tokens_total",
        "tandem_router_generated_tokens_total", "tandem_router_active_requests",
        "tandem_router_queue_depth", "tandem_router_routing_decisions_total",
        "tandem_router_migrations_total", "tandem_router_workers", "tandem_router_kv_events_total",
        "tandem_router_kv_resyncs_total"}) {
    EXPECT_NE(metrics->body.find(absl::StrCat("# TYPE ", name, " ")), std::string::npos) << name;
  }
  EXPECT_EQ(harness.Metric(R"(tandem_router_requests_total{endpoint="completions",outcome="ok"})"),
            1);
  EXPECT_EQ(harness.Metric("tandem_router_generated_tokens_total"), 3);
  EXPECT_EQ(harness.Metric("tandem_router_prompt_tokens_total"), 3);
  EXPECT_EQ(harness.Metric(R"(tandem_router_workers{role="both",state="ready"})"), 1);
  EXPECT_EQ(harness.Metric("tandem_router_ttft_seconds_count"), 1);
  if (std::system("promtool --version > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool is not installed";
  }
  const std::string path = ::testing::TempDir() + "/router_metrics.txt";
  std::ofstream(path) << metrics->body;
  EXPECT_EQ(std::system(("promtool check metrics < " + path).c_str()), 0) << metrics->body;
  std::remove(path.c_str());
}

TEST(RouterApiTest, ReadyWithoutWorkersAndDrainingRefusesNewWork) {
  RouterServerOptions options = TestRouterOptions();
  options.queue_timeout = absl::Milliseconds(200);
  RouterHarness harness(options);
  // Workers start after the router and register with it: it is ready before they are.
  auto ready = harness.Get("/ready");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(json::parse(ready->body)["decode_workers_ready"], false);
  auto answer = harness.Post("/v1/completions", Completion({300, 301}, 2));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->status, 503) << answer->body;
  EXPECT_NE(answer->Header("retry-after"), nullptr);
  EXPECT_EQ(json::parse(answer->body)["error"]["type"], "server_error");

  harness.AddWorker({.role = "both"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  ready = harness.Get("/ready");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(json::parse(ready->body)["decode_workers_ready"], true);
  answer = harness.Post("/v1/completions", Completion({300, 301}, 2));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->status, 200);

  harness.router().BeginDrain();
  ready = harness.Get("/ready");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 503);
  answer = harness.Post("/v1/completions", Completion({300, 301}, 2));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->status, 503);
}

// ------------------------------------------------------------------------------------------
// Routing

TEST(RouterRoutingTest, SharedLongPrefixLandsOnTheWorkerHoldingIt) {
  RouterHarness harness;
  for (int i = 0; i < 3; ++i) harness.AddWorker({.role = "decode"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(3));
  std::mt19937 rng(3);
  const std::vector<int32_t> prefix = RandomPrompt(rng, 256);
  auto before = GenerateCounts(harness);
  auto first = harness.Post("/v1/completions", Completion(prefix, 2));
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->status, 200);
  const int holder = WorkerOf(harness, before);
  ASSERT_GE(holder, 0);
  // The router learns of the cached blocks from the worker's KV events.
  ASSERT_TRUE(WaitUntil([&] { return harness.Metric("tandem_router_kv_events_total") >= 1; }));
  for (int i = 0; i < 6; ++i) {
    std::vector<int32_t> prompt = prefix;
    std::vector<int32_t> suffix = RandomPrompt(rng, 20);
    prompt.insert(prompt.end(), suffix.begin(), suffix.end());
    before = GenerateCounts(harness);
    auto answer = harness.Post("/v1/completions", Completion(prompt, 2));
    ASSERT_TRUE(answer.ok());
    ASSERT_EQ(answer->status, 200);
    EXPECT_EQ(WorkerOf(harness, before), holder) << "request " << i;
  }
}

TEST(RouterRoutingTest, RequestsWithoutAffinitySpreadOverWorkers) {
  RouterHarness harness;
  for (int i = 0; i < 3; ++i) {
    harness.AddWorker({.role = "decode", .token_delay = absl::Milliseconds(5)});
  }
  ASSERT_TRUE(harness.WaitForReadyWorkers(3));
  net::EventLoop loop("clients");
  std::mt19937 rng(4);
  std::vector<std::unique_ptr<StreamCollector>> streams;
  for (int i = 0; i < 30; ++i) {
    streams.push_back(std::make_unique<StreamCollector>(
        loop, harness.url() + "/v1/completions", Completion(RandomPrompt(rng, 64), 20, true)));
  }
  for (auto& stream : streams) ASSERT_TRUE(stream->Wait(absl::Seconds(20)));
  for (auto& worker : harness.workers()) {
    EXPECT_GE(worker->generate_requests(), 5) << "30 requests over 3 workers";
  }
}

TEST(RouterRoutingTest, ConditionalDisaggregationByUncachedTokens) {
  RouterServerOptions options = TestRouterOptions();
  options.routing.routing.local_prefill_max_uncached_tokens = 64;
  RouterHarness harness(options);
  FakeWorker& decode = harness.AddWorker({.role = "decode"});
  FakeWorker& prefill = harness.AddWorker({.role = "prefill"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(2));
  std::mt19937 rng(5);

  // Short prompt: prefilled on the decode worker.
  auto answer = harness.Post("/v1/completions", Completion(RandomPrompt(rng, 40), 3));
  ASSERT_TRUE(answer.ok());
  ASSERT_EQ(answer->status, 200);
  EXPECT_EQ(prefill.prefill_requests(), 0);
  EXPECT_EQ(harness.Metric(R"(tandem_router_routing_decisions_total{decision="aggregated"})"), 1);

  // Long uncached prompt: prefilled on the prefill worker, KV pushed to the decode worker.
  const std::vector<int32_t> long_prompt = RandomPrompt(rng, 200);
  answer = harness.Post("/v1/completions", Completion(long_prompt, 3));
  ASSERT_TRUE(answer.ok());
  ASSERT_EQ(answer->status, 200);
  EXPECT_EQ(prefill.prefill_requests(), 1);
  EXPECT_EQ(decode.remote_prefills(), 1);
  EXPECT_EQ(harness.Metric(R"(tandem_router_routing_decisions_total{decision="disaggregated"})"),
            1);
  EXPECT_EQ(json::parse(answer->body)["choices"][0]["text"], ExpectedText(long_prompt, 3));

  // The same long prompt again: now cached on the decode worker, so few tokens are uncached.
  ASSERT_TRUE(WaitUntil([&] { return harness.Metric("tandem_router_kv_events_total") >= 3; }));
  std::vector<int32_t> again = long_prompt;
  again.push_back(TinyTextTokens()[0]);
  answer = harness.Post("/v1/completions", Completion(again, 3));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(prefill.prefill_requests(), 1);
  EXPECT_EQ(harness.Metric(R"(tandem_router_routing_decisions_total{decision="aggregated"})"), 2);
}

TEST(RouterRoutingTest, PrefillWorkerNearTheDecodeWorkerIsPreferred) {
  RouterServerOptions options = TestRouterOptions();
  options.routing.routing.local_prefill_max_uncached_tokens = 16;
  RouterHarness harness(options);
  harness.AddWorker({.role = "decode", .host = "node-a", .rack = "rack-0"});
  FakeWorker& far = harness.AddWorker({.role = "prefill", .host = "node-z", .rack = "rack-9"});
  FakeWorker& near = harness.AddWorker({.role = "prefill", .host = "node-a", .rack = "rack-0"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(3));
  std::mt19937 rng(14);
  for (int i = 0; i < 5; ++i) {
    auto answer = harness.Post("/v1/completions", Completion(RandomPrompt(rng, 160), 2));
    ASSERT_TRUE(answer.ok());
    ASSERT_EQ(answer->status, 200);
  }
  // Same load, no cached prefix anywhere: the transfer over the shorter link decides.
  EXPECT_EQ(near.prefill_requests(), 5);
  EXPECT_EQ(far.prefill_requests(), 0);
}

// ------------------------------------------------------------------------------------------
// Registry

json WorkersList(RouterHarness& harness) {
  auto answer = harness.Get("/v1/workers");
  return answer.ok() ? json::parse(answer->body)["workers"] : json::array();
}

TEST(RouterRegistryTest, HeartbeatsEpochsDrainingAndExpiry) {
  RouterHarness harness;
  FakeWorker& a = harness.AddWorker({.role = "decode"});
  FakeWorker& b = harness.AddWorker({.role = "decode"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(2));
  ASSERT_TRUE(WaitUntil([&] {
    return harness.Metric(R"(tandem_router_workers{role="decode",state="ready"})") == 2;
  }));

  // Draining: listed as draining, takes no new work.
  a.SetDraining(true);
  ASSERT_TRUE(WaitUntil([&] {
    for (const json& w : WorkersList(harness)) {
      if (w["url"] == a.url()) return w["state"] == "draining";
    }
    return false;
  }));
  std::mt19937 rng(6);
  const int64_t a_before = a.generate_requests();
  for (int i = 0; i < 6; ++i) {
    auto answer = harness.Post("/v1/completions", Completion(RandomPrompt(rng, 30), 2));
    ASSERT_TRUE(answer.ok());
    EXPECT_EQ(answer->status, 200);
  }
  EXPECT_EQ(a.generate_requests(), a_before);
  a.SetDraining(false);

  // A restart (new epoch at the same address) is a new incarnation with a new id.
  int64_t old_id = -1;
  for (const json& w : WorkersList(harness)) {
    if (w["url"] == b.url()) old_id = w["id"];
  }
  ASSERT_TRUE(b.Restart().ok());
  ASSERT_TRUE(WaitUntil([&] {
    for (const json& w : WorkersList(harness)) {
      if (w["url"] == b.url()) return w["id"] != old_id && w["epoch"] == HexId(b.epoch());
    }
    return false;
  }));

  // Missed heartbeats: gone.
  b.SetHeartbeats(false);
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (const json& w : WorkersList(harness)) {
          if (w["url"] == b.url()) return false;
        }
        return true;
      },
      absl::Seconds(5)));
  EXPECT_EQ(WorkersList(harness).size(), 1u);
}

TEST(RouterRegistryTest, StaticWorkersArePolledAndExpire) {
  FakeWorkerOptions worker_options{.role = "both",
                                   .token_ids = TinyTextTokens(),
                                   .router_url = "",
                                   .cluster_token = "cluster-secret"};
  FakeWorker worker(worker_options);
  ASSERT_TRUE(worker.Start().ok());
  RouterServerOptions options = TestRouterOptions();
  options.static_workers = {worker.url()};
  options.cluster_token = "cluster-secret";
  options.queue_timeout = absl::Milliseconds(300);
  RouterHarness harness(options);
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  auto answer = harness.Post("/v1/completions", Completion({300, 301, 302}, 4));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->status, 200) << answer->body;
  // A heartbeat without the cluster token is refused.
  auto refused = harness.Post("/v1/workers/heartbeat", {{"url", "http://127.0.0.1:1"}});
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 401);
  worker.Kill();
  ASSERT_TRUE(WaitUntil([&] { return WorkersList(harness).empty(); }, absl::Seconds(5)));
  answer = harness.Post("/v1/completions", Completion({300, 301, 302}, 4));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->status, 503) << answer->body;  // no worker within the queue timeout
}

// The KV layout of a worker's /v1/info: blocks of 16 tokens, 196608 bytes a block over all
// layers, K and V (qwen2.5-0.5b with a BF16 cache): 12288 bytes per token.
constexpr const char* kBf16Kv = R"({"block_size": 16, "dtype": "bf16", "block_bytes": 196608})";

json WorkersBody(RouterHarness& harness) {
  auto answer = harness.Get("/v1/workers");
  return answer.ok() ? json::parse(answer->body, nullptr, false) : json();
}

// The /v1/workers entry of the worker at `url`, or null.
json WorkerEntry(RouterHarness& harness, const std::string& url) {
  for (const json& w : WorkersList(harness)) {
    if (w["url"] == url) return w;
  }
  return nullptr;
}

bool Reported(RouterHarness& harness, const FakeWorker& worker, int64_t kv_bytes_per_token) {
  const json entry = WorkerEntry(harness, worker.url());
  return entry.is_object() && entry["reported_kv_bytes_per_token"] == kv_bytes_per_token;
}

TEST(RouterRegistryTest, KvBytesPerTokenAreLearnedFromTheWorkersInfo) {
  RouterHarness harness;
  json body = WorkersBody(harness);
  EXPECT_EQ(body["kv_bytes_per_token"], 131072);  // nobody reported one yet
  EXPECT_EQ(body["kv_bytes_per_token_source"], "default");
  FakeWorker& decode = harness.AddWorker({.role = "decode", .info_kv = kBf16Kv});
  FakeWorker& prefill = harness.AddWorker({.role = "prefill", .info_kv = ""});
  ASSERT_TRUE(harness.WaitForReadyWorkers(2));
  ASSERT_TRUE(WaitUntil([&] { return Reported(harness, decode, 12288); }));
  const json entry = WorkerEntry(harness, decode.url());
  EXPECT_EQ(entry["kv_bytes_per_token"], 12288);
  EXPECT_EQ(entry["kv_bytes_per_token_source"], "worker");
  // The prefill worker did not say: costed as the largest reported.
  const json silent = WorkerEntry(harness, prefill.url());
  EXPECT_TRUE(silent["reported_kv_bytes_per_token"].is_null());
  EXPECT_EQ(silent["kv_bytes_per_token"], 12288);
  EXPECT_EQ(silent["kv_bytes_per_token_source"], "largest_reported");
  body = WorkersBody(harness);
  EXPECT_EQ(body["kv_bytes_per_token"], 12288);
  EXPECT_EQ(body["kv_bytes_per_token_source"], "largest_reported");
}

TEST(RouterRegistryTest, KvBytesPerTokenOfTheOperatorWinOverTheWorkers) {
  RouterServerOptions options = TestRouterOptions();
  options.routing.routing.kv_bytes_per_token = 50000;  // --kv-bytes-per-token 50000
  options.learn_kv_bytes_per_token = false;
  RouterHarness harness(options);
  FakeWorker& decode = harness.AddWorker({.role = "decode", .info_kv = kBf16Kv});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  // Shown as reported, not used.
  ASSERT_TRUE(WaitUntil([&] { return Reported(harness, decode, 12288); }));
  const json entry = WorkerEntry(harness, decode.url());
  EXPECT_EQ(entry["kv_bytes_per_token"], 50000);
  EXPECT_EQ(entry["kv_bytes_per_token_source"], "flag");
  const json body = WorkersBody(harness);
  EXPECT_EQ(body["kv_bytes_per_token"], 50000);
  EXPECT_EQ(body["kv_bytes_per_token_source"], "flag");
}

TEST(RouterRegistryTest, UnusableKvLayoutsAreIgnoredAndTheWorkersStillServe) {
  RouterHarness harness;
  std::vector<FakeWorker*> bad = {
      &harness.AddWorker({.role = "decode", .info_kv = R"({"block_size": 0, "block_bytes": 8})"}),
      &harness.AddWorker(
          {.role = "decode", .info_kv = R"({"block_size": 16, "block_bytes": "196608"})"}),
      &harness.AddWorker(
          {.role = "decode", .info_kv = R"({"block_size": 16, "block_bytes": 1.5e5})"}),
      &harness.AddWorker(
          {.role = "decode", .info_kv = R"({"block_size": -16, "block_bytes": 196608})"}),
      &harness.AddWorker({.role = "decode", .info_kv = ""}),
  };
  ASSERT_TRUE(harness.WaitForReadyWorkers(5));
  // Registered after them: once its layout is known, theirs were read too.
  FakeWorker& good = harness.AddWorker({.role = "prefill", .info_kv = kBf16Kv});
  ASSERT_TRUE(WaitUntil([&] { return Reported(harness, good, 12288); }));
  for (const FakeWorker* worker : bad) {
    const json entry = WorkerEntry(harness, worker->url());
    SCOPED_TRACE(entry.dump());
    EXPECT_TRUE(entry["reported_kv_bytes_per_token"].is_null());
    EXPECT_EQ(entry["kv_bytes_per_token"], 12288);
    EXPECT_EQ(entry["kv_bytes_per_token_source"], "largest_reported");
  }
  EXPECT_EQ(WorkersBody(harness)["kv_bytes_per_token"], 12288);
  std::mt19937 rng(8);
  for (int i = 0; i < 5; ++i) {
    auto answer = harness.Post("/v1/completions", Completion(RandomPrompt(rng, 30), 2));
    ASSERT_TRUE(answer.ok());
    EXPECT_EQ(answer->status, 200) << answer->body;
  }
}

TEST(RouterRegistryTest, WorkersWithDifferentKvLayoutsAreEachCostedWithTheirOwn) {
  // A static worker (polled, not heartbeating) with an F32 cache: twice the bytes of BF16.
  FakeWorker f32({.role = "decode",
                  .token_ids = TinyTextTokens(),
                  .info_kv = R"({"block_size": 16, "dtype": "f32", "block_bytes": 393216})"});
  ASSERT_TRUE(f32.Start().ok());
  RouterServerOptions options = TestRouterOptions();
  options.static_workers = {f32.url()};
  RouterHarness harness(options);
  FakeWorker& bf16 = harness.AddWorker({.role = "decode", .info_kv = kBf16Kv});
  FakeWorker& silent = harness.AddWorker({.role = "prefill", .info_kv = ""});
  ASSERT_TRUE(harness.WaitForReadyWorkers(3));
  ASSERT_TRUE(
      WaitUntil([&] { return Reported(harness, f32, 24576) && Reported(harness, bf16, 12288); }));
  EXPECT_EQ(WorkerEntry(harness, f32.url())["kv_bytes_per_token"], 24576);
  EXPECT_EQ(WorkerEntry(harness, bf16.url())["kv_bytes_per_token"], 12288);
  EXPECT_EQ(WorkerEntry(harness, bf16.url())["kv_bytes_per_token_source"], "worker");
  // One that did not say is costed as the heaviest.
  EXPECT_EQ(WorkerEntry(harness, silent.url())["kv_bytes_per_token"], 24576);
  const json body = WorkersBody(harness);
  EXPECT_EQ(body["kv_bytes_per_token"], 24576);
  EXPECT_EQ(body["kv_bytes_per_token_source"], "largest_reported");
}

TEST(RouterRegistryTest, KvEventGapTriggersResync) {
  RouterHarness harness;
  FakeWorker& worker = harness.AddWorker({.role = "decode"});
  harness.AddWorker({.role = "decode"});
  ASSERT_TRUE(harness.WaitForReadyWorkers(2));
  std::mt19937 rng(7);
  auto answer = harness.Post("/v1/completions", Completion(RandomPrompt(rng, 64), 2));
  ASSERT_TRUE(answer.ok());
  ASSERT_TRUE(WaitUntil([&] { return harness.Metric("tandem_router_kv_events_total") >= 1; }));
  worker.InjectEventGap();
  harness.workers()[1]->InjectEventGap();
  const std::vector<int32_t> prompt = RandomPrompt(rng, 128);
  auto before = GenerateCounts(harness);
  answer = harness.Post("/v1/completions", Completion(prompt, 2));
  ASSERT_TRUE(answer.ok());
  const int holder = WorkerOf(harness, before);
  ASSERT_TRUE(WaitUntil([&] { return harness.Metric("tandem_router_kv_resyncs_total") >= 1; }));
  ASSERT_TRUE(WaitUntil(
      [&] { return worker.snapshots_served() + harness.workers()[1]->snapshots_served() >= 1; }));
  // After the resync the index knows the new blocks: the prefix still routes to its holder.
  absl::SleepFor(absl::Milliseconds(200));
  std::vector<int32_t> longer = prompt;
  longer.push_back(TinyTextTokens()[1]);
  before = GenerateCounts(harness);
  answer = harness.Post("/v1/completions", Completion(longer, 2));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(WorkerOf(harness, before), holder);
}

// ------------------------------------------------------------------------------------------
// Admission, disconnects, migration

int64_t ResidentKilobytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  }
  return 0;
}

TEST(RouterAdmissionTest, TenfoldOverloadIsAnswered429WithBoundedMemory) {
  RouterServerOptions options = TestRouterOptions();
  options.admission.max_in_flight = 4;
  options.max_queued = 0;
  RouterHarness harness(options);
  harness.AddWorker({.role = "both", .token_delay = absl::Milliseconds(10)});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  net::EventLoop loop("clients");
  std::mt19937 rng(8);
  int64_t rss_after_first_wave = 0;
  int ok = 0, rejected = 0;
  for (int wave = 0; wave < 5; ++wave) {
    std::vector<std::unique_ptr<StreamCollector>> streams;
    for (int i = 0; i < 40; ++i) {  // 10x the 4 requests admitted at once
      streams.push_back(std::make_unique<StreamCollector>(
          loop, harness.url() + "/v1/completions", Completion(RandomPrompt(rng, 32), 10, true)));
    }
    for (auto& stream : streams) {
      ASSERT_TRUE(stream->Wait(absl::Seconds(20)));
      StreamResult result = stream->result();
      if (result.http_status == 200) {
        ++ok;
        EXPECT_TRUE(result.saw_done);
      } else {
        ++rejected;
        EXPECT_EQ(result.http_status, 429);
        json error = json::parse(result.error_body, nullptr, false);
        EXPECT_EQ(error["error"]["type"], "rate_limit_error") << result.error_body;
      }
    }
    if (wave == 0) rss_after_first_wave = ResidentKilobytes();
  }
  EXPECT_GE(ok, 4 * 5);
  EXPECT_GE(rejected, 100);
  // Retry-After on a plain request under the same overload.
  std::vector<std::unique_ptr<StreamCollector>> hold;
  for (int i = 0; i < 4; ++i) {
    hold.push_back(std::make_unique<StreamCollector>(loop, harness.url() + "/v1/completions",
                                                     Completion(RandomPrompt(rng, 32), 50, true)));
  }
  ASSERT_TRUE(WaitUntil([&] { return harness.Metric("tandem_router_active_requests") == 4; }));
  auto answer = harness.Post("/v1/completions", Completion(RandomPrompt(rng, 32), 5));
  ASSERT_TRUE(answer.ok());
  EXPECT_EQ(answer->status, 429);
  ASSERT_NE(answer->Header("retry-after"), nullptr);
  EXPECT_GE(std::stoi(*answer->Header("retry-after")), 1);
  for (auto& stream : hold) ASSERT_TRUE(stream->Wait(absl::Seconds(20)));
  EXPECT_TRUE(WaitUntil([&] { return harness.Metric("tandem_router_active_requests") == 0; }));
  // Rejections hold nothing: memory after 200 requests is close to memory after 40.
  EXPECT_LT(ResidentKilobytes() - rss_after_first_wave, 32 * 1024);
}

TEST(RouterAdmissionTest, QueuedRequestsWaitForASlotThenTimeOut) {
  RouterServerOptions options = TestRouterOptions();
  options.max_streams_per_worker = 2;
  options.max_queued = 4;
  options.queue_timeout = absl::Milliseconds(300);
  RouterHarness harness(options);
  harness.AddWorker({.role = "both", .token_delay = absl::Milliseconds(5)});
  ASSERT_TRUE(harness.WaitForReadyWorkers(1));
  net::EventLoop loop("clients");
  std::mt19937 rng(9);
  // Short requests: the queued ones get a slot when the first two finish.
  std::vector<std::unique_ptr<StreamCollector>> streams;
  for (int i = 0; i < 4; ++i) {
    streams.push_back(std::make_unique<StreamCollector>(
        loop, harness.url() + "/v1/completions", Completion(RandomPrompt(rng, 16), 4, true)));
  }
  for (auto& stream : streams) {
    ASSERT_TRUE(stream->Wait(absl::Seconds(10)));
    EXPECT_EQ(stream->result().http_status, 200);
  }
  // Long requests: a queued one waits past the queue timeout and is refused with 429.
  streams.clear();
  for (int i = 0; i < 3; ++i) {
    streams.push_back(std::make_unique<StreamCollector>(
        loop, harness.url() + "/v1/completions", Completion(RandomPrompt(rng, 16), 200, true)));
  }
  int refused = 0;
  for (auto& stream : streams) {
    ASSERT_TRUE(stream->Wait(absl::Seconds(20)));
    refused += stream->result().http_status == 429;
  }
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(harness.Metric(R"(tandem_router_queue_depth{worker="all"})"), 0);
}

TEST(RouterDisconnectTest, FiftyClientsGoneLeaveNoStreamsOrBlocksOnWorkers) {
  RouterHarness harness;
  for (int i = 0; i < 2; ++i) {
    harness.AddWorker({.role = "both", .token_delay = absl::Milliseconds(10)});
  }
  ASSERT_TRUE(harness.WaitForReadyWorkers(2));
  net::EventLoop loop("clients");
  std::mt19937 rng(10);
  std::vector<std::unique_ptr<StreamCollector>> streams;
  for (int i = 0; i < 50; ++i) {
    streams.push_back(std::make_unique<StreamCollector>(
        loop, harness.url() + "/v1/completions", Completion(RandomPrompt(rng, 48), 500, true),
        /*cancel_after_events=*/3));
  }
  for (auto& stream : streams) ASSERT_TRUE(stream->Wait(absl::Seconds(20)));
  EXPECT_TRUE(WaitUntil([&] {
    for (auto& worker : harness.workers()) {
      if (worker->active_streams() != 0 || worker->held_blocks() != 0) return false;
    }
    return true;
  }));
  EXPECT_TRUE(WaitUntil([&] { return harness.Metric("tandem_router_active_requests") == 0; }));
  EXPECT_EQ(
      harness.Metric(R"(tandem_router_requests_total{endpoint="completions",outcome="cancelled"})"),
      50);
}

TEST(RouterMigrationTest, FiftyStreamsSurviveAWorkerDyingMidStream) {
  RouterHarness harness;
  for (int i = 0; i < 3; ++i) {
    harness.AddWorker({.role = "decode", .token_delay = absl::Milliseconds(8)});
  }
  ASSERT_TRUE(harness.WaitForReadyWorkers(3));
  std::mt19937 rng(11);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 50; ++i) prompts.push_back(RandomPrompt(rng, 24 + i % 17));
  auto run = [&](bool kill) {
    net::EventLoop loop("clients");
    std::vector<std::unique_ptr<StreamCollector>> streams;
    for (const auto& prompt : prompts) {
      streams.push_back(std::make_unique<StreamCollector>(loop, harness.url() + "/v1/completions",
                                                          Completion(prompt, 40, true)));
    }
    if (kill) {
      // Once every stream is well under way, the busiest worker dies.
      EXPECT_TRUE(WaitUntil([&] {
        for (auto& s : streams) {
          if (s->events() < 5) return false;
        }
        return true;
      }));
      harness.workers()[0]->Kill();
    }
    std::vector<StreamResult> results;
    for (auto& stream : streams) {
      EXPECT_TRUE(stream->Wait(absl::Seconds(30)));
      results.push_back(stream->result());
    }
    return results;
  };
  std::vector<StreamResult> reference = run(false);
  std::vector<StreamResult> disturbed = run(true);
  for (size_t i = 0; i < prompts.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(reference[i].Text(), ExpectedText(prompts[i], 40));
    EXPECT_EQ(disturbed[i].http_status, 200);
    EXPECT_TRUE(disturbed[i].saw_done);
    EXPECT_EQ(disturbed[i].Text(), reference[i].Text());
    EXPECT_EQ(disturbed[i].FinishReason(), "length");
  }
  EXPECT_GE(harness.Metric(R"(tandem_router_migrations_total{outcome="ok"})"), 1);
  EXPECT_EQ(harness.Metric(R"(tandem_router_migrations_total{outcome="failed"})"), 0);
}

TEST(RouterMigrationTest, MigrationLimitEndsTheRequestWithAnError) {
  RouterServerOptions options = TestRouterOptions();
  options.max_migrations = 0;
  RouterHarness harness(options);
  FakeWorker& worker = harness.AddWorker({.role = "both", .token_delay = absl::Milliseconds(10)});
  harness.AddWorker({.role = "both", .token_delay = absl::Milliseconds(10)});
  ASSERT_TRUE(harness.WaitForReadyWorkers(2));
  net::EventLoop loop("clients");
  std::vector<std::unique_ptr<StreamCollector>> streams;
  std::mt19937 rng(12);
  for (int i = 0; i < 6; ++i) {
    streams.push_back(std::make_unique<StreamCollector>(
        loop, harness.url() + "/v1/completions", Completion(RandomPrompt(rng, 20), 200, true)));
  }
  ASSERT_TRUE(WaitUntil([&] { return worker.active_streams() > 0; }));
  ASSERT_TRUE(WaitUntil([&] {
    for (auto& s : streams) {
      if (s->events() < 2) return false;
    }
    return true;
  }));
  worker.Kill();
  int errors = 0;
  for (auto& stream : streams) {
    ASSERT_TRUE(stream->Wait(absl::Seconds(20)));
    StreamResult result = stream->result();
    for (const json& chunk : result.chunks) errors += chunk.contains("error");
  }
  EXPECT_GE(errors, 1);
}

}  // namespace
}  // namespace tandem::router::testing
