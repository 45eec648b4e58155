#include "planner/planner.h"

#include <cmath>
#include <random>
#include <string>

#include "absl/strings/str_join.h"
#include "core/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "planner/interfaces.h"
#include "planner/observation.h"
#include "planner/report.h"

namespace tandem::planner {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;

// The profile's measurements follow exact linear laws so capacities can be computed by hand:
//   prefill seconds = 0.01 + 1e-4 * uncached + 1e-8 * uncached * cached
//   decode step     = 0.02 + 1e-3 * batch + 1e-6 * total context tokens
LatencyModel TestModel() {
  LatencyProfile profile;
  profile.model.name = "test-8b";
  profile.dtype = "bf16";
  profile.hardware.description = "test";
  for (int64_t uncached : {128, 512, 1024, 2048}) {
    profile.prefill.push_back({uncached, 0, 0.01 + 1e-4 * uncached});
  }
  profile.prefill.push_back({512, 1024, 0.01 + 1e-4 * 512 + 1e-8 * 512 * 1024});
  for (int64_t batch : {1, 8, 32}) {
    for (int64_t per_sequence : {256, 1024, 4096}) {
      int64_t context = batch * per_sequence;
      profile.decode.push_back({batch, context, 0.02 + 1e-3 * batch + 1e-6 * context});
    }
  }
  absl::StatusOr<LatencyModel> model = LatencyModel::Create(profile);
  EXPECT_TRUE(model.ok()) << model.status();
  return *model;
}

PlannerConfig ThroughputConfig() {
  PlannerConfig config;
  config.mode = PlannerMode::kThroughput;
  config.profile_path = "test.json";
  config.ttft_target_seconds = 0.3372;  // 3 x the 1024-token prefill time
  config.itl_target_seconds = 0.05;
  config.bounds.prefill = {.min_instances = 1, .max_instances = 10, .gpus_per_instance = 1};
  config.bounds.decode = {.min_instances = 1, .max_instances = 10, .gpus_per_instance = 1};
  config.scale_out_cooldown_seconds = 0;
  config.scale_in_cooldown_seconds = 0;
  config.scale_in_stable_intervals = 1;
  return config;
}

Planner MakePlanner(const PlannerConfig& config) {
  absl::StatusOr<Planner> planner = Planner::Create(
      config, config.mode == PlannerMode::kThroughput ? std::optional(TestModel()) : std::nullopt);
  EXPECT_TRUE(planner.ok()) << planner.status();
  return std::move(*planner);
}

// 20000 prompt tokens/s of 1024-token prompts, 1000 generated tokens/s at 1024 tokens of context.
Observation BaseObservation(double time = 0) {
  Observation o;
  o.time_seconds = time;
  o.prefill_instances = 1;
  o.decode_instances = 1;
  o.prompt_tokens_per_second = 20000;
  o.mean_prompt_tokens = 1024;
  o.output_tokens_per_second = 1000;
  o.mean_context_tokens = 1024;
  return o;
}

std::string Reasons(const Decision& decision) { return absl::StrJoin(decision.reasons, "\n"); }

TEST(ThroughputModeTest, SizesBothRolesFromTheProfile) {
  Planner planner = MakePlanner(ThroughputConfig());
  Decision decision = planner.Decide(BaseObservation());
  // Prefill: S = 0.01 + 1024e-4 = 0.1124 s, T = 0.3372 s, rho = 2 (T - S) / (2T - S) = 0.8,
  // capacity = 0.8 * 1024 / 0.1124 = 7288.26 tokens/s; 20000 / 7288.26 = 2.74 -> 3 instances.
  EXPECT_NEAR(decision.prefill.capacity_per_instance, 0.8 * 1024 / 0.1124, 1e-6);
  EXPECT_EQ(decision.prefill.target, 3);
  // Decode: step(B) = 0.02 + 0.002024 B <= 0.05 -> B = 14, 14 / 0.048336 = 289.64 tokens/s;
  // 1000 / 289.64 = 3.45 -> 4 instances.
  EXPECT_NEAR(decision.decode.capacity_per_instance, 14 / 0.048336, 1e-6);
  EXPECT_EQ(decision.decode.target, 4);
  EXPECT_EQ(decision.gpus, 7);
  EXPECT_TRUE(decision.changed);
  EXPECT_THAT(Reasons(decision), HasSubstr("-> 3 instances"));
  EXPECT_THAT(Reasons(decision), HasSubstr("14 sequences"));
}

TEST(ThroughputModeTest, DiscountsPrefixHitsButChargesTheCachedPrefix) {
  Planner planner = MakePlanner(ThroughputConfig());
  Observation o = BaseObservation();
  o.prompt_tokens_per_second = 40000;
  o.prefix_hit_rate = 0.5;
  o.mean_prompt_tokens = 2048;
  Decision decision = planner.Decide(o);
  // Uncached load 40000 * 0.5 = 20000 tokens/s, 1024 new tokens after 1024 cached:
  // S = 0.1124 + 1e-8 * 1024 * 1024 = 0.12288576 s, rho = 2 (0.3372 - S) / (0.6744 - S) = 0.77718,
  // capacity = rho * 1024 / S = 6476.24 tokens/s; 20000 / 6476.24 = 3.09 -> 4 instances.
  EXPECT_NEAR(decision.prefill.observed_load, 20000, 1e-9);
  EXPECT_NEAR(decision.prefill.capacity_per_instance, 6476.23636, 1e-3);
  EXPECT_EQ(decision.prefill.target, 4);
}

TEST(ThroughputModeTest, CorrectsTheProfileWithObservedLatency) {
  PlannerConfig config = ThroughputConfig();
  config.correction_smoothing = 1;  // take each observation as is
  Planner planner = MakePlanner(config);
  Observation o = BaseObservation();
  o.decode_instances = 2;
  o.active_sequences = 16;  // 8 per instance
  // Profiled step at batch 8, context 8 * 1024: 0.02 + 0.008 + 0.008192 = 0.036192 s; observed
  // 1.5 x that.
  o.itl_seconds = 1.5 * 0.036192;
  Decision decision = planner.Decide(o);
  EXPECT_NEAR(decision.decode.correction, 1.5, 1e-9);
  EXPECT_NEAR(decision.decode.predicted_latency_seconds, o.itl_seconds, 1e-12);
  // Corrected: 1.5 (0.02 + 0.002024 B) <= 0.05 -> B = 6, step 0.048216 s, 124.44 tokens/s;
  // 1000 / 124.44 = 8.04 -> 9 instances.
  EXPECT_NEAR(decision.decode.capacity_per_instance, 6 / 0.048216, 1e-6);
  EXPECT_EQ(decision.decode.target, 9);

  // Prefill: an observed TTFT equal to the profile's M/D/1 prediction gives correction 1.
  Planner second = MakePlanner(config);
  Observation p = BaseObservation();
  p.prefill_instances = 4;  // 5000 tokens/s each, rho = 5000 * 0.1124 / 1024 = 0.548828
  double rho = 5000 * 0.1124 / 1024;
  p.ttft_seconds = MeanTtftSeconds(0.1124, rho);
  decision = second.Decide(p);
  EXPECT_NEAR(decision.prefill.correction, 1.0, 1e-4);
  // Twice slower service explains a TTFT of MeanTtft(2S, 2 rho).
  Planner third = MakePlanner(config);
  p.ttft_seconds = MeanTtftSeconds(2 * 0.1124, 2 * rho * 0.9);
  p.prefill_instances = 4;
  decision = third.Decide(p);
  EXPECT_GT(decision.prefill.correction, 1.5);
  EXPECT_LT(decision.prefill.correction, 2.0);
}

TEST(ThroughputModeTest, UnreachableTargetsAreExplainedNotFatal) {
  PlannerConfig config = ThroughputConfig();
  config.ttft_target_seconds = 0.05;  // a 1024-token prompt alone takes 0.1124 s
  Planner planner = MakePlanner(config);
  Decision decision = planner.Decide(BaseObservation());
  EXPECT_THAT(Reasons(decision), HasSubstr("no load meets the target"));
  // Sized for 80% utilisation: 0.8 * 1024 / 0.1124 = 7288.26 tokens/s -> 3 instances.
  EXPECT_EQ(decision.prefill.target, 3);
}

TEST(ReplicaBoundsTest, GpuBudgetScalesBothRolesDownProportionally) {
  ReplicaBounds bounds{.prefill = {.min_instances = 1, .max_instances = 10, .gpus_per_instance = 2},
                       .decode = {.min_instances = 1, .max_instances = 10, .gpus_per_instance = 4},
                       .gpu_budget = 12};
  std::vector<std::string> reasons;
  // Wanted 3 x 2 + 4 x 4 = 22 GPUs > 12. Both roles x 0.749: floor(2.25) = 2 prefill,
  // floor(2.99) = 2 decode = 4 + 8 = 12 GPUs; no instance fits on top.
  EXPECT_EQ(ApplyReplicaBounds(3, 4, bounds, &reasons), std::make_pair(2, 2));
  EXPECT_THAT(absl::StrJoin(reasons, "\n"), HasSubstr("GPU budget 12"));
  // Budget 18: x 0.75 gives (2, 3) = 16 GPUs, then prefill (3/2 = 1.5 short) vs decode
  // (4/3 = 1.33 short): prefill + 1 = 3 x 2 + 3 x 4 = 18 fits.
  bounds.gpu_budget = 18;
  EXPECT_EQ(ApplyReplicaBounds(3, 4, bounds, &reasons), std::make_pair(3, 3));
  // Within budget: untouched.
  reasons.clear();
  EXPECT_EQ(ApplyReplicaBounds(1, 2, bounds, &reasons), std::make_pair(1, 2));
  EXPECT_TRUE(reasons.empty());
}

TEST(ReplicaBoundsTest, RatioBoundsRaiseTheLaggingRole) {
  ReplicaBounds bounds{.prefill = {.min_instances = 1, .max_instances = 10},
                       .decode = {.min_instances = 1, .max_instances = 10},
                       .min_ratio = 1,
                       .max_ratio = 2};
  std::vector<std::string> reasons;
  // 3 prefill : 4 decode = 0.75 < 1 -> prefill raised to 4.
  EXPECT_EQ(ApplyReplicaBounds(3, 4, bounds, &reasons), std::make_pair(4, 4));
  // 9 : 2 = 4.5 > 2 -> decode raised to ceil(9 / 2) = 5.
  EXPECT_EQ(ApplyReplicaBounds(9, 2, bounds, &reasons), std::make_pair(9, 5));
  // Decode capped at 4: prefill lowered to 2 x 4 = 8.
  bounds.decode.max_instances = 4;
  EXPECT_EQ(ApplyReplicaBounds(9, 2, bounds, &reasons), std::make_pair(8, 4));
  EXPECT_THAT(absl::StrJoin(reasons, "\n"), HasSubstr("decode is at its maximum 4"));
  // Role bounds first: 0 prefill becomes the minimum 1, 20 decode the maximum 4... then the ratio
  // raises prefill to 4.
  reasons.clear();
  EXPECT_EQ(ApplyReplicaBounds(0, 20, bounds, &reasons), std::make_pair(4, 4));
  EXPECT_THAT(absl::StrJoin(reasons, "\n"), HasSubstr("role maximum is 4"));
}

TEST(ReplicaBoundsTest, EveryResultSatisfiesEveryBound) {
  const uint64_t seed = 97531;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  auto uniform = [&](int low, int high) {
    return std::uniform_int_distribution<int>(low, high)(rng);
  };
  int checked = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    ReplicaBounds bounds;
    bounds.prefill.min_instances = uniform(1, 4);
    bounds.prefill.max_instances = bounds.prefill.min_instances + uniform(0, 12);
    bounds.prefill.gpus_per_instance = uniform(1, 8);
    bounds.decode.min_instances = uniform(1, 4);
    bounds.decode.max_instances = bounds.decode.min_instances + uniform(0, 12);
    bounds.decode.gpus_per_instance = uniform(1, 8);
    bounds.gpu_budget = uniform(0, 1) == 0 ? 0 : uniform(4, 120);
    bounds.min_ratio = uniform(0, 1) == 0 ? 0 : uniform(1, 8) / 4.0;
    bounds.max_ratio = uniform(0, 2) == 0 ? INFINITY : bounds.min_ratio + uniform(1, 12) / 4.0;
    if (!SmallestFeasibleReplicas(bounds).ok()) continue;
    int want_prefill = uniform(0, 30), want_decode = uniform(0, 30);
    std::vector<std::string> reasons;
    auto [prefill, decode] = ApplyReplicaBounds(want_prefill, want_decode, bounds, &reasons);
    SCOPED_TRACE(::testing::Message() << "trial " << trial << " want " << want_prefill << ","
                                      << want_decode << " got " << prefill << "," << decode);
    ++checked;
    ASSERT_GE(prefill, bounds.prefill.min_instances);
    ASSERT_LE(prefill, bounds.prefill.max_instances);
    ASSERT_GE(decode, bounds.decode.min_instances);
    ASSERT_LE(decode, bounds.decode.max_instances);
    ASSERT_GE(prefill + 1e-9, bounds.min_ratio * decode);
    ASSERT_LE(prefill, bounds.max_ratio * decode + 1e-9);
    if (bounds.gpu_budget > 0) {
      ASSERT_LE(
          prefill * bounds.prefill.gpus_per_instance + decode * bounds.decode.gpus_per_instance,
          bounds.gpu_budget);
    }
    // A request that already satisfies everything is kept as is.
    bool wanted_ok =
        want_prefill >= bounds.prefill.min_instances &&
        want_prefill <= bounds.prefill.max_instances &&
        want_decode >= bounds.decode.min_instances && want_decode <= bounds.decode.max_instances &&
        want_prefill + 1e-9 >= bounds.min_ratio * want_decode &&
        want_prefill <= bounds.max_ratio * want_decode + 1e-9 &&
        (bounds.gpu_budget == 0 || want_prefill * bounds.prefill.gpus_per_instance +
                                           want_decode * bounds.decode.gpus_per_instance <=
                                       bounds.gpu_budget);
    if (wanted_ok) {
      ASSERT_EQ(prefill, want_prefill);
      ASSERT_EQ(decode, want_decode);
    }
  }
  EXPECT_GT(checked, 1000);
}

