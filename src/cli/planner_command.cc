// `tandem planner`: the SLA planner (docs/planner.md).
//
//   tandem planner --config FILE --advisory --once --snapshot FILE     one decision from a file
//   tandem planner --listen HOST:PORT --router URL --connector local|kubernetes
//       [--orchestrator URL] [--namespace NS] --scale TARGET... [--config FILE]
//                                                                       the live loop
//
// The live loop reads the roles' /metrics (workers found through the router, plus --scrape
// targets) or a Prometheus server (--prometheus), decides every interval, logs and exports each
// decision and applies it through the connector unless advisory. SIGTERM, SIGINT or
// POST /admin/drain stop it after the evaluation in progress.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/command.h"
#include "core/env.h"
#include "core/logging.h"
#include "core/metrics.h"
#include "planner/config.h"
#include "planner/interfaces.h"
#include "planner/kubernetes_connector.h"
#include "planner/live_loop.h"
#include "planner/local_connector.h"
#include "planner/metrics_scraper.h"
#include "planner/observation.h"
#include "planner/planner.h"
#include "planner/prometheus_source.h"
#include "planner/report.h"
#include "planner/scale_targets.h"

namespace tandem::cli {
namespace {

struct PlannerOptions {
  std::string config_path;
  std::string snapshot_path;
  std::string metrics_out;
  bool advisory = false;
  bool once = false;
  bool json = false;
  // The live loop.
  std::string listen;
  std::string router_url;
  std::string router_api_key;
  std::vector<std::string> scrape;
  std::string prometheus_url;
  double prometheus_window_seconds = 0;
  std::string prometheus_selector;
  double warmup_seconds = 0;
  std::string connector;
  std::string orchestrator_url;
  std::string orchestrator_state;
  std::string namespace_name;
  std::vector<std::string> scale;
  std::vector<std::string> role_of;
  double interval_seconds = 0;
  std::string mode;
  double ttft_ms = 0;
  double itl_ms = 0;
};

// Without --config: load mode (it needs no profile) and these targets unless given.
constexpr double kDefaultTtftMs = 1000;
constexpr double kDefaultItlMs = 100;

int RunOnce(CLI::App* command, const PlannerOptions& options, planner::PlannerSetup setup) {
  Env& env = Env::Default();
  planner::PlannerConfig& config = setup.config;
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
      planner::Planner::Create(config, std::move(setup.model));
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

// The config of a planner started without --config: load mode, targets from the flags.
absl::StatusOr<planner::PlannerSetup> SetupFromFlags(const PlannerOptions& options) {
  planner::PlannerSetup setup;
  planner::PlannerConfig& config = setup.config;
  if (!options.mode.empty() && options.mode != "load") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mode ", options.mode, " needs a latency profile: give --config FILE with 'mode: ",
        options.mode, "' and 'profile' (docs/planner.md), or use --mode load"));
  }
  if (options.ttft_ms < 0 || options.itl_ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat("--ttft-ms and --itl-ms must be > 0, got ",
                                                   options.ttft_ms, " and ", options.itl_ms));
  }
  config.mode = planner::PlannerMode::kLoad;
  config.ttft_target_seconds = (options.ttft_ms > 0 ? options.ttft_ms : kDefaultTtftMs) / 1000;
  config.itl_target_seconds = (options.itl_ms > 0 ? options.itl_ms : kDefaultItlMs) / 1000;
  config.bounds.prefill = {.min_instances = 1, .max_instances = 1, .gpus_per_instance = 1};
  config.bounds.decode = {.min_instances = 1, .max_instances = 1, .gpus_per_instance = 1};
  return setup;
}

// Runs the live loop with the flags merged with the config's `live` section.
int RunLoop(CLI::App* command, const PlannerOptions& options, planner::PlannerSetup setup,
            const sigset_t& signals);

