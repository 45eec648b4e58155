#include "router/openai_api.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace tandem::router {
namespace {

using nlohmann::json;

ApiError Invalid(const std::string& param, const std::string& message) {
  ApiError error;
  error.http_status = 400;
  error.message = message;
  error.param = param;
  return error;
}

const char* TypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "an integer";
    case json::value_t::number_float:
      return "a number";
    case json::value_t::string:
      return "a string";
    case json::value_t::array:
      return "an array";
    case json::value_t::object:
      return "an object";
    default:
      return "an unsupported value";
  }
}

ApiError WrongType(const std::string& param, const json& value, const char* expected) {
  return Invalid(param,
                 absl::StrCat("'", param, "' must be ", expected, ", got ", TypeName(value)));
}

// Reads an optional number field within [low, high]. Returns an error message or nullopt.
std::optional<ApiError> Number(const json& body, const char* name, double low, double high,
                               double* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number()) return WrongType(name, *it, "a number");
  double value = it->get<double>();
  if (!std::isfinite(value) || value < low || value > high) {
    return Invalid(name, absl::StrCat("'", name, "' must be between ", low, " and ", high, ", got ",
                                      it->dump()));
  }
  *out = value;
  return std::nullopt;
}

std::optional<ApiError> Integer(const json& body, const char* name, int64_t low, int64_t high,
                                int64_t* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer() && !it->is_number_unsigned()) {
    // 5.0 is accepted as 5; 5.5 is not.
    if (it->is_number_float() && std::floor(it->get<double>()) == it->get<double>() &&
        std::fabs(it->get<double>()) < 1e15) {
      *out = static_cast<int64_t>(it->get<double>());
    } else {
      return WrongType(name, *it, "an integer");
    }
  } else if (it->is_number_unsigned() &&
             it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    *out = std::numeric_limits<int64_t>::max();
  } else {
    *out = it->get<int64_t>();
  }
  if (*out < low || *out > high) {
    return Invalid(name, absl::StrCat("'", name, "' must be between ", low, " and ", high, ", got ",
                                      it->dump()));
  }
  return std::nullopt;
}

std::optional<ApiError> Boolean(const json& body, const char* name, bool* out) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return std::nullopt;
  if (!it->is_boolean()) return WrongType(name, *it, "a boolean");
  *out = it->get<bool>();
  return std::nullopt;
}

std::optional<ApiError> ParseStop(const json& body, const ApiLimits& limits, ApiRequest* out) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return std::nullopt;
  std::vector<std::string> stops;
  if (it->is_string()) {
    stops.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    for (const json& item : *it) {
      if (!item.is_string()) return WrongType("stop", item, "a string or an array of strings");
      stops.push_back(item.get<std::string>());
    }
  } else {
    return WrongType("stop", *it, "a string or an array of strings");
  }
  if (stops.size() > limits.max_stop) {
    return Invalid("stop", absl::StrCat("'stop' holds ", stops.size(), " sequences; at most ",
                                        limits.max_stop, " are allowed"));
  }
  for (const std::string& stop : stops) {
    if (stop.empty()) return Invalid("stop", "'stop' sequences must not be empty");
    if (stop.size() > limits.max_stop_length) {
      return Invalid("stop", absl::StrCat("a 'stop' sequence is longer than ",
                                          limits.max_stop_length, " bytes"));
    }
  }
  out->stop = std::move(stops);
  return std::nullopt;
}

std::optional<ApiError> ParseTokenIds(const json& value, const std::string& param,
                                      std::vector<int32_t>* out) {
  for (const json& item : value) {
    if (!item.is_number_integer() && !item.is_number_unsigned()) {
      return WrongType(param, item, "an array of token ids");
    }
    int64_t id = item.get<int64_t>();
    if (id < 0 || id > std::numeric_limits<int32_t>::max()) {
      return Invalid(param, absl::StrCat("token id ", id, " in '", param, "' is out of range"));
    }
    out->push_back(static_cast<int32_t>(id));
  }
  return std::nullopt;
}

