#include "sched/cluster.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "core/status.h"
#include "sched/internal/yaml_util.h"

namespace tandem::sched {
namespace {

constexpr char kHostnameLabel[] = "kubernetes.io/hostname";
constexpr char kGpuResource[] = "nvidia.com/gpu";

// Orders "rack-2" before "rack-10" so that reports read naturally; any total order would do.
bool NaturalLess(absl::string_view a, absl::string_view b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) &&
        std::isdigit(static_cast<unsigned char>(b[j]))) {
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && std::isdigit(static_cast<unsigned char>(a[i_end]))) ++i_end;
      while (j_end < b.size() && std::isdigit(static_cast<unsigned char>(b[j_end]))) ++j_end;
      absl::string_view x = a.substr(i, i_end - i), y = b.substr(j, j_end - j);
      while (x.size() > 1 && x[0] == '0') x.remove_prefix(1);
      while (y.size() > 1 && y[0] == '0') y.remove_prefix(1);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = i_end;
      j = j_end;
      continue;
    }
    if (a[i] != b[j]) return a[i] < b[j];
    ++i;
    ++j;
  }
  if (a.size() - i != b.size() - j) return a.size() - i < b.size() - j;
  return a < b;
}

bool IsNodeLevelName(absl::string_view name) {
  return name == "host" || name == "hostname" || name == "node";
}

absl::StatusOr<int64_t> ParseQuantity(absl::string_view text, int64_t unit_scale,
                                      bool allow_milli) {
  absl::string_view q = absl::StripAsciiWhitespace(text);
  static const std::vector<std::pair<absl::string_view, double>> kSuffixes = {
      {"Ki", 1024.0},
      {"Mi", 1024.0 * 1024},
      {"Gi", 1024.0 * 1024 * 1024},
      {"Ti", 1024.0 * 1024 * 1024 * 1024},
      {"Pi", 1024.0 * 1024 * 1024 * 1024 * 1024},
      {"k", 1e3},
      {"M", 1e6},
      {"G", 1e9},
      {"T", 1e12},
      {"P", 1e15},
      {"m", 1e-3}};
  double multiplier = 1;
  for (const auto& [suffix, value] : kSuffixes) {
    if (q.size() > suffix.size() && q.substr(q.size() - suffix.size()) == suffix) {
      if (suffix == "m" && !allow_milli) break;
      multiplier = value;
      q.remove_suffix(suffix.size());
      break;
    }
  }
  double number = 0;
  if (q.empty() || !absl::SimpleAtod(q, &number) || !std::isfinite(number)) {
    return absl::InvalidArgumentError(absl::StrCat("'", text, "' is not a Kubernetes quantity"));
  }
  if (number < 0) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is negative"));
  double scaled = number * multiplier * static_cast<double>(unit_scale);
  if (scaled > 9e18) return absl::InvalidArgumentError(absl::StrCat("'", text, "' is too large"));
  return static_cast<int64_t>(std::llround(scaled));
}

}  // namespace

absl::StatusOr<int64_t> ParseCpuMillis(absl::string_view quantity) {
  return ParseQuantity(quantity, 1000, /*allow_milli=*/true);
}

absl::StatusOr<int64_t> ParseBytes(absl::string_view quantity) {
  return ParseQuantity(quantity, 1, /*allow_milli=*/false);
}

std::string FormatBytes(int64_t bytes) {
  static const char* kUnits[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi"};
  int unit = 0;
  while (unit < 5 && bytes != 0 && bytes % 1024 == 0) {
    bytes /= 1024;
    ++unit;
  }
  return absl::StrCat(bytes, kUnits[unit]);
}

std::string FormatCpu(int64_t millis) {
  if (millis % 1000 == 0) return absl::StrCat(millis / 1000);
  return absl::StrCat(millis, "m");
}

std::string DefaultNodeLabel(absl::string_view level_name) {
  if (level_name == "zone") return "topology.kubernetes.io/zone";
  if (level_name == "region") return "topology.kubernetes.io/region";
  if (IsNodeLevelName(level_name)) return kHostnameLabel;
  return absl::StrCat("topology.tandem.io/", level_name);
}

std::vector<Level> DefaultKubernetesLevels() {
  return {{"region", "topology.kubernetes.io/region", 0},
          {"zone", "topology.kubernetes.io/zone", 0},
          {"block", "topology.tandem.io/block", 0},
          {"rack", "topology.tandem.io/rack", 0},
          {"nvlink-domain", "nvidia.com/gpu.clique", 0}};
}

absl::StatusOr<std::vector<Level>> ParseLevelList(absl::string_view text) {
  std::vector<Level> levels;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    item = absl::StripAsciiWhitespace(item);
    Level level;
    size_t eq = item.find('=');
    level.name = std::string(item.substr(0, eq));
    level.node_label = eq == absl::string_view::npos ? DefaultNodeLabel(level.name)
                                                     : std::string(item.substr(eq + 1));
    if (level.name.empty() || level.node_label.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("level list '", text, "': item '", item, "' is not NAME or NAME=LABEL"));
    }
    levels.push_back(std::move(level));
  }
  if (levels.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("level list '", text, "' names no level"));
  }
  return levels;
}