// Blocks until `seconds` passed, a stop signal arrived or the loop was asked to stop.
bool WaitOrStop(const sigset_t& signals, double seconds, const planner::PlannerLoop* loop) {
  const absl::Time deadline = absl::Now() + absl::Seconds(seconds);
  while (absl::Now() < deadline) {
    if (loop != nullptr && loop->stop_requested()) return true;
    const absl::Duration left = std::min(deadline - absl::Now(), absl::Milliseconds(100));
    timespec wait = absl::ToTimespec(std::max(left, absl::ZeroDuration()));
    const int signal = ::sigtimedwait(&signals, nullptr, &wait);
    if (signal > 0) {
      LogInfo("planner stopping", {{"signal", ::strsignal(signal)}});
      return true;
    }
  }
  return loop != nullptr && loop->stop_requested();
}

int RunLive(CLI::App* command, const PlannerOptions& options) {
  Env& env = Env::Default();
  // Signals are taken synchronously; block them before any thread exists.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  absl::StatusOr<planner::PlannerSetup> setup =
      options.config_path.empty() ? SetupFromFlags(options)
                                  : planner::LoadPlannerConfig(env, options.config_path);
  if (!setup.ok()) return ReportError(command, setup.status());
  planner::PlannerConfig& config = setup->config;
  if (!options.config_path.empty() && (options.ttft_ms > 0 || options.itl_ms > 0)) {
    return ReportError(command, absl::InvalidArgumentError(
                                    "--ttft-ms and --itl-ms are for a planner without --config; "
                                    "set 'targets' in the config file instead"));
  }
  // The config's `live` section fills in what the flags do not say.
  const planner::LiveConfig& live = config.live;
  auto pick = [](const std::string& flag, const std::string& file) {
    return flag.empty() ? file : flag;
  };
  auto pick_list = [](const std::vector<std::string>& flag, const std::vector<std::string>& file) {
    return flag.empty() ? file : flag;
  };
  PlannerOptions merged = options;
  merged.listen = pick(options.listen, live.listen);
  merged.router_url = pick(options.router_url, live.router);
  merged.scrape = pick_list(options.scrape, live.scrape);
  merged.prometheus_url = pick(options.prometheus_url, live.prometheus);
  if (merged.prometheus_window_seconds <= 0) {
    merged.prometheus_window_seconds = live.prometheus_window_seconds;
  }
  merged.prometheus_selector = pick(options.prometheus_selector, live.prometheus_selector);
  merged.connector = pick(pick(options.connector, live.connector), "local");
  merged.orchestrator_url = pick(options.orchestrator_url, live.orchestrator);
  merged.orchestrator_state = pick(options.orchestrator_state, live.orchestrator_state);
  merged.namespace_name = pick(options.namespace_name, live.kubernetes_namespace);
  merged.scale = pick_list(options.scale, live.scale);
  merged.role_of = pick_list(options.role_of, live.role_of);
  return RunLoop(command, merged, *std::move(setup), signals);
}

