// `tandem sim SCENARIO.yaml [--json FILE] [--svg FILE] [--wall-time]`: simulates a GPU cluster
// serving a workload with Tandem's own routing, planning and placement code (docs/simulations.md)
// and prints a table of the results; --json and --svg write the full results and the charts.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "core/env.h"
#include "sim/scenario.h"

namespace tandem::cli {
namespace {

struct SimOptions {
  std::string scenario;
  std::string json_path;
  std::string svg_path;
  bool wall_time = false;
};

int RunSim(CLI::App* command, const SimOptions& options) {
  Env& env = Env::Default();
  if (options.scenario.empty()) {
    return ReportError(
        command, absl::InvalidArgumentError("a scenario file is required: tandem sim SCENARIO.yaml "
                                            "(see docs/simulations.md and examples/sim/)"));
  }
  absl::StatusOr<sim::Scenario> scenario = sim::LoadScenario(env, options.scenario);
  if (!scenario.ok()) return ReportError(command, scenario.status());
  absl::StatusOr<sim::ScenarioOutcome> outcome = sim::RunScenario(*scenario);
  if (!outcome.ok()) return ReportError(command, outcome.status());
  std::fputs(sim::OutcomeToTable(*outcome).c_str(), stdout);
  if (!options.json_path.empty()) {
    absl::Status written =
        env.WriteFile(options.json_path, sim::OutcomeToJson(*outcome, options.wall_time));
    if (!written.ok()) return ReportError(command, written);
  }
  if (!options.svg_path.empty()) {
    absl::Status written = env.WriteFile(options.svg_path, sim::OutcomeToSvg(*outcome));
    if (!written.ok()) return ReportError(command, written);
  }
  return 0;
}

void RegisterSim(CLI::App& root) {
  auto* sim = root.add_subcommand(
      "sim", "Simulate a GPU cluster serving a workload with Tandem's policy code");
  auto options = std::make_shared<SimOptions>();
  sim->add_option("scenario", options->scenario, "Scenario file (YAML, docs/simulations.md)");
  sim->add_option("--json", options->json_path, "Write the full results as JSON to this file");
  sim->add_option("--svg", options->svg_path, "Write latency CDFs and timelines as SVG");
  sim->add_flag("--wall-time", options->wall_time,
                "Include wall-clock time and simulated requests per wall second in the JSON "
                "(makes it differ between runs)");
  SetAction(sim, [sim, options]() -> int { return RunSim(sim, *options); });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterSim);
}  // namespace tandem::cli