int Cluster::LevelIndex(absl::string_view name) const {
  for (size_t i = 0; i < levels_.size(); ++i) {
    if (levels_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int Cluster::LevelIndexByLabel(absl::string_view label) const {
  for (size_t i = 0; i < levels_.size(); ++i) {
    if (levels_[i].node_label == label) return static_cast<int>(i);
  }
  return -1;
}

std::string Cluster::LevelNames() const {
  std::vector<std::string> names;
  for (const Level& level : levels_) names.push_back(level.name);
  return absl::StrJoin(names, ", ");
}

int Cluster::FindNode(absl::string_view name) const {
  auto it = node_index_.find(name);
  return it == node_index_.end() ? -1 : it->second;
}

int Cluster::Ancestor(int domain, int level) const {
  while (domains_[domain].level > level) domain = domains_[domain].parent;
  return domain;
}

std::pair<int, int> Cluster::DescendantsAt(int domain, int level) const {
  const Domain& d = domains_[domain];
  if (level <= d.level) {
    int ancestor = Ancestor(domain, level);
    return {ancestor, ancestor};
  }
  return {NodeDomain(d.node_begin, level), NodeDomain(d.node_end - 1, level)};
}

absl::StatusOr<Cluster> Cluster::Build(std::vector<Level> levels, std::vector<NodeSpec> nodes) {
  std::set<std::string> level_names;
  for (size_t i = 0; i < levels.size(); ++i) {
    Level& level = levels[i];
    if (level.name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("topology level ", i, " has no name"));
    }
    if (!level_names.insert(level.name).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("topology level '", level.name, "' is declared twice"));
    }
    if (level.node_label.empty()) level.node_label = DefaultNodeLabel(level.name);
    if (level.bandwidth_gbps < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("topology level '", level.name, "': bandwidthGbps is negative"));
    }
    if (level.node_label == kHostnameLabel && i + 1 != levels.size()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "topology level '", level.name,
          "' is the node level (label kubernetes.io/hostname) and must be the last level"));
    }
  }
  if (levels.empty() || levels.back().node_label != kHostnameLabel) {
    if (level_names.count("node")) {
      return absl::InvalidArgumentError(
          "topology level 'node' must be the last level (it is the node itself)");
    }
    levels.push_back({"node", kHostnameLabel, 0});
  }
  const size_t path_length = levels.size() - 1;

  Cluster cluster;
  std::set<std::string> names;
  for (NodeSpec& node : nodes) {
    if (node.name.empty()) return absl::InvalidArgumentError("a node has no name");
    if (!names.insert(node.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "' is listed twice"));
    }
    if (node.capacity.gpus < 0 || node.capacity.cpu_millis < 0 || node.capacity.memory_bytes < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("node '", node.name, "': capacity must not be negative"));
    }
    if (node.path.size() != path_length) {
      return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "': topology path has ",
                                                     node.path.size(), " entries, expected ",
                                                     path_length));
    }
    // No domain at a level: the node is alone there (it shares no link of that level).
    for (std::string& part : node.path) {
      if (part.empty()) part = absl::StrCat("(", node.name, ")");
    }
  }
  std::sort(nodes.begin(), nodes.end(), [](const NodeSpec& a, const NodeSpec& b) {
    for (size_t i = 0; i < a.path.size(); ++i) {
      if (a.path[i] != b.path[i]) return NaturalLess(a.path[i], b.path[i]);
    }
    return NaturalLess(a.name, b.name);
  });

  const int num_levels = static_cast<int>(levels.size());
  const int num_nodes = static_cast<int>(nodes.size());
  cluster.node_domains_.assign(static_cast<size_t>(num_nodes) * num_levels, 0);
  Domain root;
  root.level = -1;
  root.node_begin = 0;
  root.node_end = num_nodes;
  cluster.domains_.push_back(root);
  std::vector<int> previous_level_of_node(num_nodes, kRoot);
  for (int level = 0; level < num_levels; ++level) {
    int first = static_cast<int>(cluster.domains_.size());
    for (int n = 0; n < num_nodes; ++n) {
      int parent = previous_level_of_node[n];
      const std::string& name = level + 1 == num_levels ? nodes[n].name : nodes[n].path[level];
      bool same = n > 0 && level + 1 < num_levels && previous_level_of_node[n - 1] == parent &&
                  cluster.domains_.back().name == name &&
                  static_cast<int>(cluster.domains_.size()) > first;
      if (!same) {
        Domain domain;
        domain.level = level;
        domain.parent = parent;
        domain.name = name;
        domain.path = cluster.domains_[parent].path.empty()
                          ? name
                          : absl::StrCat(cluster.domains_[parent].path, "/", name);
        domain.node_begin = n;
        domain.node_end = n;
        cluster.domains_[parent].children.push_back(static_cast<int32_t>(cluster.domains_.size()));
        cluster.domains_.push_back(std::move(domain));
      }
      int id = static_cast<int>(cluster.domains_.size()) - 1;
      cluster.domains_[id].node_end = n + 1;
      cluster.node_domains_[static_cast<size_t>(n) * num_levels + level] = id;
    }
    for (int n = 0; n < num_nodes; ++n) {
      previous_level_of_node[n] =
          cluster.node_domains_[static_cast<size_t>(n) * num_levels + level];
    }
    cluster.level_ranges_.push_back({first, static_cast<int>(cluster.domains_.size()) - 1});
  }
  for (int n = 0; n < num_nodes; ++n) {
    cluster.node_index_[nodes[n].name] = n;
    cluster.max_node_gpus_ = std::max(cluster.max_node_gpus_, nodes[n].capacity.gpus);
    cluster.total_gpus_ += nodes[n].capacity.gpus;
  }
  cluster.levels_ = std::move(levels);
  cluster.nodes_ = std::move(nodes);
  return cluster;
}