std::optional<ApiError> ParsePrompt(const json& body, const ApiLimits& limits, ApiRequest* out) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) {
    return Invalid("prompt", "'prompt' is required");
  }
  const json& prompt = *it;
  if (prompt.is_string()) {
    out->prompts.push_back(prompt.get<std::string>());
  } else if (prompt.is_array()) {
    if (prompt.empty()) return Invalid("prompt", "'prompt' must not be an empty array");
    if (prompt[0].is_string()) {
      for (const json& item : prompt) {
        if (!item.is_string()) return WrongType("prompt", item, "an array of strings");
        out->prompts.push_back(item.get<std::string>());
      }
    } else if (prompt[0].is_number()) {
      out->prompt_token_ids.emplace_back();
      if (auto error = ParseTokenIds(prompt, "prompt", &out->prompt_token_ids.back())) {
        return error;
      }
    } else if (prompt[0].is_array()) {
      for (const json& item : prompt) {
        if (!item.is_array() || item.empty()) {
          return WrongType("prompt", item, "an array of non-empty token id arrays");
        }
        out->prompt_token_ids.emplace_back();
        if (auto error = ParseTokenIds(item, "prompt", &out->prompt_token_ids.back())) {
          return error;
        }
      }
    } else {
      return WrongType("prompt", prompt[0], "a string, an array of strings or token ids");
    }
  } else {
    return WrongType("prompt", prompt, "a string, an array of strings or token ids");
  }
  size_t count = out->prompts.size() + out->prompt_token_ids.size();
  if (count > limits.max_prompts) {
    return Invalid("prompt", absl::StrCat("'prompt' holds ", count, " prompts; at most ",
                                          limits.max_prompts, " per request"));
  }
  return std::nullopt;
}

std::optional<ApiError> ParseMessages(const json& body, const ApiLimits& limits, ApiRequest* out) {
  auto it = body.find("messages");
  if (it == body.end() || it->is_null()) return Invalid("messages", "'messages' is required");
  if (!it->is_array()) return WrongType("messages", *it, "an array");
  if (it->empty()) return Invalid("messages", "'messages' must hold at least one message");
  if (it->size() > limits.max_messages) {
    return Invalid("messages", absl::StrCat("at most ", limits.max_messages, " messages"));
  }
  for (size_t i = 0; i < it->size(); ++i) {
    const json& message = (*it)[i];
    std::string param = absl::StrCat("messages[", i, "]");
    if (!message.is_object()) return WrongType(param, message, "an object");
    auto role = message.find("role");
    if (role == message.end() || !role->is_string()) {
      return Invalid(param + ".role", absl::StrCat("'", param, ".role' is required (a string)"));
    }
    std::string role_name = role->get<std::string>();
    if (role_name != "system" && role_name != "developer" && role_name != "user" &&
        role_name != "assistant" && role_name != "tool") {
      return Invalid(param + ".role",
                     absl::StrCat("role '", role_name,
                                  "' is not known (allowed: system, developer, user, assistant, "
                                  "tool)"));
    }
    if (message.contains("tool_calls") && !message["tool_calls"].is_null()) {
      return Invalid(param + ".tool_calls", "tool calls are not supported");
    }
    ChatMessage parsed;
    parsed.role = role_name;
    auto content = message.find("content");
    if (content == message.end() || content->is_null()) {
      return Invalid(param + ".content", absl::StrCat("'", param, ".content' is required"));
    }
    if (content->is_string()) {
      parsed.content = content->get<std::string>();
    } else if (content->is_array()) {
      for (const json& part : *content) {
        if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
          return Invalid(param + ".content", "content parts must be objects with a 'type'");
        }
        std::string type = part["type"].get<std::string>();
        if (type != "text") {
          return Invalid(param + ".content",
                         absl::StrCat("content part type '", type,
                                      "' is not supported (this model reads text only)"));
        }
        if (!part.contains("text") || !part["text"].is_string()) {
          return Invalid(param + ".content", "a text part needs a string 'text'");
        }
        parsed.content += part["text"].get<std::string>();
      }
    } else {
      return WrongType(param + ".content", *content, "a string or an array of content parts");
    }
    out->messages.push_back(std::move(parsed));
  }
  return std::nullopt;
}

}  // namespace

