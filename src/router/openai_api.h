// The OpenAI-compatible request and response formats of the router: parsing and validating
// `/v1/completions` and `/v1/chat/completions` bodies into one ApiRequest, and formatting
// responses, streaming chunks and error objects exactly as OpenAI clients expect them.
//
//   ApiLimits limits{.max_n = 16, .max_tokens = 4096};
//   ApiParseResult parsed = ParseApiRequest(ApiKind::kChat, body, limits);
//   if (auto* error = std::get_if<ApiError>(&parsed)) { reply(error->http_status,
//                                                              FormatError(*error)); }
//
// Pure functions: no I/O; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"

namespace tandem::router {

enum class ApiKind { kCompletion, kChat };

struct ChatMessage {
  std::string role;  // system, developer, user, assistant, tool
  std::string content;
};

struct ApiRequest {
  ApiKind kind = ApiKind::kCompletion;
  std::string model;
  // Completions: one entry per prompt (a batch). Either text or token ids per prompt.
  std::vector<std::string> prompts;
  std::vector<std::vector<int32_t>> prompt_token_ids;
  // Chat.
  std::vector<ChatMessage> messages;
  bool add_generation_prompt = true;

  int64_t max_tokens = -1;  // -1: until the context is full (chat default)
  int n = 1;
  bool stream = false;
  bool include_usage = false;
  double temperature = 1.0;
  double top_p = 1.0;
  int top_k = -1;  // extension (vLLM): -1 = off
  double min_p = 0.0;
  double presence_penalty = 0.0;
  double frequency_penalty = 0.0;
  double repetition_penalty = 1.0;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;  // extension
  bool ignore_eos = false;              // extension: generate exactly max_tokens
  int logprobs = -1;                    // -1: none; otherwise how many alternatives per token
  bool echo = false;                    // completions: prepend the prompt to the text
  std::string user;
};

// An error in the OpenAI error-object form, with the HTTP status to send it with.
struct ApiError {
  int http_status = 400;
  std::string type = "invalid_request_error";
  std::string message;
  std::string param;  // empty: null
  std::string code;   // empty: null
};

struct ApiLimits {
  int max_n = 16;
  int64_t max_tokens = 1 << 20;  // hard cap on max_tokens (the model's context)
  size_t max_prompts = 64;       // completions batch size
  size_t max_messages = 1024;
  size_t max_stop = 4;
  size_t max_stop_length = 256;
};

using ApiParseResult = std::variant<ApiRequest, ApiError>;

// Parses and validates a request body. `body` must be a JSON object; every field is checked
// for type and range, and unknown OpenAI features Tandem does not implement (tools, logit_bias,
// best_of > 1, suffix, non-text response formats, image inputs) are refused by name.
ApiParseResult ParseApiRequest(ApiKind kind, const std::string& body, const ApiLimits& limits);

// Maps a Status to the HTTP status and error type clients expect.
ApiError ErrorFromStatus(const absl::Status& status);

// {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
std::string FormatError(const ApiError& error);

struct TopLogprob {
  std::string token;
  double logprob = 0;
};

struct TokenLogprob {
  std::string token;
  double logprob = 0;
  std::vector<TopLogprob> top;
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
};

struct Choice {
  int index = 0;
  std::string text;
  std::string finish_reason;  // stop, length, abort (empty while streaming)
  std::vector<TokenLogprob> logprobs;
};

struct ResponseMeta {
  std::string id;  // cmpl-... or chatcmpl-...
  int64_t created = 0;
  std::string model;
};

// A whole (non-streaming) response body.
std::string FormatResponse(const ApiRequest& request, const ResponseMeta& meta,
                           const std::vector<Choice>& choices, const Usage& usage);

// One SSE `data:` payload of a streaming response (without the "data: " prefix). For chat, the
// first chunk of a choice carries the assistant role (`first_of_choice`).
std::string FormatStreamChunk(const ApiRequest& request, const ResponseMeta& meta,
                              const Choice& delta, bool first_of_choice);
// The final usage chunk when stream_options.include_usage is set: empty choices plus usage.
std::string FormatUsageChunk(const ApiRequest& request, const ResponseMeta& meta,
                             const Usage& usage);

}  // namespace tandem::router