namespace {

using internal::Field;
using internal::YamlReader;

absl::StatusOr<std::vector<Level>> ParseLevels(const YamlReader& reader, const YAML::Node& list,
                                               absl::string_view field) {
  if (!list.IsSequence() || list.size() == 0) {
    return reader.Error(list, field, "expected a list of levels, broadest first");
  }
  std::vector<Level> levels;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& item = list[i];
    std::string item_field = absl::StrCat(field, "[", i, "]");
    Level level;
    if (item.IsScalar()) {
      level.name = item.Scalar();
    } else if (item.IsMap()) {
      TANDEM_RETURN_IF_ERROR(
          reader.CheckKeys(item, item_field, {"name", "nodeLabel", "bandwidthGbps"}));
      TANDEM_ASSIGN_OR_RETURN(auto name, reader.String(item, "name", item_field));
      TANDEM_ASSIGN_OR_RETURN(auto label, reader.String(item, "nodeLabel", item_field));
      TANDEM_ASSIGN_OR_RETURN(auto bandwidth, reader.Double(item, "bandwidthGbps", item_field));
      if (!name || name->empty()) return reader.Error(item, item_field, "a level needs a name");
      level.name = *name;
      if (label) level.node_label = *label;
      if (bandwidth) {
        if (*bandwidth < 0) {
          return reader.Error(item["bandwidthGbps"], Field(item_field, "bandwidthGbps"),
                              absl::StrCat(*bandwidth, " is negative; expected >= 0"));
        }
        level.bandwidth_gbps = *bandwidth;
      }
    } else {
      return reader.Error(item, item_field,
                          "expected a level name or {name, nodeLabel, bandwidthGbps}");
    }
    if (level.node_label.empty()) level.node_label = DefaultNodeLabel(level.name);
    for (const Level& other : levels) {
      if (other.name == level.name) {
        return reader.Error(item, item_field,
                            absl::StrCat("level '", level.name, "' is declared twice"));
      }
    }
    if (level.node_label == kHostnameLabel && i + 1 != list.size()) {
      return reader.Error(item, item_field,
                          "the node level (kubernetes.io/hostname) must be the last level");
    }
    levels.push_back(std::move(level));
  }
  return levels;
}

