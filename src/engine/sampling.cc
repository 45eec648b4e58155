#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "engine/kernels.h"

namespace tandem::engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  auto bad = [](const char* name, double value, const std::string& range) {
    return absl::InvalidArgumentError(absl::StrCat("sampling parameter ", name, " = ", value,
                                                   " is out of range; expected ", range));
  };
  if (!std::isfinite(p.temperature) || p.temperature < 0 || p.temperature > 100) {
    return bad("temperature", p.temperature, "0 (greedy) .. 100");
  }
  if (p.top_k < 0) return bad("top_k", p.top_k, ">= 0 (0 = off)");
  if (!(p.top_p > 0 && p.top_p <= 1)) return bad("top_p", p.top_p, "(0, 1]");
  if (!(p.min_p >= 0 && p.min_p <= 1)) return bad("min_p", p.min_p, "[0, 1]");
  if (!(p.repetition_penalty > 0 && p.repetition_penalty <= 100)) {
    return bad("repetition_penalty", p.repetition_penalty, "(0, 100], 1 = off");
  }
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) {
    return bad("presence_penalty", p.presence_penalty, "[-2, 2]");
  }
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2)) {
    return bad("frequency_penalty", p.frequency_penalty, "[-2, 2]");
  }
  if (p.top_logprobs < 0 || p.top_logprobs > kMaxTopLogprobs) {
    return bad("top_logprobs", p.top_logprobs, absl::StrCat("0..", kMaxTopLogprobs));
  }
  return absl::OkStatus();
}

namespace {

// Whether every logit is finite, and the largest (the first of equals), from a vector pass over
// the vocabulary.
struct Extremes {
  bool finite = true;
  float max = -INFINITY;
  int64_t argmax = 0;
};
Extremes Scan(std::span<const float> values) {
  Extremes e;
  if (values.empty()) return e;
  // The vector kernel finds the maximum and the finiteness; the first index holding the maximum
  // is then a short search (it stops there).
  e.max = MaxF32(values.data(), static_cast<int64_t>(values.size()), &e.finite);
  if (e.finite) e.argmax = std::find(values.begin(), values.end(), e.max) - values.begin();
  return e;
}

}  // namespace

Sampler::Sampler(const SamplingParams& params, std::span<const int32_t> context)
    : params_(params),
      seed_(params.seed.has_value()
                ? *params.seed
                : std::random_device{}() * 0x100000001ull ^ std::random_device{}()),
      random_(seed_) {
  if (params_.repetition_penalty != 1.0f) seen_.insert(context.begin(), context.end());
}

void Sampler::Accept(int32_t token) {
  if (params_.repetition_penalty != 1.0f) seen_.insert(token);
  if (params_.presence_penalty != 0 || params_.frequency_penalty != 0) ++generated_[token];
}

