// The planner's configuration (YAML, described in docs/planner.md): SLA targets, mode, per-role
// bounds and TP-group size, GPU budget, prefill:decode ratio bounds, cooldowns and hysteresis,
// predictor choice and the latency profile for throughput mode.
//
//   TANDEM_ASSIGN_OR_RETURN(PlannerSetup setup, LoadPlannerConfig(env, "planner.yaml"));
//   TANDEM_ASSIGN_OR_RETURN(Planner planner, Planner::Create(setup.config, setup.model));
//
// ParsePlannerConfig is pure (text in, value out) and checks everything that can be checked
// without the profile; LoadPlannerConfig also reads the profile through Env. Every refusal names
// the file, the line and the key, and says what was expected.
//
// Thread-safety: plain values and stateless functions.
#pragma once

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "core/env.h"
#include "core/latency_profile.h"
#include "planner/predictor.h"

namespace tandem::planner {

enum class PlannerMode {
  // Sizes roles from predicted load and the profiled per-instance capacity at the SLA targets.
  kThroughput,
  // Needs no profile: regresses observed latency on per-instance load online.
  kLoad,
};
std::string_view PlannerModeName(PlannerMode mode);

// One role's scaling bounds. An instance is a TP group of `gpus_per_instance` GPUs.
struct RoleBounds {
  int min_instances = 1;
  int max_instances = 1;
  int gpus_per_instance = 1;
};

// The constraints every decision satisfies, whatever the load asks for.
struct ReplicaBounds {
  RoleBounds prefill;
  RoleBounds decode;
  int gpu_budget = 0;  // total GPUs for both roles; 0 = no budget
  // prefill instances / decode instances must lie in [min_ratio, max_ratio].
  double min_ratio = 0;
  double max_ratio = std::numeric_limits<double>::infinity();
};

// Whether `prefill` / `decode` instances lie within the bounds' ratio (compared as products, so
// ratios such as 1/3 stay exact).
bool RatioHolds(int prefill, int decode, const ReplicaBounds& bounds);

// The GPUs `prefill` and `decode` instances take.
int64_t Gpus(int prefill, int decode, const ReplicaBounds& bounds);

// Where the live planner reads metrics and how it applies decisions (the `live` section; each
// field is also a `tandem planner` flag, which wins). Empty = not set.
struct LiveConfig {
  std::string listen;               // HOST:PORT of /metrics, /health, /ready, /v1/decision
  std::string router;               // router URL: its /metrics and GET /v1/workers
  std::vector<std::string> scrape;  // more /metrics to read
  std::string prometheus;           // a Prometheus server's URL instead of scraping
  double prometheus_window_seconds = 0;
  std::string prometheus_selector;
  std::string connector;  // local, kubernetes or none
  std::string orchestrator;
  std::string orchestrator_state;
  std::string kubernetes_namespace;
  std::vector<std::string> scale;    // NAME=RESOURCE[*PODS][,...]:MIN:MAX, checked when parsed
  std::vector<std::string> role_of;  // NAME=prefill|decode
};

struct PlannerConfig {
  PlannerMode mode = PlannerMode::kThroughput;
  // Compute and publish decisions without acting on them.
  bool advisory = false;
  double interval_seconds = 10;

  double ttft_target_seconds = 0;
  double itl_target_seconds = 0;

  // Throughput mode: the profile written by `tandem profile`, as written in the file and resolved
  // against the config file's folder.
  std::string profile_path;

  PredictorOptions predictor;
  double horizon_seconds = 60;

  ReplicaBounds bounds;

  // A role scales out at most once per `scale_out_cooldown_seconds` and in at most once per
  // `scale_in_cooldown_seconds` (counted from its last change in either direction).
  double scale_out_cooldown_seconds = 30;
  double scale_in_cooldown_seconds = 300;
  // Scale in only to a count that would run at most (1 - margin) of its capacity, only after the
  // smaller count has been enough for `scale_in_stable_intervals` evaluations in a row, and by at
  // most `scale_in_step` instances at a time.
  double scale_in_margin = 0.2;
  int scale_in_stable_intervals = 3;
  int scale_in_step = 1;

  // Throughput mode.
  int64_t max_decode_batch = 256;
  // Correction factor = observed / profiled latency, smoothed (weight of the newest sample) and
  // clamped so that one odd interval cannot resize the fleet.
  double correction_smoothing = 0.3;
  double correction_min = 0.5;
  double correction_max = 3.0;

  // Load mode: the regression uses the last `regression_window` (load, latency) samples and is
  // trusted once it has `regression_min_samples`.
  int regression_window = 200;
  int regression_min_samples = 10;

  LiveConfig live;
};

// Checks every field, including that some replica counts satisfy all bounds at once.
absl::Status ValidatePlannerConfig(const PlannerConfig& config);

// Parses YAML text; `source` names it in messages. Relative `profile` paths are kept as written.
absl::StatusOr<PlannerConfig> ParsePlannerConfig(std::string_view yaml, std::string_view source);

struct PlannerSetup {
  PlannerConfig config;
  std::optional<LatencyModel> model;  // set in throughput mode
};
// Reads the config file and, in throughput mode, its latency profile (path relative to the
// config file's folder unless absolute).
absl::StatusOr<PlannerSetup> LoadPlannerConfig(Env& env, const std::string& path);

// The smallest-GPU replica counts that satisfy `bounds` (ties: fewer prefill instances), or an
// error naming the conflicting bounds.
absl::StatusOr<std::pair<int, int>> SmallestFeasibleReplicas(const ReplicaBounds& bounds);

}  // namespace tandem::planner