int RunLoop(CLI::App* command, const PlannerOptions& options, planner::PlannerSetup setup,
            const sigset_t& signals) {
  Env& env = Env::Default();
  planner::PlannerConfig& config = setup.config;
  if (options.connector != "local" && options.connector != "kubernetes" &&
      options.connector != "none") {
    return ReportError(command, absl::InvalidArgumentError(absl::StrCat(
                                    "--connector '", options.connector,
                                    "': expected local (the orchestrator of `tandem up`), "
                                    "kubernetes, or none (advisory only)")));
  }
  if (options.interval_seconds < 0) {
    return ReportError(
        command, absl::InvalidArgumentError(absl::StrCat("--interval must be > 0 seconds, got ",
                                                         options.interval_seconds)));
  }
  config.advisory = config.advisory || options.advisory || options.connector == "none";
  if (options.interval_seconds > 0) config.interval_seconds = options.interval_seconds;

  // What to scale.
  std::vector<planner::ScaleTarget> targets;
  std::map<std::string, std::string> role_of;
  for (const std::string& text : options.role_of) {
    const size_t equals = text.find('=');
    const std::string kind = equals == std::string::npos ? "" : text.substr(equals + 1);
    if (equals == std::string::npos || (kind != "prefill" && kind != "decode")) {
      return ReportError(command, absl::InvalidArgumentError(absl::StrCat(
                                      "--role-of '", text, "': expected NAME=prefill|decode")));
    }
    role_of[text.substr(0, equals)] = kind;
  }
  for (const std::string& text : options.scale) {
    absl::StatusOr<planner::ScaleTarget> target = planner::ParseScaleTarget(text);
    if (!target.ok()) return ReportError(command, target.status());
    auto kind = role_of.find(target->name);
    absl::StatusOr<planner::UnitComposition> composition =
        kind != role_of.end() ? planner::CompositionFromName(kind->second)
                              : planner::CompositionFromName(target->name);
    if (composition.ok()) target->composition = *composition;
    targets.push_back(*std::move(target));
  }
  if (targets.empty() && options.connector != "none") {
    return ReportError(command,
                       absl::InvalidArgumentError(absl::StrCat(
                           "the ", options.connector,
                           " connector needs at least one --scale NAME=RESOURCE:MIN:MAX target "
                           "(e.g. --scale decode=decode:1:8); use --connector none to only "
                           "publish decisions")));
  }

  std::unique_ptr<planner::ScaleConnector> connector;
  planner::LocalScaleConnector* local = nullptr;
  if (options.connector == "local") {
    absl::StatusOr<planner::LocalOrchestrator> where = planner::LocalOrchestratorFromEnvironment(
        env, options.orchestrator_url, options.orchestrator_state);
    if (!where.ok()) return ReportError(command, where.status());
    auto created = std::make_unique<planner::LocalScaleConnector>(*where, targets);
    local = created.get();
    connector = std::move(created);
  } else if (options.connector == "kubernetes") {
    absl::StatusOr<std::vector<planner::RoleScaleTargets>> roles =
        planner::KubernetesTargets(targets);
    if (!roles.ok()) return ReportError(command, roles.status());
    absl::StatusOr<planner::KubernetesOptions> kubernetes = planner::InClusterOptions(env);
    if (!kubernetes.ok()) return ReportError(command, kubernetes.status());
    if (!options.namespace_name.empty()) kubernetes->kubernetes_namespace = options.namespace_name;
    absl::StatusOr<std::unique_ptr<planner::KubernetesScaleConnector>> created =
        planner::KubernetesScaleConnector::Create(*kubernetes, *std::move(roles));
    if (!created.ok()) return ReportError(command, created.status());
    connector = *std::move(created);
  } else {
    connector = std::make_unique<planner::AdvisoryConnector>();
  }

  // The local connector learns what each target holds from the orchestrator, which may still be
  // starting: keep asking until it answers or the planner is stopped.
  if (local != nullptr) {
    while (true) {
      absl::Status resolved = local->Resolve();
      if (resolved.ok()) break;
      if (absl::IsNotFound(resolved) || absl::IsInvalidArgument(resolved) ||
          absl::IsPermissionDenied(resolved)) {
        return ReportError(command, resolved);
      }
      LogWarn("planner waiting for the orchestrator", {{"error", std::string(resolved.message())}});
      if (WaitOrStop(signals, 1, nullptr)) return 0;
    }
    for (const std::string& ignored : local->ignored()) LogWarn("planner", {{"note", ignored}});
    targets = local->targets();
    if (targets.empty()) {
      LogWarn("planner: nothing to scale; publishing decisions only (advisory)", {});
      config.advisory = true;
    }
  }
  for (const planner::ScaleTarget& target : targets) {
    if (target.composition.prefill + target.composition.decode == 0) {
      return ReportError(
          command,
          absl::InvalidArgumentError(planner::CompositionFromName(target.name).status().message()));
    }
  }
  absl::Status bounded = planner::ApplyTargetBounds(targets, &config.bounds);
  if (!bounded.ok()) return ReportError(command, bounded);
  absl::Status valid = planner::ValidatePlannerConfig(config);
  if (!valid.ok()) return ReportError(command, valid);

  // Where observations come from.
  std::unique_ptr<planner::MetricsSource> source;
  planner::PrometheusMetricsSource* prometheus = nullptr;
  if (!options.prometheus_url.empty()) {
    planner::PrometheusOptions prometheus_options;
    prometheus_options.url = options.prometheus_url;
    prometheus_options.window_seconds = options.prometheus_window_seconds > 0
                                            ? options.prometheus_window_seconds
                                            : std::max(60.0, 2 * config.interval_seconds);
    prometheus_options.selector = options.prometheus_selector;
    auto created = std::make_unique<planner::PrometheusMetricsSource>(prometheus_options);
    prometheus = created.get();
    source = std::move(created);
  } else {
    if (options.router_url.empty() && options.scrape.empty()) {
      return ReportError(command,
                         absl::InvalidArgumentError(
                             "the planner needs metrics: --router URL (its /metrics and the "
                             "workers it lists), --scrape URL for each process, or "
                             "--prometheus URL"));
    }
    source = std::make_unique<planner::ScrapingMetricsSource>(planner::ScrapeOptions{
        .router_url = options.router_url,
        .static_targets = options.scrape,
        .timeout = absl::Seconds(std::clamp(config.interval_seconds / 2, 0.2, 5.0)),
        .router_api_key = options.router_api_key});
  }

  absl::StatusOr<planner::Planner> planner =
      planner::Planner::Create(config, std::move(setup.model));
  if (!planner.ok()) return ReportError(command, planner.status());
  if (prometheus != nullptr && options.warmup_seconds > 0) {
    absl::StatusOr<std::vector<planner::Observation>> history =
        prometheus->History(0, options.warmup_seconds, config.interval_seconds);
    int learned = 0;
    if (history.ok()) {
      for (const planner::Observation& observation : *history) {
        if (planner->Learn(observation).ok()) ++learned;
      }
    }
    LogInfo("planner warm-up",
            {{"observations", learned},
             {"error", history.ok() ? "" : std::string(history.status().message())}});
  }

  const bool holds_prefill = std::any_of(targets.begin(), targets.end(),
                                         [](const auto& t) { return t.composition.prefill > 0; });
  const bool holds_decode = std::any_of(targets.begin(), targets.end(),
                                        [](const auto& t) { return t.composition.decode > 0; });
  planner::PlannerLoop loop(*std::move(planner), *source, *connector,
                            {.listen = options.listen,
                             .connector_holds_prefill = holds_prefill,
                             .connector_holds_decode = holds_decode});
  absl::Status started = loop.StartServer();
  if (!started.ok()) return ReportError(command, started);
  std::vector<std::string> target_names;
  target_names.reserve(targets.size());
  for (const planner::ScaleTarget& target : targets) {
    target_names.push_back(absl::StrCat(
        target.name, " (", target.composition.prefill, " prefill + ", target.composition.decode,
        " decode per unit, ", target.min_units, "..", target.max_units, ")"));
  }
  std::vector<std::string> metrics_from;
  if (prometheus != nullptr) {
    metrics_from.push_back(options.prometheus_url);
  } else {
    if (!options.router_url.empty()) metrics_from.push_back(options.router_url);
    metrics_from.insert(metrics_from.end(), options.scrape.begin(), options.scrape.end());
  }
  LogInfo("planner started", {{"mode", std::string(planner::PlannerModeName(config.mode))},
                              {"advisory", config.advisory},
                              {"interval_s", config.interval_seconds},
                              {"ttft_target_ms", config.ttft_target_seconds * 1000},
                              {"itl_target_ms", config.itl_target_seconds * 1000},
                              {"connector", connector->name()},
                              {"targets", absl::StrJoin(target_names, ", ")},
                              {"metrics", absl::StrJoin(metrics_from, " ")},
                              {"port", loop.port()}});

  const absl::Time start = absl::Now();
  while (!loop.stop_requested()) {
    const absl::Time began = absl::Now();
    loop.Evaluate(absl::ToDoubleSeconds(began - start));
    const double spent = absl::ToDoubleSeconds(absl::Now() - began);
    if (WaitOrStop(signals, std::max(0.0, config.interval_seconds - spent), &loop)) break;
  }
  loop.Shutdown();
  LogInfo("planner stopped", {});
  return 0;
}