TEST(HysteresisTest, ScaleInWaitsForStableLoadAndStepsOneAtATime) {
  PlannerConfig config = ThroughputConfig();
  config.scale_in_stable_intervals = 3;
  config.scale_in_margin = 0.2;
  Planner planner = MakePlanner(config);
  Observation o = BaseObservation();
  o.prefill_instances = 3;
  o.decode_instances = 4;
  // Prefill at 2.5 instances' worth (18220.6 tokens/s): 3 are needed, and scaling in would need
  // 2.5 / 0.8 = 3.1 -> 4 > 3: hold.
  o.prompt_tokens_per_second = 2.5 * 0.8 * 1024 / 0.1124;
  Decision decision = planner.Decide(o);
  EXPECT_EQ(decision.prefill.target, 3);
  // Load falls to 1.5 instances' worth: 1.5 / 0.8 = 1.9 -> 2 would do; wait 3 evaluations.
  o.prompt_tokens_per_second = 1.5 * 0.8 * 1024 / 0.1124;
  for (int i = 1; i <= 2; ++i) {
    o.time_seconds = 10 * i;
    decision = planner.Decide(o);
    EXPECT_EQ(decision.prefill.target, 3) << i;
    EXPECT_THAT(Reasons(decision), HasSubstr(absl::StrCat("for ", i, " of 3 evaluations")));
  }
  o.time_seconds = 30;
  decision = planner.Decide(o);
  EXPECT_EQ(decision.prefill.target, 2);
}

