// Scenarios: the YAML file `tandem sim` runs (every field in docs/simulations.md), and running
// one: each variant is simulated, optionally with a goodput search (for one SLO or a grid of
// them), and the outcome is written as JSON, a text table and SVG charts.
//
//   TANDEM_ASSIGN_OR_RETURN(Scenario scenario, LoadScenario(Env::Default(), "exp1.yaml"));
//   TANDEM_ASSIGN_OR_RETURN(ScenarioOutcome outcome, RunScenario(scenario));
//   std::string json = OutcomeToJson(outcome, /*include_wall_time=*/false);
//   std::string svg = OutcomeToSvg(outcome);
//
// A scenario holds a base configuration and optional `variants`, each a named set of overrides
// merged into the base (maps merge key by key, anything else is replaced), so one file compares
// e.g. aggregated and disaggregated serving on the same workload.
//
// Errors name the file, the line and the field, and say what was expected.
// Thread-safety: plain values and functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/stats.h"
#include "core/env.h"
#include "sim/placement.h"
#include "sim/simulator.h"

namespace tandem::sim {

struct Variant {
  std::string name;
  SimConfig config;
  std::optional<PlacementSpec> placement;
  int gpus = 0;  // GPUs its instances hold at the start
};

struct Scenario {
  std::string name;
  std::string description;
  std::string source;             // the file it came from
  std::vector<Variant> variants;  // at least one
  std::optional<GoodputSearch> goodput;
  // Goodput for each of these SLOs (and each variant), besides the scenario's own SLO.
  std::vector<bench::Slo> slo_grid;
};

// Parses scenario text. `path` names it in messages and anchors relative paths (profiles);
// traces are read through `env` from a path relative to the working directory or, failing that,
// to the scenario's folder.
absl::StatusOr<Scenario> ParseScenario(Env& env, std::string_view yaml, const std::string& path);
absl::StatusOr<Scenario> LoadScenario(Env& env, const std::string& path);

struct GridPoint {
  bench::Slo slo;
  GoodputResult goodput;
};

struct VariantOutcome {
  std::string name;
  int gpus = 0;
  SimResult result;
  std::optional<PlacementOutcome> placement;
  std::optional<GoodputResult> goodput;
  std::vector<GridPoint> grid;
};

struct ScenarioOutcome {
  std::string name;
  std::string description;
  bench::Slo slo;
  std::optional<GoodputSearch> goodput_search;
  std::vector<VariantOutcome> variants;
};

absl::StatusOr<ScenarioOutcome> RunScenario(const Scenario& scenario);

// Deterministic for a scenario unless `include_wall_time`.
std::string OutcomeToJson(const ScenarioOutcome& outcome, bool include_wall_time);
std::string OutcomeToTable(const ScenarioOutcome& outcome);
// Latency CDFs (TTFT, ITL, TPOT) per variant, load and instances over time, and goodput per GPU
// over the SLO grid when there is one.
std::string OutcomeToSvg(const ScenarioOutcome& outcome);

}  // namespace tandem::sim
