#include "planner/config.h"

#include <string>

#include "core/env.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::planner {
namespace {

using ::testing::HasSubstr;

constexpr char kValidConfig[] = R"(# a complete planner config
mode: throughput
advisory: true
interval_s: 10
targets: {ttft_ms: 500, itl_ms: 50}
profile: profiles/test.json
predictor:
  kind: holt_winters
  horizon_s: 60
  alpha: 0.4
  season_period_s: 86400
prefill: {min: 1, max: 8, gpus_per_instance: 2}
decode: {min: 1, max: 6, gpus_per_instance: 4}
gpu_budget: 32
ratio: {min: 0.25, max: 3}
scale_out: {cooldown_s: 60}
scale_in: {cooldown_s: 600, margin: 0.25, stable_intervals: 4, step: 2}
throughput:
  max_decode_batch: 128
  correction: {smoothing: 0.5, min: 0.8, max: 2}
load: {window: 100, min_samples: 20}
)";

TEST(PlannerConfigTest, ParsesEveryField) {
  absl::StatusOr<PlannerConfig> config = ParsePlannerConfig(kValidConfig, "planner.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mode, PlannerMode::kThroughput);
  EXPECT_TRUE(config->advisory);
  EXPECT_DOUBLE_EQ(config->ttft_target_seconds, 0.5);
  EXPECT_DOUBLE_EQ(config->itl_target_seconds, 0.05);
  EXPECT_EQ(config->profile_path, "profiles/test.json");
  EXPECT_EQ(config->predictor.kind, PredictorKind::kHoltWinters);
  EXPECT_DOUBLE_EQ(config->predictor.alpha, 0.4);
  EXPECT_DOUBLE_EQ(config->predictor.season_period_seconds, 86400);
  EXPECT_DOUBLE_EQ(config->horizon_seconds, 60);
  EXPECT_EQ(config->bounds.prefill.max_instances, 8);
  EXPECT_EQ(config->bounds.prefill.gpus_per_instance, 2);
  EXPECT_EQ(config->bounds.decode.max_instances, 6);
  EXPECT_EQ(config->bounds.decode.gpus_per_instance, 4);
  EXPECT_EQ(config->bounds.gpu_budget, 32);
  EXPECT_DOUBLE_EQ(config->bounds.min_ratio, 0.25);
  EXPECT_DOUBLE_EQ(config->bounds.max_ratio, 3);
  EXPECT_DOUBLE_EQ(config->scale_out_cooldown_seconds, 60);
  EXPECT_DOUBLE_EQ(config->scale_in_cooldown_seconds, 600);
  EXPECT_DOUBLE_EQ(config->scale_in_margin, 0.25);
  EXPECT_EQ(config->scale_in_stable_intervals, 4);
  EXPECT_EQ(config->scale_in_step, 2);
  EXPECT_EQ(config->max_decode_batch, 128);
  EXPECT_DOUBLE_EQ(config->correction_smoothing, 0.5);
  EXPECT_DOUBLE_EQ(config->correction_min, 0.8);
  EXPECT_DOUBLE_EQ(config->correction_max, 2);
  EXPECT_EQ(config->regression_window, 100);
  EXPECT_EQ(config->regression_min_samples, 20);
}

TEST(PlannerConfigTest, LoadModeNeedsOnlyTargetsAndRoles) {
  absl::StatusOr<PlannerConfig> config = ParsePlannerConfig(
      "mode: load\ntargets: {ttft_ms: 300, itl_ms: 40}\nprefill: {max: 4}\ndecode: {max: 4}\n",
      "p.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->mode, PlannerMode::kLoad);
  EXPECT_FALSE(config->advisory);
  EXPECT_EQ(config->predictor.kind, PredictorKind::kLastValue);
}

struct BadConfig {
  const char* name;
  std::string yaml;
  const char* message;
};

// The load-mode base every bad case edits one line of (so each case fails for one reason).
std::string LoadConfig(const std::string& extra,
                       const std::string& targets = "ttft_ms: 300, itl_ms: 40",
                       const std::string& prefill = "min: 1, max: 4",
                       const std::string& decode = "min: 1, max: 4") {
  return "mode: load\ntargets: {" + targets + "}\nprefill: {" + prefill + "}\ndecode: {" + decode +
         "}\n" + extra;
}

TEST(PlannerConfigTest, RefusesBadConfigsWithClearMessages) {
  const BadConfig cases[] = {
      {"zero ttft", LoadConfig("", "ttft_ms: 0, itl_ms: 40"),
       "p.yaml:2: 'targets.ttft_ms' must be > 0, got 0"},
      {"negative itl", LoadConfig("", "ttft_ms: 300, itl_ms: -5"),
       "p.yaml:2: 'targets.itl_ms' must be > 0, got -5"},
      {"missing itl", LoadConfig("", "ttft_ms: 300"), "'targets' needs both ttft_ms and itl_ms"},
      {"ttft not a number", LoadConfig("", "ttft_ms: fast, itl_ms: 40"),
       "'targets.ttft_ms' must be a number, got 'fast'"},
      {"no targets", "mode: load\nprefill: {max: 1}\ndecode: {max: 1}\n", "missing 'targets'"},
      {"min above max", LoadConfig("", "ttft_ms: 300, itl_ms: 40", "min: 3, max: 2"),
       "p.yaml:3: 'prefill.min' (3) is greater than 'prefill.max' (2)"},
      {"zero min", LoadConfig("", "ttft_ms: 300, itl_ms: 40", "min: 1, max: 4", "min: 0, max: 2"),
       "'decode.min' must be >= 1"},
      {"zero TP", LoadConfig("", "ttft_ms: 300, itl_ms: 40", "max: 4, gpus_per_instance: 0"),
       "'prefill.gpus_per_instance' (the TP group size) must be >= 1, got 0"},
      {"throughput without profile",
       "targets: {ttft_ms: 300, itl_ms: 40}\nprefill: {max: 2}\ndecode: {max: 2}\n",
       "throughput mode needs a latency profile: set 'profile'"},
      {"unknown mode", LoadConfig("").replace(0, 10, "mode: fast"),
       "p.yaml:1: unknown 'mode' 'fast' (expected throughput or load)"},
      {"unknown predictor", LoadConfig("predictor: {kind: arima}\n"),
       "p.yaml:5: unknown predictor 'arima' (expected last_value, ewma, holt_winters or kalman)"},
      {"seasonal without season", LoadConfig("predictor: {kind: holt_winters}\n"),
       "holt_winters predictor needs season_period_s > 0"},
      {"alpha out of range", LoadConfig("predictor: {kind: ewma, alpha: 1.5}\n"),
       "alpha must be in (0, 1], got 1.5"},
      {"typo at top level", LoadConfig("gpu_budgte: 8\n"), "p.yaml:5: unknown key 'gpu_budgte'"},
      {"typo in a section", LoadConfig("scale_in: {cooldown: 30}\n"),
       "p.yaml:5: unknown key 'scale_in.cooldown' (known here: cooldown_s"},
      {"budget below the minimums",
       LoadConfig("gpu_budget: 4\n", "ttft_ms: 300, itl_ms: 40", "max: 4, gpus_per_instance: 2",
                  "max: 4, gpus_per_instance: 4"),
       "no replica counts satisfy the bounds together"},
      {"ratio min above max", LoadConfig("ratio: {min: 2, max: 1}\n"),
       "'ratio' needs 0 <= min <= max and max > 0, got min 2 and max 1"},
      {"ratio unreachable", LoadConfig("ratio: {min: 5}\n"),
       "no replica counts satisfy the bounds together"},
      {"margin of one", LoadConfig("scale_in: {margin: 1}\n"),
       "'scale_in.margin' must be in [0, 1), got 1"},
      {"negative budget", LoadConfig("gpu_budget: -1\n"), "'gpu_budget' must be >= 0"},
      {"window below min samples", LoadConfig("load: {window: 5, min_samples: 10}\n"),
       "'load' needs min_samples >= 2 and window >= min_samples"},
      {"section not a mapping", LoadConfig("ratio: 3\n"), "p.yaml:5: 'ratio' must be a mapping"},
      {"fractional count", LoadConfig("", "ttft_ms: 300, itl_ms: 40", "min: 1, max: 2.5"),
       "'prefill.max' must be a whole number, got '2.5'"},
      {"not yaml", "targets: {ttft_ms: 300", "p.yaml:1: not valid YAML"},
      {"empty", "", "the planner config is empty"},
      {"a list", "- 1\n- 2\n", "the planner config must be a mapping"},
  };
  for (const BadConfig& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    absl::StatusOr<PlannerConfig> config = ParsePlannerConfig(test_case.yaml, "p.yaml");
    ASSERT_FALSE(config.ok()) << test_case.yaml;
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(config.status().message(), HasSubstr(test_case.message)) << test_case.yaml;
  }
}

TEST(PlannerConfigTest, LoadsTheProfileBesideTheConfig) {
  FakeEnv env;
  env.SetFile("conf/planner.yaml", kValidConfig);
  absl::StatusOr<PlannerSetup> setup = LoadPlannerConfig(env, "conf/planner.yaml");
  ASSERT_FALSE(setup.ok());
  EXPECT_THAT(setup.status().message(),
              HasSubstr("conf/planner.yaml: 'profile' (needed in throughput mode)"));
  EXPECT_THAT(setup.status().message(), HasSubstr("conf/profiles/test.json"));

  LatencyProfile profile;
  profile.model.name = "m";
  profile.dtype = "f32";
  profile.hardware.description = "test";
  profile.prefill = {{100, 0, 0.01}, {1000, 0, 0.1}};
  profile.decode = {{1, 100, 0.01}, {8, 800, 0.02}};
  ASSERT_TRUE(WriteLatencyProfile(env, "conf/profiles/test.json", profile).ok());
  setup = LoadPlannerConfig(env, "conf/planner.yaml");
  ASSERT_TRUE(setup.ok()) << setup.status();
  ASSERT_TRUE(setup->model.has_value());
  EXPECT_NEAR(setup->model->PrefillSeconds(500), 0.05, 1e-12);

  EXPECT_THAT(LoadPlannerConfig(env, "nowhere.yaml").status().message(),
              HasSubstr("planner config"));
}

TEST(PlannerConfigTest, ParsesTheLiveSection) {
  constexpr char kLive[] = R"(mode: load
targets: {ttft_ms: 300, itl_ms: 40}
prefill: {max: 4}
decode: {max: 4}
live:
  listen: 0.0.0.0:8090
  router: http://router:8000
  scrape: [http://a:8080, b:8080]
  prometheus: http://prometheus:9090
  prometheus_window_s: 30
  prometheus_selector: namespace="serving"
  connector: kubernetes
  namespace: serving
  scale: [gen=apps/statefulsets/x-gen:1:8]
  role_of: {gen: decode}
)";
  absl::StatusOr<PlannerConfig> config = ParsePlannerConfig(kLive, "p.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  const LiveConfig& live = config->live;
  EXPECT_EQ(live.listen, "0.0.0.0:8090");
  EXPECT_EQ(live.router, "http://router:8000");
  EXPECT_EQ(live.scrape, (std::vector<std::string>{"http://a:8080", "b:8080"}));
  EXPECT_EQ(live.prometheus, "http://prometheus:9090");
  EXPECT_EQ(live.prometheus_window_seconds, 30);
  EXPECT_EQ(live.prometheus_selector, "namespace=\"serving\"");
  EXPECT_EQ(live.connector, "kubernetes");
  EXPECT_EQ(live.kubernetes_namespace, "serving");
  EXPECT_EQ(live.scale, std::vector<std::string>{"gen=apps/statefulsets/x-gen:1:8"});
  EXPECT_EQ(live.role_of, std::vector<std::string>{"gen=decode"});

  const std::string head =
      "mode: load\ntargets: {ttft_ms: 300, itl_ms: 40}\nprefill: {max: 4}\n"
      "decode: {max: 4}\nlive:\n";
  const std::pair<std::string, std::string> bad[] = {
      {"  connector: magic\n",
       "p.yaml:6: unknown 'live.connector' 'magic' (expected local, kubernetes or none)"},
      {"  scale: [decode=decode:2:1]\n", "p.yaml:6: 'live.scale': --scale 'decode=decode:2:1'"},
      {"  scale: decode=decode:1:2\n", "'live.scale' must be a list of strings"},
      {"  role_of: {gen: both}\n",
       "'live.role_of' maps 'gen' to 'both' (expected prefill or "
       "decode)"},
      {"  routr: http://x\n", "p.yaml:6: unknown key 'live.routr'"},
      {"  prometheus_window_s: -5\n", "'live.prometheus_window_s' must be > 0, got -5"},
  };
  for (const auto& [yaml, message] : bad) {
    absl::StatusOr<PlannerConfig> refused = ParsePlannerConfig(head + yaml, "p.yaml");
    ASSERT_FALSE(refused.ok()) << yaml;
    EXPECT_THAT(refused.status().message(), HasSubstr(message)) << yaml;
  }
}

TEST(PlannerConfigTest, SmallestFeasibleReplicasRespectsEveryBound) {
  ReplicaBounds bounds{.prefill = {.min_instances = 1, .max_instances = 8, .gpus_per_instance = 2},
                       .decode = {.min_instances = 1, .max_instances = 8, .gpus_per_instance = 4},
                       .gpu_budget = 0,
                       .min_ratio = 2,
                       .max_ratio = 3};
  // prefill >= 2 x decode: (2, 1) is the cheapest at 2*2 + 1*4 = 8 GPUs.
  absl::StatusOr<std::pair<int, int>> smallest = SmallestFeasibleReplicas(bounds);
  ASSERT_TRUE(smallest.ok()) << smallest.status();
  EXPECT_EQ(*smallest, std::make_pair(2, 1));
  bounds.gpu_budget = 7;
  EXPECT_FALSE(SmallestFeasibleReplicas(bounds).ok());
}

}  // namespace
}  // namespace tandem::planner
