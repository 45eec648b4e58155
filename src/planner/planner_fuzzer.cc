// Fuzzes the planner's inputs: the YAML config, the latency profile JSON (then queries the model
// built from it), metrics snapshots (then replays them through a planner), the roles' /metrics
// text (parsed, turned into observations over two scrapes, decided on), Prometheus API answers
// and the router's worker list. The first byte picks which; nothing may crash, hang or trip a
// sanitizer, whatever the text.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/latency_profile.h"
#include "planner/config.h"
#include "planner/metrics_scraper.h"
#include "planner/observation.h"
#include "planner/planner.h"
#include "planner/prometheus_source.h"
#include "planner/prometheus_text.h"
#include "planner/scale_targets.h"

namespace {

void FuzzProfile(std::string_view text) {
  absl::StatusOr<tandem::LatencyProfile> profile = tandem::ParseLatencyProfile(text, "fuzz");
  if (!profile.ok()) return;
  absl::StatusOr<tandem::LatencyModel> model = tandem::LatencyModel::Create(*profile);
  if (!model.ok()) return;
  for (int64_t tokens : {int64_t{0}, int64_t{1}, int64_t{777}, int64_t{1} << 40}) {
    (void)model->PrefillSeconds(tokens, tokens / 2);
    (void)model->DecodeStepSeconds(tokens + 1, tokens * 3);
  }
  (void)tandem::MaxPrefillThroughput(*model, {.ttft_target_seconds = 0.5, .uncached_tokens = 900});
  (void)tandem::MaxDecodeConcurrency(*model,
                                     {.itl_target_seconds = 0.05, .mean_context_tokens = 2000});
}

tandem::planner::Planner LoadPlanner() {
  tandem::planner::PlannerConfig config;
  config.mode = tandem::planner::PlannerMode::kLoad;
  config.ttft_target_seconds = 0.3;
  config.itl_target_seconds = 0.05;
  config.bounds.prefill = {.min_instances = 1, .max_instances = 8, .gpus_per_instance = 2};
  config.bounds.decode = {.min_instances = 1, .max_instances = 8, .gpus_per_instance = 1};
  config.bounds.gpu_budget = 16;
  config.regression_min_samples = 2;
  absl::StatusOr<tandem::planner::Planner> planner =
      tandem::planner::Planner::Create(config, std::nullopt);
  if (!planner.ok()) __builtin_trap();  // the fixed config above is valid
  return *std::move(planner);
}

void FuzzSnapshot(std::string_view text) {
  absl::StatusOr<std::vector<tandem::planner::Observation>> history =
      tandem::planner::ParseObservations(text, "fuzz");
  if (!history.ok()) return;
  tandem::planner::Planner planner = LoadPlanner();
  for (const tandem::planner::Observation& observation : *history) {
    (void)planner.Decide(observation);
  }
}

// The text as one process's /metrics at two scrapes (the second half is the later one), under
// each role, then decided on.
void FuzzExposition(std::string_view text) {
  const size_t half = text.size() / 2;
  tandem::planner::ObservationBuilder builder;
  tandem::planner::Planner planner = LoadPlanner();
  double now = 0;
  for (std::string_view part : {text.substr(0, half), text.substr(half)}) {
    std::vector<tandem::planner::TargetScrape> targets;
    for (const char* role : {"", "router", "prefill", "decode", "both"}) {
      tandem::planner::TargetScrape target;
      target.url = std::string("http://") + role;
      target.role = role;
      target.metrics = tandem::planner::ParsePrometheusText(part);
      targets.push_back(std::move(target));
    }
    absl::StatusOr<tandem::planner::Observation> observation = builder.Build(now += 1, targets);
    if (observation.ok()) (void)planner.Decide(*observation);
  }
}

void FuzzAnswers(std::string_view text) {
  (void)tandem::planner::ParsePrometheusResponse(text);
  (void)tandem::planner::ParseWorkerList(text);
  (void)tandem::planner::ParseScaleTarget(text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0:
      (void)tandem::planner::ParsePlannerConfig(text, "fuzz");
      break;
    case 1:
      FuzzProfile(text);
      break;
    case 2:
      FuzzSnapshot(text);
      break;
    case 3:
      FuzzExposition(text);
      break;
    default:
      FuzzAnswers(text);
      break;
  }
  return 0;
}
