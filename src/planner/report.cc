#include "planner/report.h"

#include <string>

#include "absl/strings/str_join.h"
#include "core/logging.h"

namespace tandem::planner {

DecisionMetrics::DecisionMetrics(MetricsRegistry& registry)
    : current_(registry.AddGauge("tandem_planner_current_replicas",
                                 "Instances running when the planner last decided.", {"role"})),
      target_(registry.AddGauge("tandem_planner_target_replicas",
                                "Instances the planner chose (TP groups).", {"role"})),
      observed_load_(registry.AddGauge(
          "tandem_planner_observed_load",
          "Load seen in the last interval (throughput mode: tokens/s; load mode: active "
          "tokens or KV blocks).",
          {"role"})),
      predicted_load_(registry.AddGauge("tandem_planner_predicted_load",
                                        "Load forecast for the planning horizon.", {"role"})),
      capacity_(registry.AddGauge("tandem_planner_capacity_per_instance",
                                  "Load one instance carries within its latency target.",
                                  {"role"})),
      correction_(registry.AddGauge("tandem_planner_correction_factor",
                                    "Observed / profiled latency applied to the profile.",
                                    {"role"})),
      observed_latency_(registry.AddGauge("tandem_planner_observed_latency_seconds",
                                          "Mean TTFT (prefill) or ITL (decode) observed.",
                                          {"role"})),
      predicted_latency_(registry.AddGauge(
          "tandem_planner_predicted_latency_seconds",
          "Mean TTFT (prefill) or ITL (decode) the model expects at the observed load.", {"role"})),
      gpus_(registry.AddGauge("tandem_planner_target_gpus", "GPUs the chosen replicas use.")),
      advisory_(registry.AddGauge("tandem_planner_advisory",
                                  "1 when decisions are published but not applied.")),
      decisions_(registry.AddCounter("tandem_planner_decisions_total",
                                     "Decisions by outcome (change or hold).", {"outcome"})) {}

void DecisionMetrics::Record(const Decision& decision) {
  for (const auto& [role, values] :
       {std::pair<const char*, const RoleDecision*>{"prefill", &decision.prefill},
        {"decode", &decision.decode}}) {
    current_.Get(role).Set(values->current);
    target_.Get(role).Set(values->target);
    observed_load_.Get(role).Set(values->observed_load);
    predicted_load_.Get(role).Set(values->predicted_load);
    capacity_.Get(role).Set(values->capacity_per_instance);
    correction_.Get(role).Set(values->correction);
    observed_latency_.Get(role).Set(values->observed_latency_seconds);
    predicted_latency_.Get(role).Set(values->predicted_latency_seconds);
  }
  gpus_.Get().Set(static_cast<double>(decision.gpus));
  advisory_.Get().Set(decision.advisory ? 1 : 0);
  decisions_.Get(decision.changed ? "change" : "hold").Increment();
}

void LogDecision(const Decision& decision) {
  std::string reasons = absl::StrJoin(decision.reasons, "; ");
  LogInfo("planner decision", {{"time_s", decision.time_seconds},
                               {"mode", std::string(PlannerModeName(decision.mode))},
                               {"advisory", decision.advisory},
                               {"prefill_current", decision.prefill.current},
                               {"prefill_target", decision.prefill.target},
                               {"prefill_predicted_load", decision.prefill.predicted_load},
                               {"decode_current", decision.decode.current},
                               {"decode_target", decision.decode.target},
                               {"decode_predicted_load", decision.decode.predicted_load},
                               {"gpus", decision.gpus},
                               {"changed", decision.changed},
                               {"reason", reasons}});
}

}  // namespace tandem::planner
