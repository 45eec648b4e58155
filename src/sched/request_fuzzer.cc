// Fuzzes the sched parsers and the placer: the input is a cluster file, a placement request and
// a state file separated by lines of "---8<---"; whatever parses is resolved and placed, and the
// result's invariants are checked (no node over capacity, all-or-nothing).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "sched/report.h"
#include "sched/scheduler.h"

namespace {

constexpr char kDefaultCluster[] = R"(
topology: {levels: [zone, rack, {name: nvlink-domain, nodeLabel: nvidia.com/gpu.clique}]}
nodes:
  - {name: a, count: 3, gpus: 8, cpu: "64", path: z1/r1/v1}
  - {name: b, count: 2, gpus: 4, path: z1/r2/v2}
  - {name: c, count: 2, gpus: 8, path: z2/r3/v3}
)";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return 0;
  std::string input(reinterpret_cast<const char*>(data), size);
  // Numbers of 5+ digits (count: 100000, replicas: 99999) only make inputs slow, not interesting;
  // the limits themselves are unit-tested.
  int digits = 0;
  for (char c : input) {
    digits = (c >= '0' && c <= '9') ? digits + 1 : 0;
    if (digits > 4) return 0;
  }
  std::vector<std::string> parts = absl::StrSplit(input, "---8<---\n");
  std::string cluster_text = parts.size() > 1 && !parts[0].empty() ? parts[0] : kDefaultCluster;
  std::string request_text = parts.size() > 1 ? parts[1] : parts[0];
  using namespace tandem::sched;
  absl::StatusOr<Cluster> cluster = ParseAnyCluster(cluster_text, "cluster.yaml");
  if (!cluster.ok() || cluster->num_nodes() > 2000) return 0;
  absl::StatusOr<PlacementRequest> request = ParsePlacementRequest(request_text, "request.yaml");
  if (!request.ok()) {
    request = ParsePodGang(request_text, "podgang.yaml", {1, 0, 0});
  }
  if (!request.ok() || request->NumPods() > 2000 || !ResolveRequest(*cluster, *request).ok()) {
    return 0;
  }
  Scheduler scheduler(*cluster);
  std::vector<bool> has_running(cluster->num_nodes(), false);
  if (parts.size() > 2) {
    absl::StatusOr<ClusterState> state = ParseClusterState(parts[2], "state.yaml", *cluster);
    if (state.ok()) {
      if (!scheduler.AddRunning(*state).ok()) return 0;
      for (const RunningWorkload& workload : state->workloads) {
        for (const RunningGroup& group : workload.groups) {
          for (const RunningInstance& instance : group.instances) {
            for (const RunningPod& pod : instance.pods) has_running[pod.node] = true;
          }
        }
      }
    }
  }
  PlacementResult result = scheduler.Place(*request);
  if (!result.scheduled && result.new_pods > 0) std::abort();
  for (int n = 0; n < cluster->num_nodes(); ++n) {
    // Running pods from the state may overcommit a node; placement never does.
    if (has_running[n]) continue;
    const Resources& free = scheduler.index().NodeFree(n);
    if (free.gpus < 0 || free.cpu_millis < 0 || free.memory_bytes < 0) std::abort();
  }
  std::string table = FormatPlacementTable(*cluster, *request, result);
  nlohmann::json json = PlacementToJson(*cluster, *request, result);
  (void)table;
  (void)json;
  return 0;
}