TEST(HysteresisTest, CooldownHoldsAScaleOut) {
  PlannerConfig config = ThroughputConfig();
  config.scale_out_cooldown_seconds = 60;
  Planner planner = MakePlanner(config);
  Decision decision = planner.Decide(BaseObservation(0));
  EXPECT_EQ(decision.prefill.target, 3);
  Observation o = BaseObservation(30);
  o.prefill_instances = 3;
  o.decode_instances = 4;
  o.prompt_tokens_per_second = 40000;  // 5.5 instances' worth
  decision = planner.Decide(o);
  EXPECT_EQ(decision.prefill.target, 3);
  EXPECT_THAT(Reasons(decision), HasSubstr("scale-out cooldown, 30 s left"));
  o.time_seconds = 60;
  decision = planner.Decide(o);
  EXPECT_EQ(decision.prefill.target, 6);
}

// Replays one simulated hour of flat load with seeded noise and counts replica changes.
int ChangesInAnHour(PlannerConfig config, uint64_t seed) {
  Planner planner = MakePlanner(config);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(1.0, 0.04);
  const double prefill_capacity = 0.8 * 1024 / 0.1124;  // tokens/s per instance
  const double decode_capacity = 14 / 0.048336;
  int prefill = 3, decode = 3, changes = 0;
  for (int step = 0; step < 360; ++step) {  // every 10 s for an hour
    Observation o = BaseObservation(10.0 * step);
    o.prefill_instances = prefill;
    o.decode_instances = decode;
    // Flat at 2.95 instances' worth: noise pushes it across 3 every few intervals.
    o.prompt_tokens_per_second = 2.95 * prefill_capacity * noise(rng);
    o.output_tokens_per_second = 2.95 * decode_capacity * noise(rng);
    Decision decision = planner.Decide(o);
    changes += (decision.prefill.target != prefill) + (decision.decode.target != decode);
    prefill = decision.prefill.target;  // a connector applies it at once
    decode = decision.decode.target;
  }
  return changes;
}