// Fills `node.path` from explicit path entries first, then the levels' node labels.
absl::Status FillPath(const YamlReader& reader, const YAML::Node& item, absl::string_view field,
                      const std::vector<Level>& levels, size_t path_length, NodeSpec& node) {
  node.path.assign(path_length, "");
  YAML::Node path = item["path"];
  if (path.IsDefined() && !path.IsNull()) {
    if (path.IsScalar()) {
      std::vector<std::string> parts = absl::StrSplit(path.Scalar(), '/');
      if (parts.size() != path_length) {
        return reader.Error(
            path, Field(field, "path"),
            absl::StrCat("'", path.Scalar(), "' has ", parts.size(), " parts; expected ",
                         path_length, " (one per level above the node)"));
      }
      node.path = std::move(parts);
    } else if (path.IsMap()) {
      for (const auto& entry : path) {
        const std::string& level_name = entry.first.Scalar();
        size_t index = 0;
        while (index < path_length && levels[index].name != level_name) ++index;
        if (index == path_length) {
          std::vector<std::string> names;
          for (size_t i = 0; i < path_length; ++i) names.push_back(levels[i].name);
          return reader.Error(
              entry.first, Field(Field(field, "path"), level_name),
              absl::StrCat("unknown level; expected one of: ", absl::StrJoin(names, ", ")));
        }
        if (!entry.second.IsScalar()) {
          return reader.Error(entry.second, Field(Field(field, "path"), level_name),
                              "expected a domain name");
        }
        node.path[index] = entry.second.Scalar();
      }
    } else {
      return reader.Error(path, Field(field, "path"),
                          "expected 'a/b/c' or a mapping of level name to domain name");
    }
  }
  for (size_t i = 0; i < path_length; ++i) {
    if (!node.path[i].empty()) continue;
    auto it = node.labels.find(levels[i].node_label);
    if (it != node.labels.end()) node.path[i] = it->second;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(const YamlReader& reader,
                                                               const YAML::Node& labels,
                                                               absl::string_view field) {
  std::map<std::string, std::string> result;
  if (!labels.IsDefined() || labels.IsNull()) return result;
  if (!labels.IsMap()) return reader.Error(labels, field, "expected a mapping of label to value");
  for (const auto& entry : labels) {
    if (!entry.second.IsScalar()) {
      return reader.Error(entry.second, Field(field, entry.first.Scalar()), "expected a string");
    }
    result[entry.first.Scalar()] = entry.second.Scalar();
  }
  return result;
}

absl::StatusOr<Cluster> BuildAnnotated(const YamlReader& reader, const YAML::Node& at,
                                       std::vector<Level> levels, std::vector<NodeSpec> nodes) {
  absl::StatusOr<Cluster> cluster = Cluster::Build(std::move(levels), std::move(nodes));
  if (!cluster.ok()) return reader.Error(at, "", cluster.status().message());
  return cluster;
}

}  // namespace

static absl::StatusOr<Cluster> ParseClusterYamlImpl(absl::string_view text,
                                                    absl::string_view filename) {
  YamlReader reader(filename);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node root, reader.Load(text));
  TANDEM_RETURN_IF_ERROR(
      reader.CheckKeys(root, "", {"apiVersion", "kind", "name", "topology", "nodes"}));
  TANDEM_ASSIGN_OR_RETURN(auto kind, reader.String(root, "kind", ""));
  if (kind && *kind != "Cluster") {
    return reader.Error(root["kind"], "kind", absl::StrCat("'", *kind, "'; expected Cluster"));
  }
  std::vector<Level> levels;
  YAML::Node topology = root["topology"];
  if (topology.IsDefined() && !topology.IsNull()) {
    TANDEM_RETURN_IF_ERROR(reader.CheckKeys(topology, "topology", {"levels"}));
    TANDEM_ASSIGN_OR_RETURN(levels, ParseLevels(reader, topology["levels"], "topology.levels"));
  }
  size_t path_length = levels.size();
  if (!levels.empty() && levels.back().node_label == kHostnameLabel) --path_length;

  YAML::Node list = root["nodes"];
  if (!list.IsDefined() || !list.IsSequence() || list.size() == 0) {
    return reader.Error(list.IsDefined() ? list : root, "nodes",
                        "expected a non-empty list of nodes");
  }
  std::vector<NodeSpec> nodes;
  std::set<std::string> seen;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node& item = list[i];
    std::string field = absl::StrCat("nodes[", i, "]");
    TANDEM_RETURN_IF_ERROR(reader.CheckKeys(
        item, field,
        {"name", "count", "gpus", "cpu", "memory", "labels", "path", "unschedulable"}));
    NodeSpec node;
    TANDEM_ASSIGN_OR_RETURN(auto name, reader.String(item, "name", field));
    if (!name || name->empty())
      return reader.Error(item, Field(field, "name"), "missing; every node needs a name");
    node.name = *name;
    TANDEM_ASSIGN_OR_RETURN(auto gpus, reader.Int(item, "gpus", field));
    if (gpus && *gpus < 0) {
      return reader.Error(item["gpus"], Field(field, "gpus"),
                          absl::StrCat(*gpus, " is negative; expected >= 0"));
    }
    node.capacity.gpus = gpus.value_or(0);
    TANDEM_ASSIGN_OR_RETURN(auto cpu, reader.String(item, "cpu", field));
    if (cpu) {
      absl::StatusOr<int64_t> millis = ParseCpuMillis(*cpu);
      if (!millis.ok())
        return reader.Error(item["cpu"], Field(field, "cpu"), millis.status().message());
      node.capacity.cpu_millis = *millis;
    }
    TANDEM_ASSIGN_OR_RETURN(auto memory, reader.String(item, "memory", field));
    if (memory) {
      absl::StatusOr<int64_t> bytes = ParseBytes(*memory);
      if (!bytes.ok())
        return reader.Error(item["memory"], Field(field, "memory"), bytes.status().message());
      node.capacity.memory_bytes = *bytes;
    }
    TANDEM_ASSIGN_OR_RETURN(node.labels,
                            ParseLabels(reader, item["labels"], Field(field, "labels")));
    TANDEM_ASSIGN_OR_RETURN(auto unschedulable, reader.Bool(item, "unschedulable", field));
    node.unschedulable = unschedulable.value_or(false);
    TANDEM_RETURN_IF_ERROR(FillPath(reader, item, field, levels, path_length, node));
    TANDEM_ASSIGN_OR_RETURN(auto count, reader.Int(item, "count", field));
    if (count && (*count < 1 || *count > 100'000 ||
                  nodes.size() + static_cast<size_t>(*count) > 1'000'000)) {
      return reader.Error(item["count"], Field(field, "count"),
                          absl::StrCat(*count,
                                       " is out of range; expected 1..100000 (and at most "
                                       "1000000 nodes in all)"));
    }
    // `count: N` stamps out N identical nodes named NAME-0 .. NAME-(N-1).
    for (int64_t k = 0; k < count.value_or(1); ++k) {
      NodeSpec copy = node;
      if (count) copy.name = absl::StrCat(node.name, "-", k);
      if (!seen.insert(copy.name).second) {
        return reader.Error(item, Field(field, "name"),
                            absl::StrCat("node '", copy.name, "' is listed twice"));
      }
      nodes.push_back(std::move(copy));
    }
  }
  return BuildAnnotated(reader, root, std::move(levels), std::move(nodes));
}

