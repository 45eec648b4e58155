#include "worker/protocol.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::worker {
namespace {

using nlohmann::json;

const RequestLimits kLimits{.vocab_size = 512, .max_context = 64, .max_timeout_ms = 60'000};

TEST(ProtocolTest, ParsesAGenerateRequest) {
  absl::StatusOr<GenerateParams> p = ParseGenerateRequest(
      R"({"request_id": "req-1", "prompt_ids": [1, 2, 3], "max_tokens": 8,
          "sampling": {"temperature": 0, "top_p": 1, "top_k": -1, "min_p": 0, "seed": 7,
                       "presence_penalty": 0, "frequency_penalty": 0, "repetition_penalty": 1},
          "stop_ids": [2], "ignore_eos": true, "logprobs": 2,
          "prefill": {"url": "http://127.0.0.1:8101", "timeout_ms": 3000}})",
      kLimits);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->request_id, "req-1");
  EXPECT_EQ(p->prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(p->max_tokens, 8);
  EXPECT_EQ(p->sampling.temperature, 0.0f);
  EXPECT_EQ(p->sampling.top_k, 0);
  EXPECT_EQ(*p->sampling.seed, 7u);
  EXPECT_TRUE(p->sampling.logprobs);
  EXPECT_EQ(p->sampling.top_logprobs, 2);
  EXPECT_EQ(p->stop_ids, (std::vector<int32_t>{2}));
  EXPECT_TRUE(p->ignore_eos);
  ASSERT_TRUE(p->prefill.has_value());
  EXPECT_EQ(p->prefill->url, "http://127.0.0.1:8101");
  EXPECT_EQ(p->prefill->timeout_ms, 3000);

  absl::StatusOr<GenerateParams> minimal = ParseGenerateRequest(R"({"prompt_ids": [5]})", kLimits);
  ASSERT_TRUE(minimal.ok());
  EXPECT_FALSE(minimal->request_id.empty());
  EXPECT_EQ(minimal->logprobs, -1);
  EXPECT_FALSE(minimal->sampling.logprobs);
  EXPECT_FALSE(minimal->prefill.has_value());
}

TEST(ProtocolTest, RefusesBadGenerateRequestsNamingTheField) {
  struct Case {
    const char* body;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {"[1]", "object"},
           {"{", "JSON"},
           {R"({})", "prompt_ids"},
           {R"({"prompt_ids": []})", "prompt_ids"},
           {R"({"prompt_ids": "1 2"})", "prompt_ids"},
           {R"({"prompt_ids": [1, 512]})", "prompt_ids[1]"},
           {R"({"prompt_ids": [-1]})", "prompt_ids[0]"},
           {R"({"prompt_ids": [1.5]})", "prompt_ids[0]"},
           {R"({"prompt_ids": [1], "max_tokens": 0})", "max_tokens"},
           {R"({"prompt_ids": [1], "max_tokens": "8"})", "max_tokens"},
           {R"({"prompt_ids": [1], "sampling": {"temperature": -1}})", "temperature"},
           {R"({"prompt_ids": [1], "sampling": {"top_p": 0}})", "top_p"},
           {R"({"prompt_ids": [1], "logprobs": 99})", "logprobs"},
           {R"({"prompt_ids": [1], "stop_ids": [9999]})", "stop_ids[0]"},
           {R"({"prompt_ids": [1], "ignore_eos": 1})", "ignore_eos"},
           {R"({"prompt_ids": [1], "prefill": {"url": "ftp://x"}})", "prefill.url"},
           {R"({"prompt_ids": [1], "prefill": {"url": "http://x", "timeout_ms": 0}})",
            "timeout_ms"},
           {R"({"prompt_ids": [1], "request_id": 5})", "request_id"},
       }) {
    absl::StatusOr<GenerateParams> p = ParseGenerateRequest(c.body, kLimits);
    ASSERT_FALSE(p.ok()) << c.body;
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << c.body;
    EXPECT_NE(p.status().message().find(c.field), std::string::npos)
        << c.body << " -> " << p.status();
  }
  // A prompt that leaves no room in the context.
  std::vector<int32_t> long_prompt(64, 1);
  absl::StatusOr<GenerateParams> p =
      ParseGenerateRequest(json({{"prompt_ids", long_prompt}}).dump(), kLimits);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("context"), std::string::npos);
  long_prompt.resize(10000, 1);
  EXPECT_FALSE(ParseGenerateRequest(json({{"prompt_ids", long_prompt}}).dump(), kLimits).ok());
}

