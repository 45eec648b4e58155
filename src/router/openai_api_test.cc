#include "router/openai_api.h"

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::router {
namespace {

using nlohmann::json;

ApiRequest MustParse(ApiKind kind, const std::string& body) {
  ApiParseResult result = ParseApiRequest(kind, body, ApiLimits{});
  if (auto* error = std::get_if<ApiError>(&result)) {
    ADD_FAILURE() << body << " -> " << error->message;
    return {};
  }
  return std::get<ApiRequest>(result);
}

TEST(OpenAiApiTest, ParsesChatWithEveryField) {
  ApiRequest r = MustParse(ApiKind::kChat, R"({
    "model": "demo", "messages": [{"role": "system", "content": "be brief"},
                                  {"role": "user", "content": [{"type": "text", "text": "hi "},
                                                               {"type": "text", "text": "there"}]}],
    "max_completion_tokens": 64, "n": 2, "stream": true, "stream_options": {"include_usage": true},
    "temperature": 0.5, "top_p": 0.9, "seed": 7, "stop": ["\n\n", "END"], "logprobs": true,
    "top_logprobs": 3, "presence_penalty": 0.5, "frequency_penalty": -0.5, "user": "u1",
    "top_k": 40, "min_p": 0.05, "response_format": {"type": "text"}})");
  EXPECT_EQ(r.model, "demo");
  ASSERT_EQ(r.messages.size(), 2u);
  EXPECT_EQ(r.messages[1].content, "hi there");
  EXPECT_EQ(r.max_tokens, 64);
  EXPECT_EQ(r.n, 2);
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_DOUBLE_EQ(r.temperature, 0.5);
  EXPECT_EQ(r.seed, 7u);
  EXPECT_EQ(r.stop.size(), 2u);
  EXPECT_EQ(r.logprobs, 3);
  EXPECT_EQ(r.top_k, 40);
}

TEST(OpenAiApiTest, ParsesCompletionPromptForms) {
  EXPECT_EQ(MustParse(ApiKind::kCompletion, R"({"model":"m","prompt":"hello"})").prompts,
            std::vector<std::string>{"hello"});
  EXPECT_EQ(MustParse(ApiKind::kCompletion, R"({"model":"m","prompt":"hello"})").max_tokens, 16);
  EXPECT_EQ(MustParse(ApiKind::kCompletion, R"({"model":"m","prompt":["a","b"]})").prompts.size(),
            2u);
  auto ids = MustParse(ApiKind::kCompletion, R"({"model":"m","prompt":[1,2,3],"logprobs":2})");
  EXPECT_EQ(ids.prompt_token_ids, (std::vector<std::vector<int32_t>>{{1, 2, 3}}));
  EXPECT_EQ(ids.logprobs, 2);
  EXPECT_EQ(MustParse(ApiKind::kCompletion, R"({"model":"m","prompt":[[1],[2,3]]})")
                .prompt_token_ids.size(),
            2u);
  EXPECT_EQ(
      MustParse(ApiKind::kCompletion, R"({"model":"m","prompt":"x","max_tokens":5.0})").max_tokens,
      5);
  EXPECT_EQ(MustParse(ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}]})")
                .max_tokens,
            -1);
}

struct BadCase {
  ApiKind kind;
  const char* body;
  const char* param;  // expected param ("" = null)
};