int RunPlanner(CLI::App* command, const PlannerOptions& options) {
  if (!options.once) return RunLive(command, options);
  if (options.config_path.empty()) {
    return ReportError(
        command, absl::InvalidArgumentError("--config FILE is required (the planner config, YAML; "
                                            "see docs/planner.md)"));
  }
  absl::StatusOr<planner::PlannerSetup> setup =
      planner::LoadPlannerConfig(Env::Default(), options.config_path);
  if (!setup.ok()) return ReportError(command, setup.status());
  setup->config.advisory = setup->config.advisory || options.advisory;
  return RunOnce(command, options, *std::move(setup));
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
  command->add_option("--listen", options->listen,
                      "HOST:PORT for /metrics, /health, /ready and /v1/decision");
  command->add_option("--router", options->router_url,
                      "Router URL: its /metrics and the workers its /v1/workers lists");
  command
      ->add_option("--router-api-key", options->router_api_key,
                   "API key for the router's /v1/workers, when it requires one")
      ->envname("TANDEM_API_KEY");
  command->add_option("--scrape", options->scrape,
                      "Also scrape this process's /metrics (URL or HOST:PORT; repeatable)");
  command->add_option("--prometheus", options->prometheus_url,
                      "Read the metrics from this Prometheus server's HTTP API instead");
  command->add_option("--prometheus-window", options->prometheus_window_seconds,
                      "Rate window in seconds for Prometheus queries (default max(60, 2 x "
                      "interval))");
  command->add_option("--prometheus-selector", options->prometheus_selector,
                      "Label matchers added to every Prometheus series selector, e.g. "
                      "namespace=\"serving\"");
  command->add_option("--warmup", options->warmup_seconds,
                      "With --prometheus: learn from this many seconds of history at start");
  command->add_option("--connector", options->connector,
                      "local (the orchestrator of `tandem up`), kubernetes, or none");
  command->add_option("--orchestrator", options->orchestrator_url,
                      "The orchestrator's control URL (token: TANDEM_ORCHESTRATOR_TOKEN)");
  command->add_option("--orchestrator-state", options->orchestrator_state,
                      "The deployment's state.json, for the control URL and token");
  command->add_option("--namespace", options->namespace_name,
                      "Kubernetes namespace of the scaled objects (default: the pod's)");
  command->add_option("--scale", options->scale,
                      "NAME=RESOURCE[*PODS][,...]:MIN:MAX, a unit to scale (repeatable)");
  command->add_option("--role-of", options->role_of,
                      "NAME=prefill|decode: the role a --scale target named otherwise holds");
  command->add_option("--interval", options->interval_seconds,
                      "Seconds between evaluations (overrides the config's interval_s)");
  command->add_option("--mode", options->mode,
                      "Without --config: load (the only mode that "
                      "needs no profile)");
  command->add_option("--ttft-ms", options->ttft_ms,
                      "Without --config: mean TTFT target in ms (default 1000)");
  command->add_option("--itl-ms", options->itl_ms,
                      "Without --config: mean inter-token latency target in ms (default 100)");
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
