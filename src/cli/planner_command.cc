// `tandem planner --config FILE --advisory --once --snapshot FILE`: evaluates the SLA planner on a
// metrics snapshot (one observation or a history, docs/planner.md) and prints the decision with
// its reasons. The live loop (scraping the roles' metrics, scaling through a connector) needs the
// workers and the orchestrator; until they exist the command says so instead of pretending.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "core/env.h"
#include "core/metrics.h"
#include "planner/config.h"
#include "planner/interfaces.h"
#include "planner/observation.h"
#include "planner/planner.h"
#include "planner/report.h"

namespace tandem::cli {
namespace {

struct PlannerOptions {
  std::string config_path;
  std::string snapshot_path;
  std::string metrics_out;
  bool advisory = false;
  bool once = false;
  bool json = false;
};

int RunPlanner(CLI::App* command, const PlannerOptions& options) {
  Env& env = Env::Default();
  if (options.config_path.empty()) {
    return ReportError(
        command, absl::InvalidArgumentError("--config FILE is required (the planner config, YAML; "
                                            "see docs/planner.md)"));
  }
  absl::StatusOr<planner::PlannerSetup> setup =
      planner::LoadPlannerConfig(env, options.config_path);
  if (!setup.ok()) return ReportError(command, setup.status());
  planner::PlannerConfig& config = setup->config;
  config.advisory = config.advisory || options.advisory;
  if (!options.once) {
    return ReportError(
        command,
        absl::FailedPreconditionError(
            "the continuous loop needs live metrics (the roles' /metrics or a Prometheus server) "
            "and a scale connector, which this build does not include yet; evaluate one decision "
            "with --advisory --once --snapshot FILE"));
  }
  if (!config.advisory) {
    return ReportError(
        command,
        absl::InvalidArgumentError("--once evaluates a decision without a scale connector to "
                                   "apply it: add --advisory (or 'advisory: true' in the config)"));
  }
  if (options.snapshot_path.empty()) {
    return ReportError(command, absl::InvalidArgumentError(
                                    "--once needs --snapshot FILE: a JSON observation or a list "
                                    "of them, oldest first (docs/planner.md, 'Metrics snapshot')"));
  }
  absl::StatusOr<std::string> text = env.ReadFile(options.snapshot_path);
  if (!text.ok()) {
    return ReportError(command,
                       absl::Status(text.status().code(),
                                    absl::StrCat("metrics snapshot: ", text.status().message())));
  }
  absl::StatusOr<std::vector<planner::Observation>> history =
      planner::ParseObservations(*text, options.snapshot_path);
  if (!history.ok()) return ReportError(command, history.status());
  absl::StatusOr<planner::Planner> planner =
      planner::Planner::Create(config, std::move(setup->model));
  if (!planner.ok()) return ReportError(command, planner.status());

  MetricsRegistry registry;
  planner::DecisionMetrics metrics(registry);
  planner::SnapshotMetricsSource source(*history);
  planner::AdvisoryConnector connector;
  for (const planner::Observation& expected : *history) {
    absl::StatusOr<planner::Observation> observation = source.Collect(expected.time_seconds);
    if (!observation.ok()) return ReportError(command, observation.status());
    planner::Decision decision = planner->Decide(*observation);
    planner::LogDecision(decision);
    metrics.Record(decision);
    absl::Status applied = connector.Apply(decision);
    if (!applied.ok()) return ReportError(command, applied);
  }
  const planner::Decision& last = connector.decisions().back();
  if (options.json) {
    std::fputs(planner::DecisionToJson(last).c_str(), stdout);
  } else {
    if (history->size() > 1) {
      std::printf("replayed %zu observations; the last decision:\n", history->size());
    }
    std::fputs(planner::FormatDecision(last).c_str(), stdout);
  }
  if (!options.metrics_out.empty()) {
    absl::Status written = env.WriteFile(options.metrics_out, registry.RenderPrometheus());
    if (!written.ok()) return ReportError(command, written);
  }
  return 0;
}

void RegisterPlanner(CLI::App& root) {
  auto options = std::make_shared<PlannerOptions>();
  CLI::App* command = root.add_subcommand(
      "planner", "SLA planner: size prefill and decode from load and latency (docs/planner.md)");
  command->add_flag("--advisory", options->advisory,
                    "Compute and publish decisions without acting on them");
  command->add_flag("--once", options->once, "Evaluate the snapshot and exit");
  command->add_option("--snapshot", options->snapshot_path,
                      "Metrics snapshot (JSON observation or list of them) for --once");
  command->add_flag("--json", options->json, "Print the decision as JSON");
  command->add_option("--metrics-out", options->metrics_out,
                      "Write the decision metrics (Prometheus text) to this file");
  SetAction(command, [command, options]() -> int { return RunPlanner(command, *options); });
  // The planner's --config is its own YAML document (targets, roles, bounds...), not a file of
  // option values, so it replaces the generic --config that SetAction adds.
  if (CLI::Option* generic = command->get_option_no_throw("--config"); generic != nullptr) {
    command->remove_option(generic);
  }
  command->add_option("--config", options->config_path, "Planner config (YAML, docs/planner.md)");
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterPlanner);
}  // namespace tandem::cli