static absl::StatusOr<Cluster> ParseKubernetesNodesImpl(absl::string_view text,
                                                        absl::string_view filename,
                                                        std::vector<Level> levels) {
  YamlReader reader(filename);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node root, reader.Load(text));
  YAML::Node items = root["items"];
  if (!items.IsDefined() || !items.IsSequence()) {
    return reader.Error(root, "items",
                        "expected a List of Node objects as `kubectl get nodes -o json` prints it");
  }
  std::vector<NodeSpec> nodes;
  for (size_t i = 0; i < items.size(); ++i) {
    const YAML::Node& item = items[i];
    std::string field = absl::StrCat("items[", i, "]");
    if (!item.IsMap()) return reader.Error(item, field, "expected a Node object");
    TANDEM_ASSIGN_OR_RETURN(auto kind, reader.String(item, "kind", field));
    if (kind && *kind != "Node") {
      return reader.Error(item["kind"], Field(field, "kind"),
                          absl::StrCat("'", *kind, "'; expected Node"));
    }
    YAML::Node metadata = item["metadata"];
    if (!metadata.IsMap()) return reader.Error(item, Field(field, "metadata"), "missing");
    TANDEM_ASSIGN_OR_RETURN(auto name, reader.String(metadata, "name", Field(field, "metadata")));
    if (!name || name->empty())
      return reader.Error(metadata, Field(field, "metadata.name"), "missing");
    NodeSpec node;
    node.name = *name;
    TANDEM_ASSIGN_OR_RETURN(
        node.labels, ParseLabels(reader, metadata["labels"], Field(field, "metadata.labels")));
    YAML::Node status = item["status"];
    YAML::Node allocatable = status.IsMap() ? status["allocatable"] : YAML::Node();
    if (!allocatable.IsDefined() || !allocatable.IsMap()) {
      allocatable = status.IsMap() ? status["capacity"] : YAML::Node();
    }
    if (!allocatable.IsDefined() || !allocatable.IsMap()) {
      return reader.Error(item, Field(field, "status.allocatable"),
                          "missing; cannot size the node");
    }
    std::string alloc_field = Field(field, "status.allocatable");
    TANDEM_ASSIGN_OR_RETURN(auto gpus, reader.String(allocatable, kGpuResource, alloc_field));
    if (gpus) {
      int64_t count = 0;
      if (!absl::SimpleAtoi(*gpus, &count) || count < 0) {
        return reader.Error(allocatable[kGpuResource], Field(alloc_field, kGpuResource),
                            absl::StrCat("'", *gpus, "'; expected a whole number >= 0"));
      }
      node.capacity.gpus = count;
    }
    TANDEM_ASSIGN_OR_RETURN(auto cpu, reader.String(allocatable, "cpu", alloc_field));
    if (cpu) {
      absl::StatusOr<int64_t> millis = ParseCpuMillis(*cpu);
      if (!millis.ok()) {
        return reader.Error(allocatable["cpu"], Field(alloc_field, "cpu"),
                            millis.status().message());
      }
      node.capacity.cpu_millis = *millis;
    }
    TANDEM_ASSIGN_OR_RETURN(auto memory, reader.String(allocatable, "memory", alloc_field));
    if (memory) {
      absl::StatusOr<int64_t> bytes = ParseBytes(*memory);
      if (!bytes.ok()) {
        return reader.Error(allocatable["memory"], Field(alloc_field, "memory"),
                            bytes.status().message());
      }
      node.capacity.memory_bytes = *bytes;
    }
    YAML::Node spec = item["spec"];
    if (spec.IsMap()) {
      TANDEM_ASSIGN_OR_RETURN(auto cordoned,
                              reader.Bool(spec, "unschedulable", Field(field, "spec")));
      node.unschedulable = cordoned.value_or(false);
    }
    nodes.push_back(std::move(node));
  }
  if (nodes.empty()) return reader.Error(items, "items", "the list holds no nodes");
  if (levels.empty()) {
    for (Level& level : DefaultKubernetesLevels()) {
      bool used = false;
      for (const NodeSpec& node : nodes) used = used || node.labels.count(level.node_label) > 0;
      if (used) levels.push_back(std::move(level));
    }
  }
  size_t path_length = levels.size();
  if (!levels.empty() && levels.back().node_label == kHostnameLabel) --path_length;
  for (NodeSpec& node : nodes) {
    node.path.assign(path_length, "");
    for (size_t l = 0; l < path_length; ++l) {
      auto it = node.labels.find(levels[l].node_label);
      if (it != node.labels.end()) node.path[l] = it->second;
    }
  }
  return BuildAnnotated(reader, root, std::move(levels), std::move(nodes));
}