ApiParseResult ParseApiRequest(ApiKind kind, const std::string& body, const ApiLimits& limits) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return Invalid("", "the request body is not valid JSON");
  }
  if (!parsed.is_object()) return Invalid("", "the request body must be a JSON object");
  ApiRequest request;
  request.kind = kind;

  auto model = parsed.find("model");
  if (model == parsed.end() || !model->is_string() || model->get<std::string>().empty()) {
    return Invalid("model", "'model' is required (a model name from GET /v1/models)");
  }
  request.model = model->get<std::string>();

  for (const char* unsupported :
       {"tools", "functions", "logit_bias", "suffix", "audio", "prediction"}) {
    auto it = parsed.find(unsupported);
    if (it != parsed.end() && !it->is_null() && !(it->is_object() && it->empty()) &&
        !(it->is_array() && it->empty())) {
      return Invalid(unsupported, absl::StrCat("'", unsupported, "' is not supported"));
    }
  }
  if (auto it = parsed.find("response_format"); it != parsed.end() && !it->is_null()) {
    if (!it->is_object() || it->value("type", "") != "text") {
      return Invalid("response_format", "only response_format {\"type\": \"text\"} is supported");
    }
  }

  std::optional<ApiError> error;
  if (kind == ApiKind::kCompletion) {
    error = ParsePrompt(parsed, limits, &request);
    if (!error) error = Boolean(parsed, "echo", &request.echo);
    int64_t best_of = 1;
    if (!error) error = Integer(parsed, "best_of", 1, limits.max_n, &best_of);
    if (!error && best_of > 1) error = Invalid("best_of", "'best_of' > 1 is not supported");
  } else {
    error = ParseMessages(parsed, limits, &request);
    if (!error) error = Boolean(parsed, "add_generation_prompt", &request.add_generation_prompt);
  }
  if (error) return *error;

  // max_tokens: completions default to 16 (as OpenAI); chat runs until the context is full.
  request.max_tokens = kind == ApiKind::kCompletion ? 16 : -1;
  for (const char* name : {"max_tokens", "max_completion_tokens"}) {
    int64_t value = request.max_tokens;
    if (auto e = Integer(parsed, name, 1, limits.max_tokens, &value)) return *e;
    request.max_tokens = value;
  }
  int64_t n = 1;
  if (auto e = Integer(parsed, "n", 1, limits.max_n, &n)) return *e;
  request.n = static_cast<int>(n);
  if (auto e = Boolean(parsed, "stream", &request.stream)) return *e;
  if (auto it = parsed.find("stream_options"); it != parsed.end() && !it->is_null()) {
    if (!it->is_object()) return WrongType("stream_options", *it, "an object");
    if (!request.stream) {
      return Invalid("stream_options", "'stream_options' is only allowed when 'stream' is true");
    }
    if (auto e = Boolean(*it, "include_usage", &request.include_usage)) {
      e->param = "stream_options.include_usage";
      return *e;
    }
  }
  if (auto e = Number(parsed, "temperature", 0, 2, &request.temperature)) return *e;
  if (auto e = Number(parsed, "top_p", 0, 1, &request.top_p)) return *e;
  if (request.top_p == 0) return Invalid("top_p", "'top_p' must be greater than 0");
  int64_t top_k = -1;
  if (auto e = Integer(parsed, "top_k", -1, 1 << 20, &top_k)) return *e;
  if (top_k == 0) return Invalid("top_k", "'top_k' must be -1 (off) or at least 1");
  request.top_k = static_cast<int>(top_k);
  if (auto e = Number(parsed, "min_p", 0, 1, &request.min_p)) return *e;
  if (auto e = Number(parsed, "presence_penalty", -2, 2, &request.presence_penalty)) return *e;
  if (auto e = Number(parsed, "frequency_penalty", -2, 2, &request.frequency_penalty)) return *e;
  if (auto e = Number(parsed, "repetition_penalty", 0.01, 10, &request.repetition_penalty)) {
    return *e;
  }
  if (auto it = parsed.find("seed"); it != parsed.end() && !it->is_null()) {
    if (!it->is_number_integer() && !it->is_number_unsigned()) {
      return WrongType("seed", *it, "an integer");
    }
    request.seed =
        it->is_number_unsigned() ? it->get<uint64_t>() : static_cast<uint64_t>(it->get<int64_t>());
  }
  if (auto e = ParseStop(parsed, limits, &request)) return *e;
  if (auto it = parsed.find("stop_token_ids"); it != parsed.end() && !it->is_null()) {
    if (!it->is_array()) return WrongType("stop_token_ids", *it, "an array of token ids");
    if (auto e = ParseTokenIds(*it, "stop_token_ids", &request.stop_token_ids)) return *e;
  }
  if (auto e = Boolean(parsed, "ignore_eos", &request.ignore_eos)) return *e;
  if (kind == ApiKind::kCompletion) {
    int64_t logprobs = -1;
    if (auto e = Integer(parsed, "logprobs", 0, 20, &logprobs)) return *e;
    request.logprobs = static_cast<int>(logprobs);
  } else {
    bool logprobs = false;
    if (auto e = Boolean(parsed, "logprobs", &logprobs)) return *e;
    int64_t top = 0;
    if (auto e = Integer(parsed, "top_logprobs", 0, 20, &top)) return *e;
    if (parsed.contains("top_logprobs") && !parsed["top_logprobs"].is_null() && !logprobs) {
      return Invalid("top_logprobs", "'top_logprobs' requires 'logprobs': true");
    }
    request.logprobs = logprobs ? static_cast<int>(top) : -1;
  }
  if (auto it = parsed.find("user"); it != parsed.end() && !it->is_null()) {
    if (!it->is_string()) return WrongType("user", *it, "a string");
    request.user = it->get<std::string>();
  }
  if (request.echo && request.stream) {
    return Invalid("echo", "'echo' with 'stream' is not supported");
  }
  return request;
}

