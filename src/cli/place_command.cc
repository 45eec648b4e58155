// `tandem place --cluster CLUSTER --spec SPEC [--state STATE] [--json]`: where every pod of a
// deployment would land on a cluster, what would be preempted, and why anything stays pending
// (docs/placement.md). The cluster is a Tandem cluster file or `kubectl get nodes -o json`
// output; the spec a placement request, a Grove PodGang or a deployment spec. Exit code 0 when
// every minimum is met, 3 when something stays pending, 1/2 on errors.
#include <cstdio>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/command.h"
#include "core/env.h"
#include "core/status.h"
#include "sched/cluster.h"
#include "sched/expand_deployment.h"
#include "sched/gang.h"
#include "sched/report.h"
#include "sched/scheduler.h"
#include "sched/state.h"

namespace tandem::cli {
namespace {

struct PlaceOptions {
  std::string cluster_path;
  std::string spec_path;
  std::string state_path;
  std::string levels;
  bool json = false;
  bool no_preemption = false;
  bool pod_by_pod = false;
  int priority = 0;
  int podgang_gpus = 1;
  std::string podgang_cpu;
  std::string podgang_memory;
};

struct Output {
  std::string text;
  bool scheduled = false;
};

absl::StatusOr<Output> Run(const PlaceOptions& options) {
  Env& env = Env::Default();
  std::vector<sched::Level> levels;
  if (!options.levels.empty()) {
    TANDEM_ASSIGN_OR_RETURN(levels, sched::ParseLevelList(options.levels));
  }
  TANDEM_ASSIGN_OR_RETURN(std::string cluster_text, env.ReadFile(options.cluster_path));
  TANDEM_ASSIGN_OR_RETURN(sched::Cluster cluster,
                          sched::ParseAnyCluster(cluster_text, options.cluster_path, levels));

  sched::Resources podgang_pod;
  if (options.podgang_gpus < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--podgang-gpus: ", options.podgang_gpus, " is negative; expected >= 0"));
  }
  podgang_pod.gpus = options.podgang_gpus;
  if (!options.podgang_cpu.empty()) {
    TANDEM_ASSIGN_OR_RETURN(podgang_pod.cpu_millis, sched::ParseCpuMillis(options.podgang_cpu));
  }
  if (!options.podgang_memory.empty()) {
    TANDEM_ASSIGN_OR_RETURN(podgang_pod.memory_bytes, sched::ParseBytes(options.podgang_memory));
  }
  TANDEM_ASSIGN_OR_RETURN(std::string spec_text, env.ReadFile(options.spec_path));
  TANDEM_ASSIGN_OR_RETURN(
      sched::PlacementRequest request,
      sched::ParseAnyRequest(spec_text, options.spec_path, podgang_pod, options.priority));
  TANDEM_RETURN_IF_ERROR(sched::ResolveRequest(cluster, request));

  sched::ClusterState state;
  if (!options.state_path.empty()) {
    TANDEM_ASSIGN_OR_RETURN(std::string state_text, env.ReadFile(options.state_path));
    TANDEM_ASSIGN_OR_RETURN(state,
                            sched::ParseClusterState(state_text, options.state_path, cluster));
  }
  sched::Scheduler scheduler(cluster);
  TANDEM_RETURN_IF_ERROR(scheduler.AddRunning(state));

  sched::PlacementResult result;
  if (options.pod_by_pod) {
    // What a scheduler without gangs would do with the same pods.
    sched::CapacityIndex index = scheduler.index();
    result.pods = sched::PlacePodByPod(index, request, sched::FitPolicy::kSpread);
    result.new_pods = static_cast<int>(result.pods.size());
    result.note = "pod-by-pod baseline: no gangs, no topology, least-allocated node first";
    std::vector<std::string> below;
    for (int g : sched::GangsBelowMinimum(request, result.pods)) {
      below.push_back(request.gangs[g].path);
    }
    result.scheduled = below.empty();
    if (!below.empty()) {
      int64_t held = 0;
      for (const sched::PodPlacement& pod : result.pods) {
        held += request.gangs[pod.gang].pod_resources.gpus;
      }
      absl::StrAppend(&result.note, "; below their minimum: ", absl::StrJoin(below, ", "),
                      " — the deployment holds ", held, " GPUs without being able to serve");
    }
  } else {
    sched::PlaceOptions place_options;
    place_options.allow_preemption = !options.no_preemption;
    result = scheduler.Place(request, place_options);
  }
  Output output;
  output.scheduled = result.scheduled;
  output.text = options.json ? sched::PlacementToJson(cluster, request, result).dump(2) + "\n"
                             : sched::FormatPlacementTable(cluster, request, result);
  return output;
}

void RegisterPlace(CLI::App& root) {
  auto options = std::make_shared<PlaceOptions>();
  CLI::App* place = root.add_subcommand(
      "place", "Place a deployment's gangs on a cluster model (docs/placement.md)");
  place->add_option("--cluster", options->cluster_path,
                    "Cluster: a Tandem cluster file (YAML) or `kubectl get nodes -o json` output");
  place->add_option("--spec", options->spec_path,
                    "Placement request, Grove PodGang, or deployment spec (YAML/JSON)");
  place->add_option("--state", options->state_path,
                    "Running workloads (YAML): their pods, priorities, disruption budgets");
  place->add_option("--levels", options->levels,
                    "Topology for Kubernetes nodes: zone,rack=LABEL,... (broadest first)");
  place->add_flag("--json", options->json, "Print JSON instead of a table");
  place->add_flag("--no-preemption", options->no_preemption, "Never evict running workloads");
  place->add_flag("--pod-by-pod", options->pod_by_pod,
                  "Show what a pod-by-pod scheduler without gangs would do instead");
  place->add_option("--priority", options->priority,
                    "Priority of a deployment spec's pods (placement requests carry their own)");
  place->add_option("--podgang-gpus", options->podgang_gpus, "GPUs per pod of a PodGang (1)");
  place->add_option("--podgang-cpu", options->podgang_cpu, "CPU per pod of a PodGang");
  place->add_option("--podgang-memory", options->podgang_memory, "Memory per pod of a PodGang");
  SetAction(place, [place, options]() -> int {
    absl::Status required = RequireOptions(place, {"cluster", "spec"});
    if (!required.ok()) return ReportError(place, required);
    absl::StatusOr<Output> output = Run(*options);
    if (!output.ok()) return ReportError(place, output.status());
    std::fwrite(output->text.data(), 1, output->text.size(), stdout);
    // 3: the input was fine but some minimum cannot be met (scripts can tell it from errors).
    return output->scheduled ? 0 : 3;
  });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterPlace);
}  // namespace tandem::cli