TEST(HysteresisTest, NoisyFlatLoadDoesNotFlap) {
  const uint64_t seed = 8675309;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  PlannerConfig damped = ThroughputConfig();
  damped.scale_out_cooldown_seconds = 60;
  damped.scale_in_cooldown_seconds = 300;
  damped.scale_in_margin = 0.2;
  damped.scale_in_stable_intervals = 3;
  int damped_changes = ChangesInAnHour(damped, seed);
  // Without hysteresis or cooldowns the same load flaps: the assertion below can fail.
  PlannerConfig raw = ThroughputConfig();
  raw.scale_in_margin = 0;
  int raw_changes = ChangesInAnHour(raw, seed);
  std::printf("noisy flat load, one hour at 10 s: %d changes with hysteresis, %d without\n",
              damped_changes, raw_changes);
  EXPECT_LE(damped_changes, 4);
  EXPECT_GT(raw_changes, 20);
}

PlannerConfig LoadConfig() {
  PlannerConfig config = ThroughputConfig();
  config.mode = PlannerMode::kLoad;
  config.profile_path.clear();
  config.ttft_target_seconds = 0.25;
  config.itl_target_seconds = 0.05;
  config.regression_min_samples = 4;
  return config;
}

// Instances whose TTFT follows 0.05 + 1e-4 x active tokens (SLA point 2000 tokens at 0.25 s) and
// whose ITL follows 0.01 + 1e-3 x active blocks (SLA point 40 blocks at 0.05 s).
Observation LoadObservation(double time, const std::vector<double>& prefill_active,
                            const std::vector<double>& decode_active) {
  Observation o;
  o.time_seconds = time;
  o.prefill_instances = static_cast<int>(prefill_active.size());
  o.decode_instances = static_cast<int>(decode_active.size());
  for (double active : prefill_active) o.prefill_load.push_back({active, 0.05 + 1e-4 * active});
  for (double active : decode_active) o.decode_load.push_back({active, 0.01 + 1e-3 * active});
  return o;
}