TEST(OpenAiApiTest, BadInputTableAnswers400WithParam) {
  const BadCase cases[] = {
      {ApiKind::kChat, "{not json", ""},
      {ApiKind::kChat, "[1,2]", ""},
      {ApiKind::kChat, R"({"messages":[{"role":"user","content":"x"}]})", "model"},
      {ApiKind::kChat, R"({"model":5,"messages":[]})", "model"},
      {ApiKind::kChat, R"({"model":"m"})", "messages"},
      {ApiKind::kChat, R"({"model":"m","messages":[]})", "messages"},
      {ApiKind::kChat, R"({"model":"m","messages":"hi"})", "messages"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"content":"x"}]})", "messages[0].role"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"wizard","content":"x"}]})",
       "messages[0].role"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user"}]})", "messages[0].content"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})",
       "messages[0].content"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":-1})", "max_tokens"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":0})",
       "max_tokens"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":99999999999})",
       "max_tokens"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":"5"})",
       "max_tokens"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":2.5})",
       "max_tokens"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":0})", "n"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"n":1000})", "n"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"temperature":3})",
       "temperature"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0})",
       "top_p"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":5})",
       "stop"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]})",
       "stop"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"stop":[""]})",
       "stop"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})",
       "stream_options"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"top_logprobs":2})",
       "top_logprobs"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{}]})",
       "tools"},
      {ApiKind::kChat,
       R"({"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}})",
       "response_format"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"seed":"7"})",
       "seed"},
      {ApiKind::kChat, R"({"model":"m","messages":[{"role":"user","content":"x"}],"stream":"yes"})",
       "stream"},
      {ApiKind::kCompletion, R"({"model":"m"})", "prompt"},
      {ApiKind::kCompletion, R"({"model":"m","prompt":[]})", "prompt"},
      {ApiKind::kCompletion, R"({"model":"m","prompt":[1,-2]})", "prompt"},
      {ApiKind::kCompletion, R"({"model":"m","prompt":{"a":1}})", "prompt"},
      {ApiKind::kCompletion, R"({"model":"m","prompt":"x","logprobs":50})", "logprobs"},
      {ApiKind::kCompletion, R"({"model":"m","prompt":"x","best_of":3})", "best_of"},
      {ApiKind::kCompletion, R"({"model":"m","prompt":"x","logit_bias":{"1":5}})", "logit_bias"},
      {ApiKind::kCompletion, R"({"model":"m","prompt":"x","echo":true,"stream":true})", "echo"},
  };
  for (const BadCase& c : cases) {
    ApiParseResult result = ParseApiRequest(c.kind, c.body, ApiLimits{});
    ASSERT_TRUE(std::holds_alternative<ApiError>(result)) << c.body;
    const ApiError& error = std::get<ApiError>(result);
    EXPECT_EQ(error.http_status, 400) << c.body;
    EXPECT_EQ(error.param, c.param) << c.body << " -> " << error.message;
    EXPECT_FALSE(error.message.empty());
    json body = json::parse(FormatError(error));
    EXPECT_EQ(body["error"]["type"], "invalid_request_error");
    EXPECT_EQ(body["error"]["message"], error.message);
  }
}

TEST(OpenAiApiTest, StatusCodesMapToHttp) {
  EXPECT_EQ(ErrorFromStatus(absl::ResourceExhaustedError("full")).http_status, 429);
  EXPECT_EQ(ErrorFromStatus(absl::UnavailableError("x")).http_status, 503);
  EXPECT_EQ(ErrorFromStatus(absl::NotFoundError("x")).http_status, 404);
  EXPECT_EQ(ErrorFromStatus(absl::UnauthenticatedError("x")).http_status, 401);
  EXPECT_EQ(ErrorFromStatus(absl::DeadlineExceededError("x")).http_status, 504);
  json body = json::parse(FormatError(ErrorFromStatus(absl::ResourceExhaustedError("full"))));
  EXPECT_EQ(body["error"]["code"], "rate_limit_exceeded");
  EXPECT_TRUE(body["error"]["param"].is_null());
}

TEST(OpenAiApiTest, FormatsChatResponseAndChunks) {
  ApiRequest request = MustParse(
      ApiKind::kChat,
      R"({"model":"demo","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":1,"stream":true,"stream_options":{"include_usage":true}})");
  ResponseMeta meta{"chatcmpl-1", 1700000000, "demo"};
  Choice choice{0, "Hello", "stop", {{"Hello", -0.1, {{"Hello", -0.1}}}}};
  json full = json::parse(FormatResponse(request, meta, {choice}, Usage{5, 1, 0}));
  EXPECT_EQ(full["object"], "chat.completion");
  EXPECT_EQ(full["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(full["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(full["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["token"], "Hello");
  EXPECT_EQ(full["usage"]["total_tokens"], 6);
  json first = json::parse(FormatStreamChunk(request, meta, Choice{0, "He", "", {}}, true));
  EXPECT_EQ(first["object"], "chat.completion.chunk");
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(first["choices"][0]["delta"]["content"], "He");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  EXPECT_TRUE(first["usage"].is_null());
  json last = json::parse(FormatStreamChunk(request, meta, Choice{0, "", "length", {}}, false));
  EXPECT_FALSE(last["choices"][0]["delta"].contains("content"));
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
  json usage = json::parse(FormatUsageChunk(request, meta, Usage{5, 2, 4}));
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
  EXPECT_EQ(usage["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
}

TEST(OpenAiApiTest, FormatsCompletionWithLogprobsAndInvalidUtf8) {
  ApiRequest request =
      MustParse(ApiKind::kCompletion, R"({"model":"m","prompt":"x","logprobs":1})");
  Choice choice{0, std::string("a\xff", 2), "length", {{"a", -1, {{"a", -1}}}, {"\xff", -2, {}}}};
  json body = json::parse(
      FormatResponse(request, ResponseMeta{"cmpl-1", 1, "m"}, {choice}, Usage{1, 2, 0}));
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["choices"][0]["logprobs"]["text_offset"][1], 1);
  EXPECT_EQ(body["choices"][0]["logprobs"]["top_logprobs"][0]["a"], -1);
}

}  // namespace
}  // namespace tandem::router
