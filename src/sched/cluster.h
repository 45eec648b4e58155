// Cluster: the placement core's model of a GPU cluster. Nodes carry GPUs, CPU, memory and labels,
// and sit in a topology tree of named levels, broadest first (zone › block › rack ›
// nvlink-domain › node). Every level has a link bandwidth: the bandwidth between two nodes whose
// closest common domain is at that level.
//
// The tree is built once. Nodes are ordered by their topology path so that every domain covers
// a contiguous range of nodes and the domains of one level are numbered in the same order; the
// placer's per-domain free-capacity index relies on both.
//
//   absl::StatusOr<Cluster> cluster = ParseClusterYaml(text, "examples/clusters/small.yaml");
//   int rack = cluster->LevelIndex("rack");                  // -1 when unknown
//   int domain = cluster->NodeDomain(node_index, rack);      // the node's rack
//   std::string where = cluster->domain(domain).path;        // "zone-a/block-1/rack-3"
//
// A cluster comes from YAML (docs/placement.md, "Cluster file") or from Kubernetes Node objects
// as `kubectl get nodes -o json` prints them (ParseKubernetesNodes).
//
// Thread-safety: a built Cluster is immutable and may be read from any thread.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace tandem::sched {

// Resources of a node or a pod. CPU in millicores, memory in bytes, GPUs whole.
struct Resources {
  int64_t gpus = 0;
  int64_t cpu_millis = 0;
  int64_t memory_bytes = 0;
};

struct Level {
  std::string name;        // "rack"
  std::string node_label;  // the node label whose value names the node's domain at this level
  double bandwidth_gbps = 0;
};

// One node as read from input.
struct NodeSpec {
  std::string name;
  Resources capacity;
  std::map<std::string, std::string> labels;
  // One domain name per level above the node level (levels.size() - 1 entries). An empty name
  // means the node has no domain at that level; it then forms a domain of its own there.
  std::vector<std::string> path;
  bool unschedulable = false;
};

// A topology domain. Nodes are domains too (the deepest level), so the tree is uniform.
struct Domain {
  int level = -1;   // -1 for the cluster root, else an index into Cluster::levels()
  int parent = -1;  // -1 for the root
  std::string name;
  std::string path;  // names from the broadest level down, joined by '/'; "" for the root
  int32_t node_begin = 0;
  int32_t node_end = 0;  // nodes [node_begin, node_end) in Cluster order
  std::vector<int32_t> children;
};

class Cluster {
 public:
  // Builds the tree. `levels` are the levels broadest first; the last one is the node level
  // (added as "node" with label kubernetes.io/hostname when the caller did not declare one).
  // Fails on duplicate node or level names, negative capacities, or paths of the wrong length.
  static absl::StatusOr<Cluster> Build(std::vector<Level> levels, std::vector<NodeSpec> nodes);

  const std::vector<Level>& levels() const { return levels_; }
  int num_levels() const { return static_cast<int>(levels_.size()); }
  int node_level() const { return num_levels() - 1; }
  // Index of a level by name, or -1.
  int LevelIndex(absl::string_view name) const;
  // Index of a level by its node label, or -1.
  int LevelIndexByLabel(absl::string_view label) const;
  // "zone, block, rack, node": for error messages.
  std::string LevelNames() const;

  int num_nodes() const { return static_cast<int>(nodes_.size()); }
  const NodeSpec& node(int index) const { return nodes_[index]; }
  // Index of a node by name, or -1.
  int FindNode(absl::string_view name) const;

  int num_domains() const { return static_cast<int>(domains_.size()); }
  const Domain& domain(int id) const { return domains_[id]; }
  static constexpr int kRoot = 0;
  // The domain that holds node `node_index` at `level` (level -1 = the root).
  int NodeDomain(int node_index, int level) const {
    return level < 0 ? kRoot
                     : node_domains_[static_cast<size_t>(node_index) * levels_.size() + level];
  }
  // The ancestor of `domain` at `level` (its own id when it is at that level); `level` must not
  // be finer than the domain's own level.
  int Ancestor(int domain, int level) const;
  // Domains of `level` inside `domain`: ids [first, last], contiguous by construction.
  std::pair<int, int> DescendantsAt(int domain, int level) const;
  // Domain ids of one level, in order.
  std::pair<int, int> LevelRange(int level) const { return level_ranges_[level]; }

  int64_t max_node_gpus() const { return max_node_gpus_; }
  int64_t total_gpus() const { return total_gpus_; }

 private:
  std::vector<Level> levels_;
  std::vector<NodeSpec> nodes_;
  std::vector<Domain> domains_;
  std::vector<int32_t> node_domains_;  // [node * num_levels + level]
  std::vector<std::pair<int, int>> level_ranges_;
  std::map<std::string, int, std::less<>> node_index_;
  int64_t max_node_gpus_ = 0;
  int64_t total_gpus_ = 0;
};

// The node label a level name maps to when none is given (the deployment spec's defaults):
// zone → topology.kubernetes.io/zone, region → topology.kubernetes.io/region,
// host/hostname/node → kubernetes.io/hostname, anything else → topology.tandem.io/<name>.
std::string DefaultNodeLabel(absl::string_view level_name);

// Parses a cluster file (YAML, see docs/placement.md). `filename` only labels error messages,
// which name the line and field ("c.yaml:12: nodes[3].gpus: -1 is negative; expected >= 0").
absl::StatusOr<Cluster> ParseClusterYaml(absl::string_view text, absl::string_view filename);

// Parses `kubectl get nodes -o json` output (a List of Node objects). Capacity is the node's
// status.allocatable (nvidia.com/gpu, cpu, memory); a cordoned node is unschedulable. `levels`
// chooses the topology; when empty, the levels are those of DefaultKubernetesLevels() whose label
// any node carries, plus the node level.
absl::StatusOr<Cluster> ParseKubernetesNodes(absl::string_view text, absl::string_view filename,
                                             std::vector<Level> levels = {});

// A cluster file of either form: a Kubernetes List of Nodes (it has `items`; `levels` as for
// ParseKubernetesNodes) or a Tandem cluster file (`levels` must then be empty).
absl::StatusOr<Cluster> ParseAnyCluster(absl::string_view text, absl::string_view filename,
                                        std::vector<Level> levels = {});

// region, zone, block (topology.tandem.io/block), rack (topology.tandem.io/rack),
// nvlink-domain (nvidia.com/gpu.clique).
std::vector<Level> DefaultKubernetesLevels();

// Parses "zone,rack=example.com/rack,nvlink-domain=nvidia.com/gpu.clique" (a level name with an
// optional node label; DefaultNodeLabel otherwise).
absl::StatusOr<std::vector<Level>> ParseLevelList(absl::string_view text);

// Kubernetes quantities: "500m" / "4" / "2.5" CPUs to millicores, "16Gi" / "1G" / "1024" to bytes.
absl::StatusOr<int64_t> ParseCpuMillis(absl::string_view quantity);
absl::StatusOr<int64_t> ParseBytes(absl::string_view quantity);
// "16Gi", "1500m" (CPU): compact forms for reports.
std::string FormatBytes(int64_t bytes);
std::string FormatCpu(int64_t millis);

}  // namespace tandem::sched