TEST(LoadModeTest, ScalesOutWhenEveryInstanceIsPastTheSlaPoint) {
  Planner planner = MakePlanner(LoadConfig());
  // Warm-up: two instances each, under their SLA points; two evaluations give 4 samples.
  Decision decision = planner.Decide(LoadObservation(0, {1000, 1500}, {20, 30}));
  EXPECT_THAT(Reasons(decision), HasSubstr("regression not ready (2 samples, 4 needed"));
  EXPECT_EQ(decision.prefill.target, 2);
  decision = planner.Decide(LoadObservation(10, {1200, 1800}, {25, 35}));
  EXPECT_EQ(decision.prefill.target, 2);
  EXPECT_NEAR(decision.prefill.capacity_per_instance, 2000, 1e-6);
  EXPECT_NEAR(decision.decode.capacity_per_instance, 40, 1e-6);
  // One prefill instance past 2000, one not: no scale-out yet.
  decision = planner.Decide(LoadObservation(20, {2500, 1900}, {30, 30}));
  EXPECT_EQ(decision.prefill.target, 2);
  // Both past: 2600 + 2400 = 5000 tokens over 2000 per instance -> 3 instances.
  decision = planner.Decide(LoadObservation(30, {2600, 2400}, {30, 30}));
  EXPECT_EQ(decision.prefill.target, 3);
  EXPECT_THAT(Reasons(decision), HasSubstr("every instance is past the SLA point"));
  // Decode: 3 x 50 blocks = 150 over 40 per instance -> 4.
  decision = planner.Decide(LoadObservation(40, {1000, 1000, 1000}, {50, 50, 50}));
  EXPECT_EQ(decision.decode.target, 4);
}

