#include "core/latency_profile.h"

#include <cmath>
#include <random>
#include <string>

#include "core/env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using ::testing::HasSubstr;

// A profile whose measurements follow exact linear laws, so every interpolated and extrapolated
// value can be computed by hand:
//   prefill seconds = 0.01 + 1e-4 * uncached + 1e-8 * uncached * cached
//   decode step     = 0.02 + 1e-3 * batch + 1e-6 * total context tokens
double LinearPrefill(double uncached, double cached = 0) {
  return 0.01 + 1e-4 * uncached + 1e-8 * uncached * cached;
}
double LinearDecode(double batch, double context) { return 0.02 + 1e-3 * batch + 1e-6 * context; }

LatencyProfile LinearProfile() {
  LatencyProfile profile;
  profile.model = {.name = "llama-test-8b",
                   .layers = 32,
                   .hidden_size = 4096,
                   .attention_heads = 32,
                   .kv_heads = 8,
                   .head_dim = 128,
                   .vocab_size = 128256,
                   .parameters = 8'000'000'000};
  profile.dtype = "bf16";
  profile.kv_dtype = "bf16";
  profile.hardware = {.description = "test machine", .device = "cpu", .threads = 8};
  profile.measured_at = "2026-11-24T00:00:00Z";
  for (int64_t uncached : {128, 512, 1024, 2048}) {
    profile.prefill.push_back({uncached, 0, LinearPrefill(uncached)});
  }
  profile.prefill.push_back({512, 1024, LinearPrefill(512, 1024)});
  profile.prefill.push_back({256, 4096, LinearPrefill(256, 4096)});
  for (int64_t batch : {1, 8, 32}) {
    for (int64_t per_sequence : {256, 1024, 4096}) {
      profile.decode.push_back(
          {batch, batch * per_sequence, LinearDecode(batch, batch * per_sequence)});
    }
  }
  return profile;
}

LatencyModel LinearModel() {
  absl::StatusOr<LatencyModel> model = LatencyModel::Create(LinearProfile());
  EXPECT_TRUE(model.ok()) << model.status();
  return *model;
}

TEST(LatencyModelTest, PrefillInterpolatesAndExtrapolatesLinearData) {
  LatencyModel model = LinearModel();
  // On grid points and between them (768 lies between 512 and 1024): 0.01 + 0.0768 = 0.0868.
  EXPECT_NEAR(model.PrefillSeconds(1024), 0.1124, 1e-12);
  EXPECT_NEAR(model.PrefillSeconds(768), 0.0868, 1e-12);
  // Below the first point the curve runs to the fitted intercept 0.01: 0.01 + 64e-4 = 0.0164.
  EXPECT_NEAR(model.PrefillSeconds(64), 0.0164, 1e-12);
  // Past the last point, the fitted slope 1e-4: 0.01 + 0.8192 = 0.8292.
  EXPECT_NEAR(model.PrefillSeconds(8192), 0.8292, 1e-12);
  EXPECT_EQ(model.PrefillSeconds(0), 0.0);
}

TEST(LatencyModelTest, PrefillChargesTheCachedPrefix) {
  LatencyModel model = LinearModel();
  EXPECT_NEAR(model.cached_prefix_cost(), 1e-8, 1e-14);
  // 1000 new tokens after 3000 cached: 0.01 + 0.1 + 1e-8 * 3e6 = 0.14.
  EXPECT_NEAR(model.PrefillSeconds(1000, 3000), 0.14, 1e-9);
}

TEST(LatencyModelTest, DecodeInterpolatesAcrossBatchSizesAndExtrapolates) {
  LatencyModel model = LinearModel();
  // Grid point: 0.02 + 0.008 + 0.008192 = 0.036192.
  EXPECT_NEAR(model.DecodeStepSeconds(8, 8192), 0.036192, 1e-12);
  // Between batch rows 8 and 32 (one third of the way) at 16384 tokens:
  // row 8: 0.028 + 0.016384 = 0.044384, row 32: 0.052 + 0.016384 = 0.068384,
  // 0.044384 + (0.068384 - 0.044384) / 3 = 0.052384 = 0.02 + 0.016 + 0.016384.
  EXPECT_NEAR(model.DecodeStepSeconds(16, 16384), 0.052384, 1e-12);
  // Past the largest batch: row 32 at 65536 tokens (0.117536) + 32 * 1e-3 = 0.149536.
  EXPECT_NEAR(model.DecodeStepSeconds(64, 65536), 0.149536, 1e-12);
  // Past the longest context of a row: the fitted context slope 1e-6.
  EXPECT_NEAR(model.DecodeStepSeconds(1, 100000), LinearDecode(1, 100000), 1e-12);
  EXPECT_NEAR(model.DecodeStepSecondsMeanContext(8, 1024), model.DecodeStepSeconds(8, 8192), 1e-15);
}

TEST(LatencyModelTest, NoisyMeasurementsStillGiveAMonotoneModel) {
  const uint64_t seed = 20261124;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(1.0, 0.15);
  LatencyProfile profile = LinearProfile();
  for (auto& point : profile.prefill) point.seconds *= std::max(0.5, noise(rng));
  for (auto& point : profile.decode) point.step_seconds *= std::max(0.5, noise(rng));
  absl::StatusOr<LatencyModel> model = LatencyModel::Create(profile);
  ASSERT_TRUE(model.ok()) << model.status();
  std::uniform_int_distribution<int64_t> tokens(1, 20000);
  std::uniform_int_distribution<int64_t> batches(1, 100);
  for (int i = 0; i < 2000; ++i) {
    int64_t a = tokens(rng), b = tokens(rng);
    if (a > b) std::swap(a, b);
    int64_t cached = tokens(rng) / 2;
    EXPECT_LE(model->PrefillSeconds(a, cached), model->PrefillSeconds(b, cached)) << a << " " << b;
    EXPECT_LE(model->PrefillSeconds(a, cached / 2), model->PrefillSeconds(a, cached));
    EXPECT_GT(model->PrefillSeconds(a), 0.0);
    int64_t small_batch = batches(rng), large_batch = batches(rng);
    if (small_batch > large_batch) std::swap(small_batch, large_batch);
    int64_t context = tokens(rng) * 8;
    EXPECT_LE(model->DecodeStepSeconds(small_batch, context),
              model->DecodeStepSeconds(large_batch, context))
        << small_batch << " " << large_batch << " at " << context;
    EXPECT_LE(model->DecodeStepSeconds(small_batch, a), model->DecodeStepSeconds(small_batch, b));
    EXPECT_GT(model->DecodeStepSeconds(small_batch, context), 0.0);
  }
}

TEST(LatencyCapacityTest, PrefillCapacityFollowsTheQueueingFormula) {
  LatencyModel model = LinearModel();
  // S = 0.1124 s for 1024 tokens; target T = 3S = 0.3372 s.
  // rho = 2 (T - S) / (2T - S) = 2 * 2S / 5S = 0.8; tokens/s = 0.8 * 1024 / 0.1124 = 7288.2562...
  absl::StatusOr<PrefillCapacity> capacity =
      MaxPrefillThroughput(model, {.ttft_target_seconds = 0.3372, .uncached_tokens = 1024});
  ASSERT_TRUE(capacity.ok()) << capacity.status();
  EXPECT_NEAR(capacity->utilization, 0.8, 1e-9);
  EXPECT_NEAR(capacity->tokens_per_second, 0.8 * 1024 / 0.1124, 1e-6);
  EXPECT_NEAR(MeanTtftSeconds(capacity->service_seconds, capacity->utilization), 0.3372, 1e-12);
  // A correction factor of 1.5 makes S = 0.1686, rho = 2 * 0.1686 / 0.5058 = 2/3,
  // tokens/s = (2/3) * 1024 / 0.1686 = 4049.03...
  capacity = MaxPrefillThroughput(
      model, {.ttft_target_seconds = 0.3372, .uncached_tokens = 1024, .correction = 1.5});
  ASSERT_TRUE(capacity.ok()) << capacity.status();
  EXPECT_NEAR(capacity->tokens_per_second, (2.0 / 3.0) * 1024 / 0.1686, 1e-6);
}

TEST(LatencyCapacityTest, PrefillCapacityRefusesImpossibleTargets) {
  LatencyModel model = LinearModel();
  absl::StatusOr<PrefillCapacity> capacity =
      MaxPrefillThroughput(model, {.ttft_target_seconds = 0.1, .uncached_tokens = 1024});
  EXPECT_EQ(capacity.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(capacity.status().message(), HasSubstr("TTFT target"));
  EXPECT_EQ(MaxPrefillThroughput(model, {.ttft_target_seconds = 0, .uncached_tokens = 10})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(
      MaxPrefillThroughput(model, {.ttft_target_seconds = 1, .uncached_tokens = 0}).status().code(),
      absl::StatusCode::kInvalidArgument);
}

TEST(LatencyCapacityTest, DecodeConcurrencyIsTheLargestBatchWithinTarget) {
  LatencyModel model = LinearModel();
  // step(B) = 0.02 + 1e-3 B + 1e-6 * 1024 B = 0.02 + 0.002024 B <= 0.05  =>  B <= 14.82 -> 14,
  // step(14) = 0.048336 s, 14 / 0.048336 = 289.64 tokens/s.
  absl::StatusOr<DecodeCapacity> capacity =
      MaxDecodeConcurrency(model, {.itl_target_seconds = 0.05, .mean_context_tokens = 1024});
  ASSERT_TRUE(capacity.ok()) << capacity.status();
  EXPECT_EQ(capacity->max_concurrency, 14);
  EXPECT_NEAR(capacity->step_seconds, 0.048336, 1e-12);
  EXPECT_NEAR(capacity->tokens_per_second, 14 / 0.048336, 1e-9);
  // The engine's batch limit caps it.
  capacity = MaxDecodeConcurrency(
      model, {.itl_target_seconds = 0.05, .mean_context_tokens = 1024, .max_batch_size = 10});
  ASSERT_TRUE(capacity.ok());
  EXPECT_EQ(capacity->max_concurrency, 10);
  // One sequence already takes 0.021024 s > 0.02.
  capacity = MaxDecodeConcurrency(model, {.itl_target_seconds = 0.02, .mean_context_tokens = 1024});
  EXPECT_EQ(capacity.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(capacity.status().message(), HasSubstr("ITL target"));
}

TEST(LatencyProfileFormatTest, RoundTripsThroughJsonAndFiles) {
  LatencyProfile profile = LinearProfile();
  std::string text = SerializeLatencyProfile(profile);
  absl::StatusOr<LatencyProfile> parsed = ParseLatencyProfile(text, "mem");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(SerializeLatencyProfile(*parsed), text);
  EXPECT_EQ(parsed->model.name, "llama-test-8b");
  EXPECT_EQ(parsed->kv_dtype, "bf16");
  EXPECT_EQ(parsed->decode.size(), 9u);
  // kv_dtype is optional: a profile without it (from before it existed) still reads.
  LatencyProfile unstated = profile;
  unstated.kv_dtype.clear();
  const std::string unstated_text = SerializeLatencyProfile(unstated);
  EXPECT_EQ(unstated_text.find("kv_dtype"), std::string::npos);
  absl::StatusOr<LatencyProfile> reparsed = ParseLatencyProfile(unstated_text, "mem");
  ASSERT_TRUE(reparsed.ok()) << reparsed.status();
  EXPECT_EQ(reparsed->kv_dtype, "");

  FakeEnv env;
  ASSERT_TRUE(WriteLatencyProfile(env, "profile.json", profile).ok());
  absl::StatusOr<LatencyProfile> read = ReadLatencyProfile(env, "profile.json");
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(SerializeLatencyProfile(*read), text);

  EXPECT_FALSE(ReadLatencyProfile(env, "missing.json").ok());
  LatencyProfile bad = profile;
  bad.decode[0].step_seconds = -1;
  absl::Status written = WriteLatencyProfile(env, "bad.json", bad);
  EXPECT_THAT(written.message(), HasSubstr("decode[0].step_seconds"));
  EXPECT_FALSE(env.FileExists("bad.json"));
}

struct BadProfileCase {
  const char* name;
  // Applied to the JSON of LinearProfile().
  void (*edit)(nlohmann::json& json);
  const char* expected;
};

TEST(LatencyProfileFormatTest, RefusesBadProfilesWithClearMessages) {
  const BadProfileCase cases[] = {
      {"wrong format", [](nlohmann::json& j) { j["format"] = "something-else"; },
       "'format' is 'something-else', expected 'tandem-latency-profile'"},
      {"newer version", [](nlohmann::json& j) { j["version"] = 2; },
       "'version' is 2, this build reads version 1"},
      {"no model name", [](nlohmann::json& j) { j["model"].erase("name"); },
       "missing required key 'model.name'"},
      {"unknown key", [](nlohmann::json& j) { j["prefil"] = nlohmann::json::array(); },
       "unknown key 'prefil'"},
      {"negative time", [](nlohmann::json& j) { j["prefill"][2]["seconds"] = -0.5; },
       "'prefill[2].seconds' must be a finite number > 0, got -0.5"},
      {"string for a count", [](nlohmann::json& j) { j["decode"][1]["batch_size"] = "8"; },
       "'decode[1].batch_size' must be an integer, got string"},
      {"one prefill size",
       [](nlohmann::json& j) {
         j["prefill"] = nlohmann::json::array({{{"uncached_tokens", 128}, {"seconds", 0.1}},
                                               {{"uncached_tokens", 128}, {"seconds", 0.2}}});
       },
       "two or more distinct uncached_tokens"},
      {"one batch size",
       [](nlohmann::json& j) {
         j["decode"] = nlohmann::json::array(
             {{{"batch_size", 4}, {"context_tokens", 100}, {"step_seconds", 0.1}}});
       },
       "two or more distinct batch sizes"},
      {"zero batch", [](nlohmann::json& j) { j["decode"][0]["batch_size"] = 0; },
       "'decode[0].batch_size' must be >= 1, got 0"},
      {"decode not a list", [](nlohmann::json& j) { j["decode"] = 3; },
       "'decode' must be an array, got number"},
      {"unknown KV type", [](nlohmann::json& j) { j["kv_dtype"] = "fp8"; },
       "'kv_dtype' must be \"f32\" or \"bf16\", got \"fp8\""},
      {"tensor parallel zero", [](nlohmann::json& j) { j["hardware"]["tensor_parallel"] = 0; },
       "'hardware.tensor_parallel' must be >= 1"},
  };
  for (const BadProfileCase& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    nlohmann::json json = nlohmann::json::parse(SerializeLatencyProfile(LinearProfile()));
    test_case.edit(json);
    absl::StatusOr<LatencyProfile> parsed = ParseLatencyProfile(json.dump(), "p.json");
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(parsed.status().message(), HasSubstr("latency profile 'p.json': "));
    EXPECT_THAT(parsed.status().message(), HasSubstr(test_case.expected));
  }
  absl::StatusOr<LatencyProfile> not_json = ParseLatencyProfile("{\"format\": ", "p.json");
  EXPECT_THAT(not_json.status().message(), HasSubstr("not valid JSON: "));
  // A number beyond double's range is a JSON error too, not an exception.
  EXPECT_THAT(ParseLatencyProfile("{\"format\": 1e999}", "p.json").status().message(),
              HasSubstr("not valid JSON: "));
  EXPECT_THAT(ParseLatencyProfile("[]", "p.json").status().message(),
              HasSubstr("the profile must be an object"));
}

}  // namespace
}  // namespace tandem
