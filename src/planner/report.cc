#include "planner/report.h"

#include <string>

#include "absl/strings/str_join.h"
#include "core/logging.h"

namespace tandem::planner {

DecisionMetrics::DecisionMetrics(MetricsRegistry& registry)
    : replicas_(registry.AddGauge("tandem_planner_replicas",
                                  "Instances (TP groups) of a role: running when the planner last "
                                  "decided (current), asked for by the load (proposed), chosen "
                                  "after the bounds (target).",
                                  {"role", "kind"})),
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
      latency_(registry.AddGauge("tandem_planner_latency_seconds",
                                 "Mean TTFT (prefill) or ITL (decode): observed, and predicted by "
                                 "the model at the observed load.",
                                 {"role", "kind"})),
      gpus_(registry.AddGauge("tandem_planner_target_gpus", "GPUs the chosen replicas use.")),
      advisory_(registry.AddGauge("tandem_planner_advisory",
                                  "1 when decisions are published but not applied.")),
      decisions_(registry.AddCounter("tandem_planner_decisions_total",
                                     "Decisions per role by action (up, down, hold) and reason.",
                                     {"role", "action", "reason"})) {}

const char* ActionOf(const RoleDecision& role) {
  if (role.target > role.current) return "up";
  if (role.target < role.current) return "down";
  return "hold";
}

void DecisionMetrics::Record(const Decision& decision) {
  for (const auto& [role, values] :
       {std::pair<const char*, const RoleDecision*>{"prefill", &decision.prefill},
        {"decode", &decision.decode}}) {
    replicas_.Get(role, "current").Set(values->current);
    replicas_.Get(role, "proposed").Set(values->proposed);
    replicas_.Get(role, "target").Set(values->target);
    observed_load_.Get(role).Set(values->observed_load);
    predicted_load_.Get(role).Set(values->predicted_load);
    capacity_.Get(role).Set(values->capacity_per_instance);
    correction_.Get(role).Set(values->correction);
    latency_.Get(role, "observed").Set(values->observed_latency_seconds);
    latency_.Get(role, "predicted").Set(values->predicted_latency_seconds);
    decisions_.Get(role, ActionOf(*values), values->reason).Increment();
  }
  gpus_.Get().Set(static_cast<double>(decision.gpus));
  advisory_.Get().Set(decision.advisory ? 1 : 0);
}

void LogDecision(const Decision& decision) {
  std::string reasons = absl::StrJoin(decision.reasons, "; ");
  LogInfo("planner decision", {{"time_s", decision.time_seconds},
                               {"mode", std::string(PlannerModeName(decision.mode))},
                               {"advisory", decision.advisory},
                               {"prefill_current", decision.prefill.current},
                               {"prefill_target", decision.prefill.target},
                               {"prefill_action", ActionOf(decision.prefill)},
                               {"prefill_reason", decision.prefill.reason},
                               {"prefill_observed_load", decision.prefill.observed_load},
                               {"prefill_predicted_load", decision.prefill.predicted_load},
                               {"decode_current", decision.decode.current},
                               {"decode_target", decision.decode.target},
                               {"decode_action", ActionOf(decision.decode)},
                               {"decode_reason", decision.decode.reason},
                               {"decode_observed_load", decision.decode.observed_load},
                               {"decode_predicted_load", decision.decode.predicted_load},
                               {"gpus", decision.gpus},
                               {"changed", decision.changed},
                               {"reason", reasons}});
}

}  // namespace tandem::planner