TEST(LoadModeTest, ScalesInOnlyWhenOneFewerStaysUnderTheSlaPoint) {
  PlannerConfig config = LoadConfig();
  Planner planner = MakePlanner(config);
  planner.Decide(LoadObservation(0, {1000, 1500, 500}, {20, 30, 10}));
  planner.Decide(LoadObservation(10, {1200, 1800, 600}, {25, 35, 15}));
  // 3 prefill instances with 3500 tokens: 2 would carry 1750 each > 0.8 x 2000 = 1600: hold.
  Decision decision = planner.Decide(LoadObservation(20, {1100, 1200, 1200}, {10, 10, 10}));
  EXPECT_EQ(decision.prefill.target, 3);
  // 2400 tokens: 2 would carry 1200 each <= 1600: scale in by one.
  decision = planner.Decide(LoadObservation(30, {800, 800, 800}, {10, 10, 10}));
  EXPECT_EQ(decision.prefill.target, 2);
  EXPECT_THAT(Reasons(decision), HasSubstr("2 instances would stay under it"));
}

TEST(AdvisoryModeTest, PublishesDecisionsWithoutActing) {
  PlannerConfig config = ThroughputConfig();
  config.advisory = true;
  Planner planner = MakePlanner(config);
  SnapshotMetricsSource source({BaseObservation(0), BaseObservation(10)});
  AdvisoryConnector connector;
  MetricsRegistry registry;
  DecisionMetrics metrics(registry);
  for (double now : {0.0, 10.0}) {
    absl::StatusOr<Observation> observation = source.Collect(now);
    ASSERT_TRUE(observation.ok());
    Decision decision = planner.Decide(*observation);
    EXPECT_TRUE(decision.advisory);
    EXPECT_THAT(decision.reasons.back(), HasSubstr("(advisory: not applied)"));
    metrics.Record(decision);
    ASSERT_TRUE(connector.Apply(decision).ok());
  }
  EXPECT_EQ(source.Collect(20).status().code(), absl::StatusCode::kOutOfRange);
  ASSERT_EQ(connector.decisions().size(), 2u);
  // Nothing acted, so the second decision still sees one instance each and asks again.
  EXPECT_EQ(connector.decisions()[1].prefill.current, 1);
  EXPECT_EQ(connector.decisions()[1].prefill.target, 3);
  std::string text = registry.RenderPrometheus();
  EXPECT_THAT(text, HasSubstr("tandem_planner_replicas{role=\"prefill\",kind=\"target\"} 3"));
  EXPECT_THAT(text, HasSubstr("tandem_planner_replicas{role=\"decode\",kind=\"target\"} 4"));
  EXPECT_THAT(text, HasSubstr("tandem_planner_advisory 1"));
  EXPECT_THAT(text, HasSubstr("tandem_planner_decisions_total{role=\"prefill\",action=\"up\","
                              "reason=\"load\"} 2"));
  EXPECT_THAT(FormatDecision(connector.decisions()[0]), HasSubstr("1 -> 3 instances"));
  EXPECT_THAT(DecisionToJson(connector.decisions()[0]), HasSubstr("\"target\": 3"));
}