ApiError ErrorFromStatus(const absl::Status& status) {
  ApiError error;
  error.message = std::string(status.message());
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      error.http_status = 400;
      break;
    case absl::StatusCode::kNotFound:
      error.http_status = 404;
      error.code = "model_not_found";
      break;
    case absl::StatusCode::kUnauthenticated:
      error.http_status = 401;
      error.type = "authentication_error";
      error.code = "invalid_api_key";
      break;
    case absl::StatusCode::kPermissionDenied:
      error.http_status = 403;
      error.type = "permission_error";
      break;
    case absl::StatusCode::kResourceExhausted:
      error.http_status = 429;
      error.type = "rate_limit_error";
      error.code = "rate_limit_exceeded";
      break;
    case absl::StatusCode::kUnavailable:
      error.http_status = 503;
      error.type = "server_error";
      error.code = "service_unavailable";
      break;
    case absl::StatusCode::kDeadlineExceeded:
      error.http_status = 504;
      error.type = "server_error";
      error.code = "timeout";
      break;
    case absl::StatusCode::kCancelled:
      error.http_status = 499;
      error.type = "server_error";
      break;
    default:
      error.http_status = 500;
      error.type = "server_error";
      break;
  }
  return error;
}

std::string FormatError(const ApiError& error) {
  json body = {{"error",
                {{"message", error.message},
                 {"type", error.type},
                 {"param", error.param.empty() ? json(nullptr) : json(error.param)},
                 {"code", error.code.empty() ? json(nullptr) : json(error.code)}}}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

namespace {

json Bytes(const std::string& token) {
  json bytes = json::array();
  for (unsigned char c : token) bytes.push_back(static_cast<int>(c));
  return bytes;
}

json ChatLogprobs(const std::vector<TokenLogprob>& logprobs) {
  json content = json::array();
  for (const TokenLogprob& lp : logprobs) {
    json top = json::array();
    for (const TopLogprob& t : lp.top) {
      top.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", Bytes(t.token)}});
    }
    content.push_back({{"token", lp.token},
                       {"logprob", lp.logprob},
                       {"bytes", Bytes(lp.token)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}};
}

json CompletionLogprobs(const std::vector<TokenLogprob>& logprobs, size_t text_offset) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const TokenLogprob& lp : logprobs) {
    tokens.push_back(lp.token);
    token_logprobs.push_back(lp.logprob);
    json alternatives = json::object();
    for (const TopLogprob& t : lp.top) alternatives[t.token] = t.logprob;
    top.push_back(alternatives);
    offsets.push_back(text_offset);
    text_offset += lp.token.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json UsageJson(const Usage& usage) {
  json out = {{"prompt_tokens", usage.prompt_tokens},
              {"completion_tokens", usage.completion_tokens},
              {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
  if (usage.cached_tokens > 0) {
    out["prompt_tokens_details"] = {{"cached_tokens", usage.cached_tokens}};
  }
  return out;
}

json FinishReason(const std::string& reason) {
  return reason.empty() ? json(nullptr) : json(reason);
}

std::string Dump(const json& value) {
  return value.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

std::string FormatResponse(const ApiRequest& request, const ResponseMeta& meta,
                           const std::vector<Choice>& choices, const Usage& usage) {
  json out_choices = json::array();
  for (const Choice& choice : choices) {
    if (request.kind == ApiKind::kChat) {
      out_choices.push_back(
          {{"index", choice.index},
           {"message", {{"role", "assistant"}, {"content", choice.text}}},
           {"logprobs", request.logprobs >= 0 ? ChatLogprobs(choice.logprobs) : json(nullptr)},
           {"finish_reason", FinishReason(choice.finish_reason)}});
    } else {
      out_choices.push_back(
          {{"index", choice.index},
           {"text", choice.text},
           {"logprobs",
            request.logprobs >= 0 ? CompletionLogprobs(choice.logprobs, 0) : json(nullptr)},
           {"finish_reason", FinishReason(choice.finish_reason)}});
    }
  }
  json body = {{"id", meta.id},
               {"object", request.kind == ApiKind::kChat ? "chat.completion" : "text_completion"},
               {"created", meta.created},
               {"model", meta.model},
               {"choices", out_choices},
               {"usage", UsageJson(usage)}};
  return Dump(body);
}

std::string FormatStreamChunk(const ApiRequest& request, const ResponseMeta& meta,
                              const Choice& delta, bool first_of_choice) {
  json choice;
  if (request.kind == ApiKind::kChat) {
    json d = json::object();
    if (first_of_choice) d["role"] = "assistant";
    if (!delta.text.empty() || first_of_choice) d["content"] = delta.text;
    choice = {{"index", delta.index},
              {"delta", d},
              {"logprobs", request.logprobs >= 0 ? ChatLogprobs(delta.logprobs) : json(nullptr)},
              {"finish_reason", FinishReason(delta.finish_reason)}};
  } else {
    choice = {
        {"index", delta.index},
        {"text", delta.text},
        {"logprobs", request.logprobs >= 0 ? CompletionLogprobs(delta.logprobs, 0) : json(nullptr)},
        {"finish_reason", FinishReason(delta.finish_reason)}};
  }
  json body = {
      {"id", meta.id},
      {"object", request.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
      {"created", meta.created},
      {"model", meta.model},
      {"choices", json::array({choice})}};
  if (request.include_usage) body["usage"] = nullptr;
  return Dump(body);
}

std::string FormatUsageChunk(const ApiRequest& request, const ResponseMeta& meta,
                             const Usage& usage) {
  json body = {
      {"id", meta.id},
      {"object", request.kind == ApiKind::kChat ? "chat.completion.chunk" : "text_completion"},
      {"created", meta.created},
      {"model", meta.model},
      {"choices", json::array()},
      {"usage", UsageJson(usage)}};
  return Dump(body);
}

}  // namespace tandem::router