absl::StatusOr<SampledToken> Sampler::Sample(std::span<const float> logits) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  if (vocab == 0) return absl::InvalidArgumentError("empty logits");
  Extremes extremes = Scan(logits);
  if (!extremes.finite) {
    const int64_t i = std::find_if_not(logits.begin(), logits.end(),
                                       [](float logit) { return std::isfinite(logit); }) -
                      logits.begin();
    return absl::InvalidArgumentError(absl::StrCat("the model produced a non-finite logit (",
                                                   logits[i], ") for token ", i,
                                                   "; the weights or activations overflowed"));
  }
  // Penalties change a copy; without them (greedy and most sampling) the logits are read in
  // place. Vocabulary-sized scratch is per thread, not per sequence: a batch of many sequences
  // would otherwise hold a copy of the logits each.
  thread_local std::vector<float> work_;
  thread_local std::vector<int32_t> order_;
  const bool penalized =
      (params_.repetition_penalty != 1.0f && !seen_.empty()) || !generated_.empty();
  const float* values = logits.data();
  if (penalized) {
    work_.assign(logits.begin(), logits.end());
    if (params_.repetition_penalty != 1.0f) {
      for (int32_t token : seen_) {
        if (token < 0 || token >= vocab) continue;
        float& logit = work_[token];
        logit = logit > 0 ? logit / params_.repetition_penalty : logit * params_.repetition_penalty;
      }
    }
    for (const auto& [token, count] : generated_) {
      if (token < 0 || token >= vocab) continue;
      work_[token] -= params_.presence_penalty + params_.frequency_penalty * count;
    }
    values = work_.data();
    extremes = Scan(work_);
  }
  const std::span<const float> scores(values, vocab);

  SampledToken result;
  const float max_logit = extremes.max;
  // The log-softmax normalizer costs one exp per vocabulary entry: only when asked for.
  double log_normalizer = 0;
  const bool want_logprobs = params_.logprobs || params_.top_logprobs > 0;
  if (want_logprobs) {
    double sum = 0;
    for (float logit : scores) sum += std::exp(static_cast<double>(logit - max_logit));
    log_normalizer = max_logit + std::log(sum);
  }
  auto logprob = [&](int32_t token) {
    return want_logprobs ? static_cast<float>(scores[token] - log_normalizer) : 0.0f;
  };
  if (params_.top_logprobs > 0) {
    const int64_t n = std::min<int64_t>(params_.top_logprobs, vocab);
    order_.resize(vocab);
    std::iota(order_.begin(), order_.end(), 0);
    std::partial_sort(order_.begin(), order_.begin() + n, order_.end(), [&](int32_t a, int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
    for (int64_t i = 0; i < n; ++i) result.top.push_back({order_[i], logprob(order_[i])});
  }

  int32_t chosen = 0;
  if (params_.temperature == 0 || params_.top_k == 1) {
    chosen = static_cast<int32_t>(extremes.argmax);
  } else {
    // Candidates sorted by logit (top-k cut first), then softmax at the temperature, min-p and
    // top-p cuts, and one uniform draw.
    int64_t candidates = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, vocab) : vocab;
    order_.resize(vocab);
    std::iota(order_.begin(), order_.end(), 0);
    auto by_logit = [&](int32_t a, int32_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    };
    const bool need_sorted = params_.top_p < 1.0f || candidates < vocab;
    if (need_sorted) {
      std::partial_sort(order_.begin(), order_.begin() + candidates, order_.end(), by_logit);
    }
    const double inverse_t = 1.0 / params_.temperature;
    std::vector<double> probs(candidates);
    double total = 0;
    for (int64_t i = 0; i < candidates; ++i) {
      probs[i] = std::exp((static_cast<double>(scores[order_[i]]) - max_logit) * inverse_t);
      total += probs[i];
    }
    if (params_.min_p > 0) {
      // probs are relative to the most likely token (exp(0) = 1), so min-p compares directly.
      for (int64_t i = 0; i < candidates; ++i) {
        if (probs[i] < params_.min_p) probs[i] = 0;
      }
    }
    if (params_.top_p < 1.0f) {
      double kept = 0;
      for (double p : probs) kept += p;
      double cumulative = 0;
      for (int64_t i = 0; i < candidates; ++i) {
        if (cumulative >= params_.top_p * kept) {
          probs[i] = 0;
        } else {
          cumulative += probs[i];
        }
      }
    }
    total = 0;
    for (double p : probs) total += p;
    double target = random_.Uniform() * total;
    chosen = order_[0];
    for (int64_t i = 0; i < candidates; ++i) {
      if (probs[i] <= 0) continue;
      chosen = order_[i];
      target -= probs[i];
      if (target < 0) break;
    }
  }
  result.token = chosen;
  result.logprob = logprob(chosen);
  Accept(chosen);
  return result;
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops) {
  for (std::string& stop : stops) {
    if (!stop.empty()) stops_.push_back(std::move(stop));
  }
}

StopStringMatcher::Result StopStringMatcher::Append(std::string_view piece) {
  Result result;
  if (stopped_) {
    result.stopped = true;
    return result;
  }
  pending_.append(piece);
  // Earliest complete stop string.
  size_t first = std::string::npos;
  for (const std::string& stop : stops_) first = std::min(first, pending_.find(stop));
  if (first != std::string::npos) {
    result.text = pending_.substr(0, first);
    result.stopped = true;
    stopped_ = true;
    pending_.clear();
    return result;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stops_) {
    for (size_t len = std::min(stop.size() - 1, pending_.size()); len > hold; --len) {
      if (pending_.compare(pending_.size() - len, len, stop, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  result.text = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return result;
}

std::string StopStringMatcher::Flush() {
  std::string rest = stopped_ ? std::string() : std::move(pending_);
  pending_.clear();
  return rest;
}

}  // namespace tandem::engine
