// Token sampling: greedy, temperature, top-k, top-p, min-p, repetition / presence / frequency
// penalties, a per-request seed that makes sampling reproducible, top-n logprobs; and a helper
// that finds stop strings in streamed text.
//
// A Sampler belongs to one sequence. Its random stream depends only on the seed and on the
// tokens drawn so far, so a seeded request samples the same tokens alone or in any batch.
//
//   SamplingParams params{.temperature = 0.7f, .top_p = 0.9f, .seed = 42};
//   TANDEM_RETURN_IF_ERROR(ValidateSamplingParams(params, vocab_size));
//   Sampler sampler(params, prompt_tokens);
//   TANDEM_ASSIGN_OR_RETURN(SampledToken next, sampler.Sample(logits));
//
// Penalties: `repetition_penalty` (Hugging Face / CTRL form) applies to every token of the
// prompt and of the output: positive logits are divided by it, negative ones multiplied.
// `presence_penalty` and `frequency_penalty` (OpenAI form) apply to output tokens only:
// logit -= presence * [count > 0] + frequency * count.
// Logprobs are the log-softmax of the penalized logits before temperature, top-k/p and min-p
// (the model's distribution, as OpenAI reports it).
//
// Thread-safety: a Sampler is used by one thread at a time; the free functions are stateless.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/random.h"

namespace tandem::engine {

inline constexpr int kMaxTopLogprobs = 20;

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy (argmax)
  int32_t top_k = 0;                // 0 = all tokens
  float top_p = 1.0f;               // (0, 1]
  float min_p = 0.0f;               // [0, 1]
  float repetition_penalty = 1.0f;  // > 0; 1 = off
  float presence_penalty = 0.0f;    // [-2, 2]
  float frequency_penalty = 0.0f;   // [-2, 2]
  std::optional<uint64_t> seed;     // unset: a random seed per request
  bool logprobs = false;            // report the sampled token's logprob
  int32_t top_logprobs = 0;         // 0..kMaxTopLogprobs alternatives per sampled token
};

// InvalidArgument naming the parameter, its value and the accepted range.
absl::Status ValidateSamplingParams(const SamplingParams& params);

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
};

struct SampledToken {
  int32_t token = 0;
  float logprob = 0;              // of the sampled token
  std::vector<TokenLogprob> top;  // params.top_logprobs most likely, most likely first
};

// The seeded generator sampling draws from (xoshiro256**, core/random.h).
using ::tandem::Random;

class Sampler {
 public:
  // `context` is the prompt (for the repetition penalty).
  Sampler(const SamplingParams& params, std::span<const int32_t> context);

  // Samples the next token from `logits` (one per vocabulary entry) and records it as output.
  // InvalidArgument when a logit is NaN or infinite (the sequence must end with that error).
  absl::StatusOr<SampledToken> Sample(std::span<const float> logits);

  // Records `token` as output without sampling (e.g. a first token computed elsewhere).
  void Accept(int32_t token);

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }

 private:
  SamplingParams params_;
  uint64_t seed_;
  Random random_;
  absl::flat_hash_set<int32_t> seen_;                // prompt + output (repetition penalty)
  absl::flat_hash_map<int32_t, int32_t> generated_;  // output counts (presence / frequency)
};

// Finds stop strings in text that arrives in pieces. Text that might be the start of a stop
// string is held back until it is decided, so a stop string is never streamed.
//
//   StopStringMatcher stops({"\n\n", "###"});
//   StopStringMatcher::Result r = stops.Append(piece);   // emit r.text; finish if r.stopped
//   std::string rest = stops.Flush();                      // at the end of the sequence
class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  struct Result {
    std::string text;      // safe to emit now
    bool stopped = false;  // a stop string was found; `text` ends right before it
  };
  Result Append(std::string_view piece);
  // What is still held back (no stop string followed it).
  std::string Flush();

 private:
  std::vector<std::string> stops_;
  std::string pending_;
  bool stopped_ = false;
};

}  // namespace tandem::engine