static absl::StatusOr<Cluster> ParseAnyClusterImpl(absl::string_view text,
                                                   absl::string_view filename,
                                                   std::vector<Level> levels) {
  YamlReader reader(filename);
  TANDEM_ASSIGN_OR_RETURN(YAML::Node root, reader.Load(text));
  if (root["items"].IsDefined()) return ParseKubernetesNodes(text, filename, std::move(levels));
  if (!levels.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(filename,
                     ": levels are given on the command line, but this cluster file declares its "
                     "own (topology.levels); drop --levels"));
  }
  return ParseClusterYaml(text, filename);
}

absl::StatusOr<Cluster> ParseClusterYaml(absl::string_view text, absl::string_view filename) {
  return internal::GuardParse(filename, [&] { return ParseClusterYamlImpl(text, filename); });
}

absl::StatusOr<Cluster> ParseKubernetesNodes(absl::string_view text, absl::string_view filename,
                                             std::vector<Level> levels) {
  return internal::GuardParse(
      filename, [&] { return ParseKubernetesNodesImpl(text, filename, std::move(levels)); });
}

absl::StatusOr<Cluster> ParseAnyCluster(absl::string_view text, absl::string_view filename,
                                        std::vector<Level> levels) {
  return internal::GuardParse(
      filename, [&] { return ParseAnyClusterImpl(text, filename, std::move(levels)); });
}

}  // namespace tandem::sched
