// The JSON bodies of the worker control API (docs/protocols.md, "Worker control API"): parsing
// and validating what peers send, and encoding what the worker answers. Pure functions: no
// sockets, no engine.
//
//   absl::StatusOr<GenerateParams> params = ParseGenerateRequest(body, limits);
//   std::string event = TokenEventJson(sampled, /*with_logprobs=*/true);
//
// Parsing never throws; every refusal is InvalidArgument naming the field and what was expected.
//
// Thread-safety: stateless.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/status/statusor.h"
#include "engine/sampling.h"

namespace tandem::worker {

// Bounds the parser enforces before anything reaches the engine.
struct RequestLimits {
  int32_t vocab_size = 0;
  int64_t max_context = 0;  // a prompt must be shorter than this
  int max_timeout_ms = 600'000;
};

struct RemotePrefill {
  std::string url;  // http://host:port of the prefill worker
  int timeout_ms = 30'000;
};

struct GenerateParams {
  std::string request_id;  // generated when the caller gave none
  std::vector<int32_t> prompt;
  int64_t max_tokens = 128;
  engine::SamplingParams sampling;
  std::vector<int32_t> stop_ids;
  bool ignore_eos = false;
  int logprobs = -1;  // -1: none; n >= 0: the sampled token's and n alternatives
  std::optional<RemotePrefill> prefill;
};

// Where a prefill worker pushes KV: the decode worker's reservation.
struct KvDestination {
  std::string host;
  int port = 0;
  uint64_t epoch = 0;
  uint64_t reservation = 0;
  int64_t first_block = 0;
  int64_t num_blocks = 0;
};

struct PrefillParams {
  std::string request_id;
  std::vector<int32_t> prompt;
  engine::SamplingParams sampling;
  int logprobs = -1;
  KvDestination kv;
  int timeout_ms = 30'000;
};

struct PrefillTiming {
  double queue_ms = 0;     // arrival until the engine started computing
  double prefill_ms = 0;   // computing the prompt (first layer to first token)
  double transfer_ms = 0;  // first token until the decode worker confirmed every block
};

struct PrefillAnswer {
  int32_t first_token = -1;
  float logprob = 0;
  std::vector<engine::TokenLogprob> top_logprobs;
  int64_t cached_tokens = 0;
  int64_t computed_tokens = 0;
  int64_t transferred_blocks = 0;
  std::string transport;  // "shm" or "tcp"
  PrefillTiming timing;
};

absl::StatusOr<GenerateParams> ParseGenerateRequest(absl::string_view body,
                                                    const RequestLimits& limits);
absl::StatusOr<PrefillParams> ParsePrefillRequest(absl::string_view body,
                                                  const RequestLimits& limits);
// {"request_id": "..."}
absl::StatusOr<std::string> ParseCancelRequest(absl::string_view body);

std::string PrefillRequestJson(const PrefillParams& params);
std::string PrefillAnswerJson(const PrefillAnswer& answer);
absl::StatusOr<PrefillAnswer> ParsePrefillAnswer(absl::string_view body);

// One streamed token; logprobs only when `logprobs` >= 0.
std::string TokenEventJson(const engine::SampledToken& token, int logprobs);

struct FinishSummary {
  std::string finish_reason;  // "stop" or "length"
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  int64_t cached_tokens = 0;
  double queue_ms = 0;
  double prefill_ms = 0;
  double transfer_ms = 0;
  std::string prefill;  // "local", "remote" or "fallback"
};
std::string FinishEventJson(const FinishSummary& summary);
// {"error": {"code": code, "message": message}}
std::string ErrorJson(absl::string_view code, absl::string_view message);
// The code and message of an error body, or a description of a body that is not one.
std::string ErrorMessageFromBody(absl::string_view body);

std::string HexId(uint64_t value);
absl::StatusOr<uint64_t> ParseHexId(absl::string_view text, absl::string_view field);

// The HTTP status and error code for a Status (docs/error-policy.md).
int HttpStatusFor(const absl::Status& status);
std::string ErrorCodeFor(const absl::Status& status);

}  // namespace tandem::worker