TEST(PlannerTest, RefusesBadObservationsAndKeepsCounts) {
  Planner planner = MakePlanner(ThroughputConfig());
  Observation o = BaseObservation(10);
  o.prefix_hit_rate = 1.5;
  Decision decision = planner.Decide(o);
  EXPECT_FALSE(decision.changed);
  EXPECT_EQ(decision.prefill.target, 1);
  EXPECT_THAT(Reasons(decision), HasSubstr("'prefix_hit_rate' must be in [0, 1], got 1.5"));
  planner.Decide(BaseObservation(10));
  decision = planner.Decide(BaseObservation(5));
  EXPECT_THAT(Reasons(decision), HasSubstr("before the previous observation"));
  EXPECT_FALSE(Planner::Create(ThroughputConfig(), std::nullopt).ok());
}

TEST(ObservationJsonTest, RoundTripsAndRefusesBadSnapshots) {
  Observation o = LoadObservation(5, {100, 200}, {3});
  o.prompt_tokens_per_second = 1234.5;
  absl::StatusOr<std::vector<Observation>> parsed = ParseObservations(ObservationToJson(o), "s");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ(ObservationToJson((*parsed)[0]), ObservationToJson(o));

  const std::pair<const char*, const char*> bad[] = {
      {R"({"prefill_instances": 1})", "s: missing 'time_s'"},
      {R"({"time_s": 1, "prompt_tokens_per_sec": 5})", "s: unknown key 'prompt_tokens_per_sec'"},
      {R"({"time_s": 1, "ttft_s": -1})", "'ttft_s' must be a finite number >= 0, got -1"},
      {R"({"time_s": 1, "decode_instances": 1, "decode_load": [{"active": 1}, {"active": 2}]})",
       "'decode_load' has 2 entries but only 1 instances are running"},
      {R"([{"time_s": 5}, {"time_s": 4}])", "s[1]: time_s 4 goes back from 5"},
      {R"({"time_s": "now"})", "s.time_s must be a number, got string"},
      {R"([])", "the list of observations is empty"},
      {R"({"time_s": )", "not valid JSON"},
      {R"({"time_s": 8E888})", "not valid JSON"},
  };
  for (const auto& [json, message] : bad) {
    SCOPED_TRACE(json);
    absl::StatusOr<std::vector<Observation>> result = ParseObservations(json, "s");
    ASSERT_FALSE(result.ok());
    EXPECT_THAT(result.status().message(), HasSubstr(message));
  }
}

}  // namespace
}  // namespace tandem::planner