TEST(ProtocolTest, PrefillRequestsRoundTrip) {
  PrefillParams p;
  p.request_id = "req-9";
  p.prompt = {4, 5, 6, 7};
  p.sampling.temperature = 0;
  p.sampling.seed = 3;
  p.logprobs = 1;
  p.kv = {.host = "127.0.0.1",
          .port = 9101,
          .epoch = 0x9f0c000000000001,
          .reservation = 0x51aa,
          .first_block = 1,
          .num_blocks = 2};
  p.timeout_ms = 5000;
  absl::StatusOr<PrefillParams> back = ParsePrefillRequest(PrefillRequestJson(p), kLimits);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->request_id, p.request_id);
  EXPECT_EQ(back->prompt, p.prompt);
  EXPECT_EQ(back->kv.host, "127.0.0.1");
  EXPECT_EQ(back->kv.port, 9101);
  EXPECT_EQ(back->kv.epoch, p.kv.epoch);
  EXPECT_EQ(back->kv.reservation, p.kv.reservation);
  EXPECT_EQ(back->kv.first_block, 1);
  EXPECT_EQ(back->kv.num_blocks, 2);
  EXPECT_EQ(back->timeout_ms, 5000);
  EXPECT_EQ(back->logprobs, 1);
  EXPECT_EQ(*back->sampling.seed, 3u);
  EXPECT_EQ(json::parse(PrefillRequestJson(p))["kv"]["epoch"], "9f0c000000000001");

  for (const char* bad : {
           R"({"prompt_ids": [1]})",
           R"({"prompt_ids": [1], "kv": {"address": "x", "epoch": "1", "reservation": "2",
               "first_block": 0, "num_blocks": 1}})",
           R"({"prompt_ids": [1], "kv": {"address": "h:1", "epoch": "zz", "reservation": "2",
               "first_block": 0, "num_blocks": 1}})",
           R"({"prompt_ids": [1], "kv": {"address": "h:1", "epoch": "1", "reservation": "2",
               "first_block": 0, "num_blocks": 0}})",
           R"({"prompt_ids": [1], "kv": {"address": "h:1", "epoch": "1", "reservation": "2",
               "num_blocks": 1}})",
       }) {
    EXPECT_FALSE(ParsePrefillRequest(bad, kLimits).ok()) << bad;
  }
}

TEST(ProtocolTest, PrefillAnswersRoundTrip) {
  PrefillAnswer a;
  a.first_token = 42;
  a.logprob = -0.25f;
  a.top_logprobs = {{42, -0.25f}, {7, -2.0f}};
  a.cached_tokens = 64;
  a.computed_tokens = 192;
  a.transferred_blocks = 12;
  a.transport = "shm";
  a.timing = {.queue_ms = 1, .prefill_ms = 12, .transfer_ms = 1.5};
  absl::StatusOr<PrefillAnswer> back = ParsePrefillAnswer(PrefillAnswerJson(a));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->first_token, 42);
  EXPECT_FLOAT_EQ(back->logprob, -0.25f);
  ASSERT_EQ(back->top_logprobs.size(), 2u);
  EXPECT_EQ(back->top_logprobs[1].token, 7);
  EXPECT_EQ(back->cached_tokens, 64);
  EXPECT_EQ(back->transferred_blocks, 12);
  EXPECT_EQ(back->transport, "shm");
  EXPECT_DOUBLE_EQ(back->timing.transfer_ms, 1.5);
  EXPECT_FALSE(ParsePrefillAnswer(R"({"logprob": 0})").ok());
}

TEST(ProtocolTest, EncodesEvents) {
  engine::SampledToken t{.token = 9, .logprob = -0.5f, .top = {{9, -0.5f}, {3, -1.0f}}};
  EXPECT_EQ(json::parse(TokenEventJson(t, -1)), json({{"token", 9}}));
  json with = json::parse(TokenEventJson(t, 2));
  EXPECT_EQ(with["logprob"], -0.5);
  EXPECT_EQ(with["top_logprobs"], json::array({json::array({9, -0.5}), json::array({3, -1.0})}));
  EXPECT_FALSE(json::parse(TokenEventJson(t, 0)).contains("top_logprobs"));

  json finish = json::parse(FinishEventJson({.finish_reason = "length",
                                             .prompt_tokens = 3,
                                             .completion_tokens = 4,
                                             .cached_tokens = 1,
                                             .prefill = "remote"}));
  EXPECT_EQ(finish["finish_reason"], "length");
  EXPECT_EQ(finish["usage"]["completion_tokens"], 4);
  EXPECT_EQ(finish["timing"]["prefill"], "remote");
  json error = json::parse(ErrorJson("invalid_argument", "bad \xff"));
  EXPECT_EQ(error["error"]["code"], "invalid_argument");
  EXPECT_EQ(ErrorMessageFromBody(ErrorJson("kv_refused", "stale epoch")),
            "kv_refused: stale epoch");
}

TEST(ProtocolTest, HexIdsAndStatusCodes) {
  EXPECT_EQ(HexId(0x1f), "000000000000001f");
  EXPECT_EQ(*ParseHexId("000000000000001F", "x"), 0x1fu);
  EXPECT_FALSE(ParseHexId("", "x").ok());
  EXPECT_FALSE(ParseHexId("12345678901234567", "x").ok());
  EXPECT_EQ(HttpStatusFor(absl::InvalidArgumentError("")), 400);
  EXPECT_EQ(HttpStatusFor(absl::ResourceExhaustedError("")), 429);
  EXPECT_EQ(HttpStatusFor(absl::UnavailableError("")), 503);
  EXPECT_EQ(HttpStatusFor(absl::FailedPreconditionError("")), 409);
  EXPECT_EQ(HttpStatusFor(absl::DeadlineExceededError("")), 504);
  EXPECT_EQ(ErrorCodeFor(absl::NotFoundError("")), "not_found");
}

}  // namespace
}  // namespace tandem::worker
