#include "worker/protocol.h"

#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/status.h"
#include "kv/auth.h"
#include "nlohmann/json.hpp"
#include "worker/options.h"

namespace tandem::worker {
namespace {

using nlohmann::json;

constexpr size_t kMaxRequestIdBytes = 256;
constexpr size_t kMaxStopIds = 256;
constexpr int64_t kMaxTokensLimit = 1 << 20;

absl::Status Bad(absl::string_view field, absl::string_view expected) {
  return absl::InvalidArgumentError(absl::StrCat("'", field, "' ", expected));
}

absl::StatusOr<json> ParseObject(absl::string_view body) {
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError("the body is not valid JSON");
  if (!parsed.is_object()) return absl::InvalidArgumentError("the body must be a JSON object");
  return parsed;
}

const json* Find(const json& object, absl::string_view key) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::Status ReadInt(const json& object, absl::string_view key, int64_t low, int64_t high,
                     int64_t* out) {
  const json* value = Find(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number_integer()) return Bad(key, "must be an integer");
  int64_t v = value->is_number_unsigned()
                  ? static_cast<int64_t>(std::min<uint64_t>(value->get<uint64_t>(), INT64_MAX))
                  : value->get<int64_t>();
  if (v < low || v > high) {
    return Bad(key, absl::StrCat("must be in ", low, "..", high, ", got ", v));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status ReadFloat(const json& object, absl::string_view key, float* out) {
  const json* value = Find(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_number()) return Bad(key, "must be a number");
  double v = value->get<double>();
  if (!std::isfinite(v)) return Bad(key, "must be finite");
  *out = static_cast<float>(v);
  return absl::OkStatus();
}

absl::Status ReadString(const json& object, absl::string_view key, size_t max_bytes,
                        std::string* out) {
  const json* value = Find(object, key);
  if (value == nullptr) return absl::OkStatus();
  if (!value->is_string()) return Bad(key, "must be a string");
  const std::string& text = value->get_ref<const std::string&>();
  if (text.size() > max_bytes)
    return Bad(key, absl::StrCat("is longer than ", max_bytes, " bytes"));
  *out = text;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> ReadIds(const json& object, absl::string_view key,
                                             const RequestLimits& limits, size_t max_count) {
  const json* value = Find(object, key);
  if (value == nullptr) return Bad(key, "is required (an array of token ids)");
  if (!value->is_array()) return Bad(key, "must be an array of token ids");
  if (value->size() > max_count) {
    return Bad(key, absl::StrCat("holds ", value->size(), " ids; at most ", max_count,
                                 " fit (the context is ", limits.max_context, " tokens)"));
  }
  std::vector<int32_t> ids;
  ids.reserve(value->size());
  for (size_t i = 0; i < value->size(); ++i) {
    const json& item = (*value)[i];
    if (!item.is_number_integer()) return Bad(absl::StrCat(key, "[", i, "]"), "must be an integer");
    int64_t id = item.is_number_unsigned()
                     ? static_cast<int64_t>(std::min<uint64_t>(item.get<uint64_t>(), INT64_MAX))
                     : item.get<int64_t>();
    if (id < 0 || id >= limits.vocab_size) {
      return Bad(
          absl::StrCat(key, "[", i, "]"),
          absl::StrCat("= ", id, " is outside the vocabulary (0..", limits.vocab_size - 1, ")"));
    }
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

absl::StatusOr<std::vector<int32_t>> ReadPrompt(const json& object, const RequestLimits& limits) {
  // One more than fits, so the message below says what the limit is.
  TANDEM_ASSIGN_OR_RETURN(std::vector<int32_t> prompt,
                          ReadIds(object, "prompt_ids", limits, limits.max_context));
  if (prompt.empty()) return Bad("prompt_ids", "must hold at least one token id");
  if (static_cast<int64_t>(prompt.size()) >= limits.max_context) {
    return Bad("prompt_ids",
               absl::StrCat("holds ", prompt.size(), " tokens; the context holds ",
                            limits.max_context, " (prompt plus at least one generated token)"));
  }
  return prompt;
}

absl::StatusOr<engine::SamplingParams> ReadSampling(const json& object, int logprobs) {
  engine::SamplingParams sampling;
  sampling.temperature = 1.0f;
  const json* value = Find(object, "sampling");
  if (value != nullptr) {
    if (!value->is_object()) return Bad("sampling", "must be an object");
    const json& s = *value;
    TANDEM_RETURN_IF_ERROR(ReadFloat(s, "temperature", &sampling.temperature));
    TANDEM_RETURN_IF_ERROR(ReadFloat(s, "top_p", &sampling.top_p));
    int64_t top_k = 0;
    TANDEM_RETURN_IF_ERROR(ReadInt(s, "top_k", -1, 1 << 30, &top_k));
    sampling.top_k = top_k < 0 ? 0 : static_cast<int32_t>(top_k);
    TANDEM_RETURN_IF_ERROR(ReadFloat(s, "min_p", &sampling.min_p));
    TANDEM_RETURN_IF_ERROR(ReadFloat(s, "presence_penalty", &sampling.presence_penalty));
    TANDEM_RETURN_IF_ERROR(ReadFloat(s, "frequency_penalty", &sampling.frequency_penalty));
    TANDEM_RETURN_IF_ERROR(ReadFloat(s, "repetition_penalty", &sampling.repetition_penalty));
    if (const json* seed = Find(s, "seed"); seed != nullptr) {
      if (!seed->is_number_integer()) return Bad("sampling.seed", "must be an integer");
      sampling.seed = seed->is_number_unsigned() ? seed->get<uint64_t>()
                                                 : static_cast<uint64_t>(seed->get<int64_t>());
    }
  }
  sampling.logprobs = logprobs >= 0;
  sampling.top_logprobs = std::max(0, logprobs);
  absl::Status valid = engine::ValidateSamplingParams(sampling);
  if (!valid.ok()) return Annotate(valid, "sampling");
  return sampling;
}

absl::StatusOr<int> ReadLogprobs(const json& object) {
  int64_t logprobs = -1;
  TANDEM_RETURN_IF_ERROR(ReadInt(object, "logprobs", -1, engine::kMaxTopLogprobs, &logprobs));
  return static_cast<int>(logprobs);
}

std::string NewRequestId() { return absl::StrCat("w-", absl::Hex(kv::RandomU64())); }

absl::Status ReadRequestId(const json& object, std::string* out) {
  TANDEM_RETURN_IF_ERROR(ReadString(object, "request_id", kMaxRequestIdBytes, out));
  for (char c : *out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return Bad("request_id", "must not hold control characters");
    }
  }
  if (out->empty()) *out = NewRequestId();
  return absl::OkStatus();
}

json TopJson(const std::vector<engine::TokenLogprob>& top) {
  json out = json::array();
  for (const auto& t : top) out.push_back(json::array({t.token, t.logprob}));
  return out;
}

}  // namespace

std::string HexId(uint64_t value) { return absl::StrFormat("%016x", value); }

absl::StatusOr<uint64_t> ParseHexId(absl::string_view text, absl::string_view field) {
  if (text.empty() || text.size() > 16) {
    return Bad(field, absl::StrCat("must be 1 to 16 hex digits, got '", text.substr(0, 40), "'"));
  }
  uint64_t value = 0;
  for (char c : text) {
    int digit;
    if (c >= '0' && c <= '9') {
      digit = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      digit = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      digit = c - 'A' + 10;
    } else {
      return Bad(field, absl::StrCat("must be hex digits, got '", text.substr(0, 40), "'"));
    }
    value = (value << 4) | static_cast<uint64_t>(digit);
  }
  return value;
}

absl::StatusOr<GenerateParams> ParseGenerateRequest(absl::string_view body,
                                                    const RequestLimits& limits) {
  TANDEM_ASSIGN_OR_RETURN(json object, ParseObject(body));
  GenerateParams params;
  TANDEM_RETURN_IF_ERROR(ReadRequestId(object, &params.request_id));
  TANDEM_ASSIGN_OR_RETURN(params.prompt, ReadPrompt(object, limits));
  TANDEM_RETURN_IF_ERROR(ReadInt(object, "max_tokens", 1, kMaxTokensLimit, &params.max_tokens));
  TANDEM_ASSIGN_OR_RETURN(params.logprobs, ReadLogprobs(object));
  TANDEM_ASSIGN_OR_RETURN(params.sampling, ReadSampling(object, params.logprobs));
  if (Find(object, "stop_ids") != nullptr) {
    TANDEM_ASSIGN_OR_RETURN(params.stop_ids, ReadIds(object, "stop_ids", limits, kMaxStopIds));
  }
  if (const json* ignore = Find(object, "ignore_eos"); ignore != nullptr) {
    if (!ignore->is_boolean()) return Bad("ignore_eos", "must be true or false");
    params.ignore_eos = ignore->get<bool>();
  }
  if (const json* prefill = Find(object, "prefill"); prefill != nullptr) {
    if (!prefill->is_object()) return Bad("prefill", "must be an object {url, timeout_ms}");
    RemotePrefill remote;
    TANDEM_RETURN_IF_ERROR(ReadString(*prefill, "url", 2048, &remote.url));
    if (remote.url.rfind("http://", 0) != 0) {
      return Bad("prefill.url", "must be an http:// URL of a prefill worker");
    }
    int64_t timeout = remote.timeout_ms;
    TANDEM_RETURN_IF_ERROR(ReadInt(*prefill, "timeout_ms", 1, limits.max_timeout_ms, &timeout));
    remote.timeout_ms = static_cast<int>(timeout);
    params.prefill = std::move(remote);
  }
  return params;
}

absl::StatusOr<PrefillParams> ParsePrefillRequest(absl::string_view body,
                                                  const RequestLimits& limits) {
  TANDEM_ASSIGN_OR_RETURN(json object, ParseObject(body));
  PrefillParams params;
  TANDEM_RETURN_IF_ERROR(ReadRequestId(object, &params.request_id));
  TANDEM_ASSIGN_OR_RETURN(params.prompt, ReadPrompt(object, limits));
  TANDEM_ASSIGN_OR_RETURN(params.logprobs, ReadLogprobs(object));
  TANDEM_ASSIGN_OR_RETURN(params.sampling, ReadSampling(object, params.logprobs));
  int64_t timeout = params.timeout_ms;
  TANDEM_RETURN_IF_ERROR(ReadInt(object, "timeout_ms", 1, limits.max_timeout_ms, &timeout));
  params.timeout_ms = static_cast<int>(timeout);
  const json* kv = Find(object, "kv");
  if (kv == nullptr || !kv->is_object()) {
    return Bad("kv", "is required: {address, epoch, reservation, first_block, num_blocks}");
  }
  std::string address;
  TANDEM_RETURN_IF_ERROR(ReadString(*kv, "address", 300, &address));
  absl::StatusOr<HostPort> host_port = ParseHostPort(address, "kv.address");
  if (!host_port.ok()) return host_port.status();
  if (host_port->port == 0) return Bad("kv.address", "must name a port other than 0");
  params.kv.host = host_port->host;
  params.kv.port = host_port->port;
  std::string epoch, reservation;
  TANDEM_RETURN_IF_ERROR(ReadString(*kv, "epoch", 16, &epoch));
  TANDEM_RETURN_IF_ERROR(ReadString(*kv, "reservation", 16, &reservation));
  TANDEM_ASSIGN_OR_RETURN(params.kv.epoch, ParseHexId(epoch, "kv.epoch"));
  TANDEM_ASSIGN_OR_RETURN(params.kv.reservation, ParseHexId(reservation, "kv.reservation"));
  params.kv.first_block = -1;
  params.kv.num_blocks = -1;
  TANDEM_RETURN_IF_ERROR(ReadInt(*kv, "first_block", 0, 1 << 20, &params.kv.first_block));
  TANDEM_RETURN_IF_ERROR(ReadInt(*kv, "num_blocks", 1, 1 << 20, &params.kv.num_blocks));
  if (params.kv.first_block < 0) return Bad("kv.first_block", "is required");
  if (params.kv.num_blocks < 0) return Bad("kv.num_blocks", "is required");
  return params;
}

absl::StatusOr<std::string> ParseCancelRequest(absl::string_view body) {
  TANDEM_ASSIGN_OR_RETURN(json object, ParseObject(body));
  std::string id;
  TANDEM_RETURN_IF_ERROR(ReadString(object, "request_id", kMaxRequestIdBytes, &id));
  if (id.empty()) return Bad("request_id", "is required");
  return id;
}

namespace {

json SamplingJson(const engine::SamplingParams& s) {
  json out = {{"temperature", s.temperature},
              {"top_p", s.top_p},
              {"top_k", s.top_k == 0 ? -1 : s.top_k},
              {"min_p", s.min_p},
              {"presence_penalty", s.presence_penalty},
              {"frequency_penalty", s.frequency_penalty},
              {"repetition_penalty", s.repetition_penalty}};
  if (s.seed.has_value()) out["seed"] = *s.seed;
  return out;
}

}  // namespace

std::string PrefillRequestJson(const PrefillParams& p) {
  HostPort address{p.kv.host, p.kv.port};
  json out = {{"request_id", p.request_id},
              {"prompt_ids", p.prompt},
              {"sampling", SamplingJson(p.sampling)},
              {"kv",
               {{"address", address.ToString()},
                {"epoch", HexId(p.kv.epoch)},
                {"reservation", HexId(p.kv.reservation)},
                {"first_block", p.kv.first_block},
                {"num_blocks", p.kv.num_blocks}}},
              {"timeout_ms", p.timeout_ms}};
  if (p.logprobs >= 0) out["logprobs"] = p.logprobs;
  return out.dump();
}

std::string PrefillAnswerJson(const PrefillAnswer& a) {
  json out = {{"first_token", a.first_token},
              {"logprob", a.logprob},
              {"top_logprobs", TopJson(a.top_logprobs)},
              {"cached_tokens", a.cached_tokens},
              {"computed_tokens", a.computed_tokens},
              {"transferred_blocks", a.transferred_blocks},
              {"transport", a.transport},
              {"timing",
               {{"queue_ms", a.timing.queue_ms},
                {"prefill_ms", a.timing.prefill_ms},
                {"transfer_ms", a.timing.transfer_ms}}}};
  return out.dump();
}

absl::StatusOr<PrefillAnswer> ParsePrefillAnswer(absl::string_view body) {
  TANDEM_ASSIGN_OR_RETURN(json object, ParseObject(body));
  PrefillAnswer a;
  int64_t first = -1;
  TANDEM_RETURN_IF_ERROR(ReadInt(object, "first_token", 0, INT32_MAX, &first));
  if (first < 0) return Bad("first_token", "is required");
  a.first_token = static_cast<int32_t>(first);
  TANDEM_RETURN_IF_ERROR(ReadFloat(object, "logprob", &a.logprob));
  if (const json* top = Find(object, "top_logprobs"); top != nullptr) {
    if (!top->is_array()) return Bad("top_logprobs", "must be an array");
    for (const json& pair : *top) {
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number_integer() ||
          !pair[1].is_number()) {
        return Bad("top_logprobs", "must hold [token, logprob] pairs");
      }
      a.top_logprobs.push_back({pair[0].get<int32_t>(), pair[1].get<float>()});
    }
  }
  TANDEM_RETURN_IF_ERROR(ReadInt(object, "cached_tokens", 0, INT64_MAX, &a.cached_tokens));
  TANDEM_RETURN_IF_ERROR(ReadInt(object, "computed_tokens", 0, INT64_MAX, &a.computed_tokens));
  TANDEM_RETURN_IF_ERROR(
      ReadInt(object, "transferred_blocks", 0, INT64_MAX, &a.transferred_blocks));
  TANDEM_RETURN_IF_ERROR(ReadString(object, "transport", 16, &a.transport));
  if (const json* timing = Find(object, "timing"); timing != nullptr && timing->is_object()) {
    float queue = 0, prefill = 0, transfer = 0;
    TANDEM_RETURN_IF_ERROR(ReadFloat(*timing, "queue_ms", &queue));
    TANDEM_RETURN_IF_ERROR(ReadFloat(*timing, "prefill_ms", &prefill));
    TANDEM_RETURN_IF_ERROR(ReadFloat(*timing, "transfer_ms", &transfer));
    a.timing = {queue, prefill, transfer};
  }
  return a;
}

std::string TokenEventJson(const engine::SampledToken& token, int logprobs) {
  json out = {{"token", token.token}};
  if (logprobs >= 0) {
    out["logprob"] = token.logprob;
    if (logprobs > 0) out["top_logprobs"] = TopJson(token.top);
  }
  return out.dump();
}

std::string FinishEventJson(const FinishSummary& s) {
  json out = {{"finish_reason", s.finish_reason},
              {"usage",
               {{"prompt_tokens", s.prompt_tokens},
                {"completion_tokens", s.completion_tokens},
                {"cached_tokens", s.cached_tokens}}},
              {"timing",
               {{"queue_ms", s.queue_ms},
                {"prefill_ms", s.prefill_ms},
                {"transfer_ms", s.transfer_ms},
                {"prefill", s.prefill}}}};
  return out.dump();
}

std::string ErrorJson(absl::string_view code, absl::string_view message) {
  json out = {{"error", {{"code", std::string(code)}, {"message", std::string(message)}}}};
  return out.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string ErrorMessageFromBody(absl::string_view body) {
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_discarded() && parsed.is_object()) {
    const json* error = Find(parsed, "error");
    if (error != nullptr && error->is_object()) {
      std::string code = error->value("code", "");
      std::string message = error->value("message", "");
      return code.empty() ? message : absl::StrCat(code, ": ", message);
    }
  }
  return std::string(body.substr(0, 200));
}

int HttpStatusFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kDataLoss:
      return 500;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kCancelled:
      return 409;
    default:
      return 500;
  }
}

std::string ErrorCodeFor(const absl::Status& status) {
  return std::string(StatusCodeName(status.code()));
}

}  // namespace tandem::worker
