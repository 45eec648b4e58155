#include "engine/sampling.h"

#include <cmath>
#include <map>
#include <vector>

#include "gtest/gtest.h"

namespace tandem::engine {
namespace {

constexpr uint64_t kSeed = 1234;

std::vector<float> Logits() { return {1.0f, 3.0f, 2.0f, 0.5f, 2.9f, -1.0f}; }

TEST(SamplingTest, ValidationNamesTheParameter) {
  EXPECT_TRUE(ValidateSamplingParams({}).ok());
  struct Case {
    SamplingParams params;
    std::string name;
  };
  std::vector<Case> cases = {
      {{.temperature = -1}, "temperature"},
      {{.temperature = NAN}, "temperature"},
      {{.top_k = -3}, "top_k"},
      {{.top_p = 0}, "top_p"},
      {{.top_p = 1.5f}, "top_p"},
      {{.min_p = 2}, "min_p"},
      {{.repetition_penalty = 0}, "repetition_penalty"},
      {{.presence_penalty = 3}, "presence_penalty"},
      {{.frequency_penalty = -2.5f}, "frequency_penalty"},
      {{.top_logprobs = 21}, "top_logprobs"},
  };
  for (const Case& c : cases) {
    absl::Status status = ValidateSamplingParams(c.params);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(status.message().find(c.name), std::string::npos) << status;
  }
}

TEST(SamplingTest, GreedyPicksArgmaxAndReportsLogprobs) {
  Sampler sampler({.temperature = 0, .top_logprobs = 3}, {});
  auto result = sampler.Sample(Logits());
  ASSERT_TRUE(result.ok());
  EXPECT_EQ(result->token, 1);
  double sum = 0;
  for (float l : Logits()) sum += std::exp(l);
  EXPECT_NEAR(result->logprob, 3.0 - std::log(sum), 1e-5);
  ASSERT_EQ(result->top.size(), 3u);
  EXPECT_EQ(result->top[0].token, 1);
  EXPECT_EQ(result->top[1].token, 4);
  EXPECT_EQ(result->top[2].token, 2);
}

TEST(SamplingTest, NonFiniteLogitsAreAnError) {
  Sampler sampler({.temperature = 0}, {});
  std::vector<float> logits = Logits();
  logits[2] = NAN;
  EXPECT_EQ(sampler.Sample(logits).status().code(), absl::StatusCode::kInvalidArgument);
  logits[2] = INFINITY;
  EXPECT_FALSE(sampler.Sample(logits).ok());
}

TEST(SamplingTest, SeedReproducesAndDiffersAcrossSeeds) {
  std::vector<float> logits(50);
  for (int i = 0; i < 50; ++i) logits[i] = std::sin(i * 0.7f);
  auto run = [&](uint64_t seed) {
    Sampler sampler({.temperature = 1.0f, .seed = seed}, {});
    std::vector<int32_t> tokens;
    for (int i = 0; i < 40; ++i) tokens.push_back(sampler.Sample(logits)->token);
    return tokens;
  };
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  EXPECT_EQ(run(kSeed), run(kSeed));
  EXPECT_NE(run(kSeed), run(kSeed + 1));
}

TEST(SamplingTest, FrequenciesFollowTheTemperedSoftmax) {
  const std::vector<float> logits = {0.0f, 1.0f, 2.0f};
  Sampler sampler({.temperature = 2.0f, .seed = kSeed}, {});
  std::map<int, int> counts;
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++counts[sampler.Sample(logits)->token];
  double z = std::exp(0.0) + std::exp(0.5) + std::exp(1.0);
  for (int t = 0; t < 3; ++t) {
    EXPECT_NEAR(counts[t] / double(draws), std::exp(logits[t] / 2.0) / z, 0.02) << "token " << t;
  }
}

TEST(SamplingTest, TopKTopPAndMinPRestrictTheCandidates) {
  auto drawn = [](SamplingParams params) {
    params.seed = kSeed;
    Sampler sampler(params, {});
    std::map<int, int> counts;
    for (int i = 0; i < 2000; ++i) ++counts[sampler.Sample(Logits())->token];
    std::vector<int> tokens;
    for (auto& [token, count] : counts) tokens.push_back(token);
    return tokens;
  };
  EXPECT_EQ(drawn({.temperature = 1, .top_k = 2}), (std::vector<int>{1, 4}));
  // probs ~ 0.37, 0.33, 0.14, ...: top_p 0.5 keeps the first two.
  EXPECT_EQ(drawn({.temperature = 1, .top_p = 0.5f}), (std::vector<int>{1, 4}));
  // min_p 0.5: tokens with at least half the top probability (e^-0.1 yes, e^-1 no).
  EXPECT_EQ(drawn({.temperature = 1, .min_p = 0.5f}), (std::vector<int>{1, 4}));
  EXPECT_EQ(drawn({.temperature = 1, .min_p = 0.3f}), (std::vector<int>{1, 2, 4}));
}

TEST(SamplingTest, PenaltiesChangeTheArgmax) {
  // Repetition penalty applies to prompt tokens: token 1 (3.0 -> 1.5) loses to token 4.
  Sampler repeat({.temperature = 0, .repetition_penalty = 2.0f}, std::vector<int32_t>{1});
  EXPECT_EQ(repeat.Sample(Logits())->token, 4);
  // Presence penalty applies to output tokens only: first 1, then 4 (2.9 > 3.0 - 0.5).
  Sampler presence({.temperature = 0, .presence_penalty = 0.5f}, std::vector<int32_t>{4});
  EXPECT_EQ(presence.Sample(Logits())->token, 1);
  EXPECT_EQ(presence.Sample(Logits())->token, 4);
  // Frequency penalty grows with the count: 1, 1? no: 3.0 - 0.2 = 2.8 < 2.9 -> 4, then 1.
  Sampler frequency({.temperature = 0, .frequency_penalty = 0.2f}, {});
  EXPECT_EQ(frequency.Sample(Logits())->token, 1);
  EXPECT_EQ(frequency.Sample(Logits())->token, 4);
  EXPECT_EQ(frequency.Sample(Logits())->token, 1);  // 2.8 vs 2.7
}

TEST(StopStringMatcherTest, HoldsBackPartialMatchesAndStopsBeforeTheString) {
  StopStringMatcher stops({"###", "\n\n"});
  auto r = stops.Append("Hello #");
  EXPECT_EQ(r.text, "Hello ");
  EXPECT_FALSE(r.stopped);
  r = stops.Append("# world");
  EXPECT_EQ(r.text, "## world");
  r = stops.Append("! ##");
  EXPECT_EQ(r.text, "! ");
  r = stops.Append("#tail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_EQ(stops.Flush(), "");
  StopStringMatcher other({"\n\n"});
  EXPECT_EQ(other.Append("a\n").text, "a");
  EXPECT_EQ(other.Flush(), "\n");
}

}  // namespace
}  // namespace tandem::engine
