#include "deploy/spec.h"

#include <algorithm>
#include <functional>
#include <initializer_list>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/status.h"
#include "yaml-cpp/yaml.h"

namespace tandem::deploy {

const char* RoleKindName(RoleKind kind) {
  switch (kind) {
    case RoleKind::kRouter:
      return "router";
    case RoleKind::kPrefill:
      return "prefill";
    case RoleKind::kDecode:
      return "decode";
    case RoleKind::kPlanner:
      return "planner";
    case RoleKind::kWorker:
      return "worker";
  }
  return "worker";
}

bool IsEngineKind(RoleKind kind) {
  return kind == RoleKind::kPrefill || kind == RoleKind::kDecode || kind == RoleKind::kWorker;
}

const Role* DeploymentSpec::FindRole(std::string_view role_name) const {
  for (const Role& role : roles) {
    if (role.name == role_name) return &role;
  }
  return nullptr;
}

const ScalingGroup* DeploymentSpec::FindScalingGroup(std::string_view group_name) const {
  for (const ScalingGroup& group : scaling_groups) {
    if (group.name == group_name) return &group;
  }
  return nullptr;
}

const TopologyLevel* DeploymentSpec::FindLevel(std::string_view level_name) const {
  int index = LevelIndex(level_name);
  return index < 0 ? nullptr : &levels[index];
}

int DeploymentSpec::LevelIndex(std::string_view level_name) const {
  for (size_t i = 0; i < levels.size(); ++i) {
    if (levels[i].name == level_name) return static_cast<int>(i);
  }
  return -1;
}

const Role* DeploymentSpec::FirstOfKind(RoleKind kind) const {
  for (const Role& role : roles) {
    if (role.kind == kind) return &role;
  }
  return nullptr;
}

namespace {

constexpr size_t kMaxSpecBytes = 1 << 20;
constexpr int kMaxNameLength = 30;
constexpr int kMaxRoleNameLength = 20;
constexpr int kMaxReplicas = 10000;
constexpr int kMaxGpusPerInstance = 1024;
constexpr int kMaxNodesPerInstance = 256;
constexpr int kDefaultReadyTimeoutSeconds = 300;

// Well-known node labels for level names that have one; others get a label under our prefix.
std::string DefaultNodeLabel(absl::string_view level) {
  if (level == "zone") return "topology.kubernetes.io/zone";
  if (level == "region") return "topology.kubernetes.io/region";
  if (level == "host" || level == "hostname" || level == "node") return "kubernetes.io/hostname";
  return absl::StrCat("topology.tandem.io/", level);
}

bool IsDnsLabel(absl::string_view text, size_t max_length) {
  if (text.empty() || text.size() > max_length) return false;
  if (!absl::ascii_islower(static_cast<unsigned char>(text.front()))) return false;
  if (text.back() == '-') return false;
  for (char c : text) {
    if (!(absl::ascii_islower(static_cast<unsigned char>(c)) ||
          absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-')) {
      return false;
    }
  }
  return true;
}

// A Kubernetes label key: optional DNS-subdomain prefix and '/', then a name of up to 63
// alphanumerics, '-', '_', '.', starting and ending alphanumeric.
bool IsLabelKey(absl::string_view key) {
  auto valid_name = [](absl::string_view name) {
    if (name.empty() || name.size() > 63) return false;
    if (!absl::ascii_isalnum(static_cast<unsigned char>(name.front())) ||
        !absl::ascii_isalnum(static_cast<unsigned char>(name.back()))) {
      return false;
    }
    for (char c : name) {
      if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
        return false;
    }
    return true;
  };
  size_t slash = key.find('/');
  if (slash == absl::string_view::npos) return valid_name(key);
  absl::string_view prefix = key.substr(0, slash);
  if (prefix.empty() || prefix.size() > 253) return false;
  for (char c : prefix) {
    if (!absl::ascii_islower(static_cast<unsigned char>(c)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(c)) && c != '-' && c != '.')
      return false;
  }
  return valid_name(key.substr(slash + 1));
}

bool IsEnvName(absl::string_view name) {
  if (name.empty() || absl::ascii_isdigit(static_cast<unsigned char>(name.front()))) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  }
  return true;
}

// A non-negative Kubernetes resource quantity: "2", "0.5", "500m", "16Gi", "1e3".
bool IsQuantity(absl::string_view text) {
  size_t i = 0;
  size_t digits = 0;
  while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) ++i, ++digits;
  if (i < text.size() && text[i] == '.') {
    ++i;
    while (i < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[i]))) {
      ++i, ++digits;
    }
  }
  if (digits == 0) return false;
  absl::string_view suffix = text.substr(i);
  static constexpr absl::string_view kSuffixes[] = {"",  "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n",
                                                    "u", "m",  "k",  "M",  "G",  "T",  "P",  "E"};
  for (absl::string_view allowed : kSuffixes) {
    if (suffix == allowed) return true;
  }
  if (suffix.size() >= 2 && (suffix[0] == 'e' || suffix[0] == 'E')) {
    size_t j = 1;
    if (suffix[j] == '+' || suffix[j] == '-') ++j;
    if (j >= suffix.size()) return false;
    for (; j < suffix.size(); ++j) {
      if (!absl::ascii_isdigit(static_cast<unsigned char>(suffix[j]))) return false;
    }
    return true;
  }
  return false;
}

size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string Normalized(absl::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != '_' && c != '-') out.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// The closest allowed name for a misspelt one, or empty.
std::string DidYouMean(absl::string_view given, const std::vector<absl::string_view>& allowed) {
  std::string best;
  size_t best_distance = std::max<size_t>(2, given.size() / 4) + 1;
  for (absl::string_view candidate : allowed) {
    if (Normalized(candidate) == Normalized(given)) return std::string(candidate);
    size_t distance = EditDistance(given, candidate);
    if (distance < best_distance) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  return best;
}

std::string Quoted(absl::string_view text) { return absl::StrCat("'", text, "'"); }

std::string AllowedList(const std::vector<absl::string_view>& allowed) {
  return absl::StrJoin(allowed, ", ");
}

std::string ScalingControllerName(ScalingController controller) {
  return controller == ScalingController::kPlanner ? "planner" : "hpa";
}

struct Problem {
  int line = 0;
  std::string text;
};

// Walks the YAML tree, filling a DeploymentSpec and collecting every problem with its line.
class SpecParser {
 public:
  explicit SpecParser(std::string filename) : filename_(std::move(filename)) {}

  absl::StatusOr<DeploymentSpec> Parse(absl::string_view text);

 private:
  using Keys = std::vector<absl::string_view>;

  void Error(int line, absl::string_view path, absl::string_view message) {
    problems_.push_back(
        {line, path.empty() ? std::string(message) : absl::StrCat(path, ": ", message)});
  }
  void Error(const YAML::Node& node, absl::string_view path, absl::string_view message) {
    Error(LineOf(node), path, message);
  }
  static int LineOf(const YAML::Node& node) {
    const YAML::Mark mark = node.Mark();
    return mark.line >= 0 ? mark.line + 1 : 0;
  }
  static std::string Path(absl::string_view parent, absl::string_view key) {
    return parent.empty() ? std::string(key) : absl::StrCat(parent, ".", key);
  }

  // Checks that `node` is a map whose keys are unique strings from `allowed`.
  bool CheckMap(const YAML::Node& node, absl::string_view path, const Keys& allowed);
  static bool Has(const YAML::Node& map, absl::string_view key) {
    return map[std::string(key)].IsDefined();
  }
  std::optional<std::string> ReadString(const YAML::Node& node, absl::string_view path);
  std::optional<int> ReadInt(const YAML::Node& node, absl::string_view path, int min, int max);
  std::optional<bool> ReadBool(const YAML::Node& node, absl::string_view path);
  std::optional<std::string> ReadQuantity(const YAML::Node& node, absl::string_view path);
  std::optional<std::string> ReadDnsLabel(const YAML::Node& node, absl::string_view path,
                                          size_t max_length);
  std::vector<std::string> ReadStringList(const YAML::Node& node, absl::string_view path);

  void ParseTopology(const YAML::Node& node, DeploymentSpec& spec);
  void ParsePack(const YAML::Node& node, absl::string_view path, PackConstraint& pack);
  std::optional<Autoscaling> ParseAutoscaling(const YAML::Node& node, absl::string_view path);
  void ParseRole(const std::string& role_name, const YAML::Node& node, Role& role);
  void ParseScalingGroup(const YAML::Node& node, absl::string_view path, ScalingGroup& group);
  void ParseKubernetes(const YAML::Node& node, KubernetesOptions& options);

  void CheckSpec(DeploymentSpec& spec);
  void CheckPackLevels(const DeploymentSpec& spec, const PackConstraint& pack, int line,
                       absl::string_view path);
  void CheckNesting(const DeploymentSpec& spec, const PackConstraint& inner, int line,
                    absl::string_view inner_path, const PackConstraint& outer,
                    absl::string_view outer_name);
  void CheckAutoscaling(const DeploymentSpec& spec, Autoscaling& autoscaling, int replicas,
                        int min_available, int line, absl::string_view path, bool explicit_control,
                        bool is_router);
  void SortRoles(DeploymentSpec& spec);

  std::string filename_;
  std::vector<Problem> problems_;
  // Lines of the fields whose checks come after parsing (keyed by path).
  std::map<std::string, int> lines_;
  std::set<std::string> explicit_controller_;
};

bool SpecParser::CheckMap(const YAML::Node& node, absl::string_view path, const Keys& allowed) {
  if (!node.IsMap()) {
    Error(node, path.empty() ? "spec" : path,
          absl::StrCat("expected a map with keys ", AllowedList(allowed)));
    return false;
  }
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key_node = it->first;
    if (!key_node.IsScalar()) {
      Error(key_node, path, "keys must be plain names");
      continue;
    }
    const std::string key = key_node.Scalar();
    if (!seen.insert(key).second) {
      Error(key_node, Path(path, key), "appears twice; each key may be given once");
      continue;
    }
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string suggestion = DidYouMean(key, allowed);
      Error(key_node, Path(path, key),
            absl::StrCat(
                "unknown field",
                suggestion.empty() ? "" : absl::StrCat(" (did you mean '", suggestion, "'?)"),
                "; allowed: ", AllowedList(allowed)));
    }
  }
  return true;
}

std::optional<std::string> SpecParser::ReadString(const YAML::Node& node, absl::string_view path) {
  if (!node.IsScalar()) {
    Error(node, path, "expected a string");
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<int> SpecParser::ReadInt(const YAML::Node& node, absl::string_view path, int min,
                                       int max) {
  int value = 0;
  // A quoted scalar ("3") is a string in YAML and in the JSON Schema, so it is refused here too.
  if (!node.IsScalar() || node.Tag() == "!" || !absl::SimpleAtoi(node.Scalar(), &value)) {
    Error(node, path,
          absl::StrCat(node.IsScalar() ? Quoted(node.Scalar()) + " is not an integer"
                                       : std::string("expected an integer"),
                       "; allowed: ", min, "..", max));
    return std::nullopt;
  }
  if (value < min || value > max) {
    Error(node, path, absl::StrCat(value, " is out of range; allowed: ", min, "..", max));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> SpecParser::ReadBool(const YAML::Node& node, absl::string_view path) {
  if (node.IsScalar() && node.Tag() != "!") {
    if (node.Scalar() == "true") return true;
    if (node.Scalar() == "false") return false;
  }
  Error(node, path, "expected true or false");
  return std::nullopt;
}

std::optional<std::string> SpecParser::ReadQuantity(const YAML::Node& node,
                                                    absl::string_view path) {
  if (!node.IsScalar() || !IsQuantity(node.Scalar())) {
    Error(node, path,
          absl::StrCat(node.IsScalar() ? Quoted(node.Scalar()) : std::string("value"),
                       " is not a Kubernetes quantity; allowed: a number with an optional suffix "
                       "such as 2, 500m, 0.5, 16Gi, 512Mi"));
    return std::nullopt;
  }
  return node.Scalar();
}

std::optional<std::string> SpecParser::ReadDnsLabel(const YAML::Node& node, absl::string_view path,
                                                    size_t max_length) {
  std::optional<std::string> text = ReadString(node, path);
  if (!text) return std::nullopt;
  if (!IsDnsLabel(*text, max_length)) {
    Error(node, path,
          absl::StrCat(Quoted(*text), " is not a valid name; allowed: up to ", max_length,
                       " lower-case letters, digits and '-', starting with a letter and not "
                       "ending with '-'"));
    return std::nullopt;
  }
  return text;
}

std::vector<std::string> SpecParser::ReadStringList(const YAML::Node& node,
                                                    absl::string_view path) {
  std::vector<std::string> out;
  if (!node.IsSequence()) {
    Error(node, path, "expected a list of strings");
    return out;
  }
  for (size_t i = 0; i < node.size(); ++i) {
    std::optional<std::string> item = ReadString(node[i], absl::StrCat(path, "[", i, "]"));
    if (item) out.push_back(*item);
  }
  return out;
}

void SpecParser::ParsePack(const YAML::Node& node, absl::string_view path, PackConstraint& pack) {
  if (!CheckMap(node, path, {"packRequired", "packPreferred"})) return;
  if (Has(node, "packRequired")) {
    const std::string field = Path(path, "packRequired");
    if (auto level = ReadString(node["packRequired"], field)) pack.required = *level;
    lines_[field] = LineOf(node["packRequired"]);
  }
  if (Has(node, "packPreferred")) {
    const std::string field = Path(path, "packPreferred");
    if (auto level = ReadString(node["packPreferred"], field)) pack.preferred = *level;
    lines_[field] = LineOf(node["packPreferred"]);
  }
  if (pack.empty() && node.size() == 0) {
    Error(node, path, "empty; allowed: packRequired or packPreferred naming a topology level");
  }
}

void SpecParser::ParseTopology(const YAML::Node& node, DeploymentSpec& spec) {
  if (!CheckMap(node, "topology", {"levels", "packRequired", "packPreferred"})) return;
  if (Has(node, "levels")) {
    const YAML::Node levels = node["levels"];
    if (!levels.IsSequence()) {
      Error(levels, "topology.levels", "expected a list of levels, broadest first");
    } else {
      std::set<std::string> names;
      std::set<std::string> labels;
      for (size_t i = 0; i < levels.size(); ++i) {
        const YAML::Node item = levels[i];
        const std::string path = absl::StrCat("topology.levels[", i, "]");
        TopologyLevel level;
        if (item.IsMap()) {
          if (!CheckMap(item, path, {"name", "nodeLabel"})) continue;
          if (!Has(item, "name")) {
            Error(item, Path(path, "name"), "missing; every level needs a name");
            continue;
          }
          auto name = ReadDnsLabel(item["name"], Path(path, "name"), 63);
          if (!name) continue;
          level.name = *name;
          if (Has(item, "nodeLabel")) {
            auto label = ReadString(item["nodeLabel"], Path(path, "nodeLabel"));
            if (!label) continue;
            if (!IsLabelKey(*label)) {
              Error(item["nodeLabel"], Path(path, "nodeLabel"),
                    absl::StrCat(Quoted(*label),
                                 " is not a Kubernetes label key; allowed: [prefix/]name, such "
                                 "as topology.kubernetes.io/zone"));
              continue;
            }
            level.node_label = *label;
          } else {
            level.node_label = DefaultNodeLabel(level.name);
          }
        } else {
          auto name = ReadDnsLabel(item, path, 63);
          if (!name) continue;
          level.name = *name;
          level.node_label = DefaultNodeLabel(level.name);
        }
        if (!names.insert(level.name).second) {
          Error(item, path,
                absl::StrCat("level ", Quoted(level.name),
                             " is declared twice; each level name must be unique"));
          continue;
        }
        if (!labels.insert(level.node_label).second) {
          Error(item, path,
                absl::StrCat("node label ", Quoted(level.node_label),
                             " is used by two levels; each level needs its own node label"));
          continue;
        }
        spec.levels.push_back(std::move(level));
      }
    }
  }
  for (absl::string_view key : {"packRequired", "packPreferred"}) {
    if (Has(node, key)) {
      const std::string field = Path("topology", key);
      auto level = ReadString(node[std::string(key)], field);
      if (!level) continue;
      (key == "packRequired" ? spec.topology.required : spec.topology.preferred) = *level;
      lines_[field] = LineOf(node[std::string(key)]);
    }
  }
}

std::optional<Autoscaling> SpecParser::ParseAutoscaling(const YAML::Node& node,
                                                        absl::string_view path) {
  if (!CheckMap(node, path, {"min", "max", "controller", "cpuUtilization", "metric"})) {
    return std::nullopt;
  }
  Autoscaling autoscaling;
  bool ok = true;
  for (absl::string_view key : {"min", "max"}) {
    if (!Has(node, key)) {
      Error(node, Path(path, key), "missing; autoscaling needs both min and max");
      ok = false;
      continue;
    }
    auto value = ReadInt(node[std::string(key)], Path(path, key), 0, kMaxReplicas);
    if (!value) {
      ok = false;
      continue;
    }
    (key == "min" ? autoscaling.min : autoscaling.max) = *value;
  }
  if (Has(node, "controller")) {
    auto controller = ReadString(node["controller"], Path(path, "controller"));
    if (controller == "planner") {
      autoscaling.controller = ScalingController::kPlanner;
    } else if (controller == "hpa") {
      autoscaling.controller = ScalingController::kHpa;
    } else if (controller) {
      Error(node["controller"], Path(path, "controller"),
            absl::StrCat(Quoted(*controller), " is not a controller; allowed: planner, hpa"));
      ok = false;
    }
    explicit_controller_.insert(std::string(path));
  }
  if (Has(node, "cpuUtilization")) {
    autoscaling.cpu_utilization =
        ReadInt(node["cpuUtilization"], Path(path, "cpuUtilization"), 1, 1000);
    lines_[Path(path, "cpuUtilization")] = LineOf(node["cpuUtilization"]);
  }
  if (Has(node, "metric")) {
    const YAML::Node metric = node["metric"];
    const std::string metric_path = Path(path, "metric");
    lines_[metric_path] = LineOf(metric);
    if (CheckMap(metric, metric_path, {"name", "averageValue"})) {
      if (!Has(metric, "name") || !Has(metric, "averageValue")) {
        Error(metric, metric_path, "needs both name and averageValue");
        ok = false;
      } else {
        auto name = ReadString(metric["name"], Path(metric_path, "name"));
        auto value = ReadQuantity(metric["averageValue"], Path(metric_path, "averageValue"));
        if (name && value) {
          autoscaling.metric_name = *name;
          autoscaling.metric_average_value = *value;
        }
      }
    }
    if (autoscaling.cpu_utilization) {
      Error(metric, metric_path, "give either cpuUtilization or metric, not both");
      ok = false;
    }
  }
  lines_[std::string(path)] = LineOf(node);
  if (!ok) return std::nullopt;
  return autoscaling;
}

void SpecParser::ParseRole(const std::string& role_name, const YAML::Node& node, Role& role) {
  const std::string path = Path("roles", role_name);
  role.name = role_name;
  role.line = LineOf(node);
  if (!CheckMap(node, path,
                {"kind", "replicas", "minAvailable", "gpusPerInstance", "nodesPerInstance",
                 "resources", "model", "args", "env", "port", "startsAfter", "autoscaling",
                 "topology", "readyTimeoutSeconds"})) {
    return;
  }
  static const std::vector<std::pair<absl::string_view, RoleKind>> kKinds = {
      {"router", RoleKind::kRouter},
      {"prefill", RoleKind::kPrefill},
      {"decode", RoleKind::kDecode},
      {"planner", RoleKind::kPlanner},
      {"worker", RoleKind::kWorker}};
  const Keys kind_names = {"router", "prefill", "decode", "planner", "worker"};
  std::optional<std::string> kind_name;
  if (Has(node, "kind")) {
    kind_name = ReadString(node["kind"], Path(path, "kind"));
    if (!kind_name) return;
  } else {
    kind_name = role_name;
  }
  bool found = false;
  for (const auto& [name, kind] : kKinds) {
    if (name == *kind_name) {
      role.kind = kind;
      found = true;
    }
  }
  if (!found) {
    if (Has(node, "kind")) {
      Error(node["kind"], Path(path, "kind"),
            absl::StrCat(Quoted(*kind_name),
                         " is not a role kind; allowed: ", AllowedList(kind_names)));
    } else {
      Error(node, path,
            absl::StrCat("role name ", Quoted(role_name),
                         " is not a role kind, so the role needs `kind:`; allowed kinds: ",
                         AllowedList(kind_names)));
    }
  }

  if (Has(node, "replicas")) {
    role.replicas = ReadInt(node["replicas"], Path(path, "replicas"), 0, kMaxReplicas).value_or(1);
  }
  role.min_available = std::min(1, role.replicas);
  if (Has(node, "minAvailable")) {
    const YAML::Node value = node["minAvailable"];
    if (auto min_available = ReadInt(value, Path(path, "minAvailable"), 0, kMaxReplicas)) {
      role.min_available = *min_available;
      if (*min_available > role.replicas) {
        Error(value, Path(path, "minAvailable"),
              absl::StrCat(*min_available, " is more than replicas (", role.replicas,
                           "); allowed: 0..replicas"));
      }
    }
  }
  if (Has(node, "gpusPerInstance")) {
    role.gpus_per_instance =
        ReadInt(node["gpusPerInstance"], Path(path, "gpusPerInstance"), 0, kMaxGpusPerInstance)
            .value_or(0);
  }
  if (Has(node, "nodesPerInstance")) {
    const YAML::Node value = node["nodesPerInstance"];
    role.nodes_per_instance =
        ReadInt(value, Path(path, "nodesPerInstance"), 1, kMaxNodesPerInstance).value_or(1);
    if (role.nodes_per_instance > 1 && role.gpus_per_instance == 0) {
      Error(value, Path(path, "nodesPerInstance"),
            absl::StrCat(role.nodes_per_instance,
                         " hosts need gpusPerInstance: a multi-host TP group splits its GPUs "
                         "across hosts; allowed: 1 for CPU roles"));
    } else if (role.gpus_per_instance % role.nodes_per_instance != 0) {
      Error(value, Path(path, "nodesPerInstance"),
            absl::StrCat("TP size ", role.gpus_per_instance,
                         " (gpusPerInstance) does not divide "
                         "evenly across ",
                         role.nodes_per_instance, " hosts; allowed: a divisor of gpusPerInstance"));
    }
  }
  if (Has(node, "resources")) {
    const YAML::Node resources = node["resources"];
    const std::string resources_path = Path(path, "resources");
    if (CheckMap(resources, resources_path, {"cpu", "memory", "gpu"})) {
      if (Has(resources, "cpu")) {
        role.resources.cpu =
            ReadQuantity(resources["cpu"], Path(resources_path, "cpu")).value_or("");
      }
      if (Has(resources, "memory")) {
        role.resources.memory =
            ReadQuantity(resources["memory"], Path(resources_path, "memory")).value_or("");
      }
      if (Has(resources, "gpu")) {
        const YAML::Node value = resources["gpu"];
        if (auto gpu = ReadInt(value, Path(resources_path, "gpu"), 0, kMaxGpusPerInstance)) {
          const int per_pod = role.gpus_per_instance / std::max(1, role.nodes_per_instance);
          if (*gpu != per_pod) {
            Error(value, Path(resources_path, "gpu"),
                  absl::StrCat(*gpu, " GPUs per pod does not match gpusPerInstance ",
                               role.gpus_per_instance, " over nodesPerInstance ",
                               role.nodes_per_instance, "; allowed: ", per_pod,
                               " (or leave it out: it is derived)"));
          }
        }
      }
    }
  }
  role.resources.gpu = role.gpus_per_instance / std::max(1, role.nodes_per_instance);
  if (Has(node, "model")) {
    role.model = ReadString(node["model"], Path(path, "model")).value_or("");
    lines_[Path(path, "model")] = LineOf(node["model"]);
  }
  if (Has(node, "args")) role.args = ReadStringList(node["args"], Path(path, "args"));
  if (Has(node, "env")) {
    const YAML::Node env = node["env"];
    const std::string env_path = Path(path, "env");
    if (!env.IsMap()) {
      Error(env, env_path, "expected a map of variable names to values");
    } else {
      for (auto it = env.begin(); it != env.end(); ++it) {
        const std::string name = it->first.Scalar();
        const std::string var_path = Path(env_path, name);
        if (!IsEnvName(name)) {
          Error(it->first, var_path,
                "is not a valid variable name; allowed: letters, digits and '_', not starting "
                "with a digit");
          continue;
        }
        if (role.env.count(name) != 0) {
          Error(it->first, var_path, "appears twice; each key may be given once");
          continue;
        }
        if (auto value = ReadString(it->second, var_path)) role.env[name] = *value;
      }
    }
  }
  if (Has(node, "port")) {
    role.port = ReadInt(node["port"], Path(path, "port"), 1, 65535).value_or(0);
  }
  if (Has(node, "startsAfter")) {
    role.starts_after = ReadStringList(node["startsAfter"], Path(path, "startsAfter"));
    lines_[Path(path, "startsAfter")] = LineOf(node["startsAfter"]);
  }
  if (Has(node, "autoscaling")) {
    role.autoscaling = ParseAutoscaling(node["autoscaling"], Path(path, "autoscaling"));
  }
  if (Has(node, "topology")) ParsePack(node["topology"], Path(path, "topology"), role.topology);
  if (Has(node, "readyTimeoutSeconds")) {
    role.ready_timeout_seconds =
        ReadInt(node["readyTimeoutSeconds"], Path(path, "readyTimeoutSeconds"), 1, 86400)
            .value_or(kDefaultReadyTimeoutSeconds);
  }
}

void SpecParser::ParseScalingGroup(const YAML::Node& node, absl::string_view path,
                                   ScalingGroup& group) {
  group.line = LineOf(node);
  if (!CheckMap(node, path,
                {"name", "roles", "replicas", "minAvailable", "autoscaling", "topology",
                 "readyTimeoutSeconds"})) {
    return;
  }
  if (!Has(node, "name")) {
    Error(node, Path(path, "name"), "missing; every scaling group needs a name");
  } else {
    group.name = ReadDnsLabel(node["name"], Path(path, "name"), kMaxRoleNameLength).value_or("");
  }
  if (!Has(node, "roles")) {
    Error(node, Path(path, "roles"), "missing; list the roles placed and scaled together");
  } else {
    group.roles = ReadStringList(node["roles"], Path(path, "roles"));
    lines_[Path(path, "roles")] = LineOf(node["roles"]);
    if (group.roles.empty() && node["roles"].IsSequence()) {
      Error(node["roles"], Path(path, "roles"), "empty; list at least one role");
    }
  }
  if (Has(node, "replicas")) {
    group.replicas = ReadInt(node["replicas"], Path(path, "replicas"), 0, kMaxReplicas).value_or(1);
  }
  group.min_available = std::min(1, group.replicas);
  if (Has(node, "minAvailable")) {
    const YAML::Node value = node["minAvailable"];
    if (auto min_available = ReadInt(value, Path(path, "minAvailable"), 0, kMaxReplicas)) {
      group.min_available = *min_available;
      if (*min_available > group.replicas) {
        Error(value, Path(path, "minAvailable"),
              absl::StrCat(*min_available, " is more than replicas (", group.replicas,
                           "); allowed: 0..replicas"));
      }
    }
  }
  if (Has(node, "autoscaling")) {
    group.autoscaling = ParseAutoscaling(node["autoscaling"], Path(path, "autoscaling"));
  }
  if (Has(node, "topology")) ParsePack(node["topology"], Path(path, "topology"), group.topology);
  if (Has(node, "readyTimeoutSeconds")) {
    group.ready_timeout_seconds =
        ReadInt(node["readyTimeoutSeconds"], Path(path, "readyTimeoutSeconds"), 1, 86400)
            .value_or(kDefaultReadyTimeoutSeconds);
  }
}

void SpecParser::ParseKubernetes(const YAML::Node& node, KubernetesOptions& options) {
  const std::string path = "kubernetes";
  if (!CheckMap(node, path,
                {"namespace", "image", "imagePullPolicy", "schedulerName", "priorityClassName",
                 "kai", "modelVolume", "prometheus"})) {
    return;
  }
  if (Has(node, "namespace")) {
    options.namespace_name =
        ReadDnsLabel(node["namespace"], Path(path, "namespace"), 63).value_or("");
  }
  if (Has(node, "image")) {
    auto image = ReadString(node["image"], Path(path, "image"));
    if (image && (image->empty() || image->find_first_of(" \t\n") != std::string::npos)) {
      Error(node["image"], Path(path, "image"),
            "is not an image reference; allowed: [registry/]name[:tag][@digest]");
    } else if (image) {
      options.image = *image;
    }
  }
  if (Has(node, "imagePullPolicy")) {
    auto policy = ReadString(node["imagePullPolicy"], Path(path, "imagePullPolicy"));
    if (policy && *policy != "Always" && *policy != "IfNotPresent" && *policy != "Never") {
      Error(node["imagePullPolicy"], Path(path, "imagePullPolicy"),
            absl::StrCat(Quoted(*policy),
                         " is not a pull policy; allowed: Always, IfNotPresent, "
                         "Never"));
    } else if (policy) {
      options.image_pull_policy = *policy;
    }
  }
  if (Has(node, "schedulerName")) {
    options.scheduler_name =
        ReadDnsLabel(node["schedulerName"], Path(path, "schedulerName"), 63).value_or("");
  }
  if (Has(node, "priorityClassName")) {
    options.priority_class_name =
        ReadDnsLabel(node["priorityClassName"], Path(path, "priorityClassName"), 63).value_or("");
  }
  if (Has(node, "kai")) {
    const YAML::Node kai = node["kai"];
    const std::string kai_path = Path(path, "kai");
    if (CheckMap(kai, kai_path, {"queue", "parentQueue", "createQueue"})) {
      if (!Has(kai, "queue")) {
        Error(kai, Path(kai_path, "queue"), "missing; name the KAI Scheduler queue");
      } else {
        options.kai_queue = ReadDnsLabel(kai["queue"], Path(kai_path, "queue"), 63).value_or("");
      }
      if (Has(kai, "parentQueue")) {
        options.kai_parent_queue =
            ReadDnsLabel(kai["parentQueue"], Path(kai_path, "parentQueue"), 63).value_or("");
      }
      if (Has(kai, "createQueue")) {
        options.kai_create_queue =
            ReadBool(kai["createQueue"], Path(kai_path, "createQueue")).value_or(false);
      }
    }
  }
  if (Has(node, "modelVolume")) {
    const YAML::Node volume = node["modelVolume"];
    const std::string volume_path = Path(path, "modelVolume");
    if (CheckMap(volume, volume_path, {"claimName", "mountPath"})) {
      if (!Has(volume, "claimName")) {
        Error(volume, Path(volume_path, "claimName"),
              "missing; name the PersistentVolumeClaim that holds the models");
      } else {
        options.model_claim_name =
            ReadDnsLabel(volume["claimName"], Path(volume_path, "claimName"), 253).value_or("");
      }
      if (Has(volume, "mountPath")) {
        auto mount = ReadString(volume["mountPath"], Path(volume_path, "mountPath"));
        if (mount && (mount->empty() || mount->front() != '/' || *mount == "/")) {
          Error(volume["mountPath"], Path(volume_path, "mountPath"),
                "allowed: an absolute directory other than /, such as /models");
        } else if (mount) {
          options.model_mount_path = *mount;
        }
      }
    }
  }
  if (Has(node, "prometheus")) {
    auto mode = ReadString(node["prometheus"], Path(path, "prometheus"));
    if (mode == "annotations") {
      options.prometheus = PrometheusMode::kAnnotations;
    } else if (mode == "podMonitor") {
      options.prometheus = PrometheusMode::kPodMonitor;
    } else if (mode == "none") {
      options.prometheus = PrometheusMode::kNone;
    } else if (mode) {
      Error(node["prometheus"], Path(path, "prometheus"),
            absl::StrCat(Quoted(*mode),
                         " is not a scrape mode; allowed: annotations, "
                         "podMonitor, none"));
    }
  }
  if (!options.kai_queue.empty() && options.scheduler_name.empty()) {
    options.scheduler_name = "kai-scheduler";
  }
}

absl::StatusOr<DeploymentSpec> SpecParser::Parse(absl::string_view text) {
  DeploymentSpec spec;
  spec.filename = filename_;
  if (text.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(absl::StrCat(filename_, ": ", text.size(),
                                                   " bytes is too large for a deployment spec; "
                                                   "allowed: up to ",
                                                   kMaxSpecBytes));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(filename_, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
  }
  try {
    if (!root.IsDefined() || root.IsNull()) {
      return absl::InvalidArgumentError(
          absl::StrCat(filename_, ": empty; a spec needs at least apiVersion, name and roles"));
    }
    if (!CheckMap(
            root, "",
            {"apiVersion", "name", "model", "topology", "roles", "scalingGroups", "kubernetes"})) {
      // Not a map: nothing else can be read.
    } else {
      if (!Has(root, "apiVersion")) {
        Error(root, "apiVersion", absl::StrCat("missing; allowed: ", kSpecApiVersion));
      } else if (auto version = ReadString(root["apiVersion"], "apiVersion");
                 version && *version != kSpecApiVersion) {
        Error(root["apiVersion"], "apiVersion",
              absl::StrCat(Quoted(*version), " is not supported; allowed: ", kSpecApiVersion));
      }
      if (!Has(root, "name")) {
        Error(root, "name", "missing; name the deployment (a lower-case DNS label)");
      } else {
        spec.name = ReadDnsLabel(root["name"], "name", kMaxNameLength).value_or("");
      }
      if (Has(root, "model")) {
        spec.model = ReadString(root["model"], "model").value_or("");
      }
      if (Has(root, "topology")) ParseTopology(root["topology"], spec);
      if (!Has(root, "roles")) {
        Error(root, "roles", "missing; a deployment needs a router and at least one worker role");
      } else if (const YAML::Node roles = root["roles"]; !roles.IsMap() || roles.size() == 0) {
        Error(roles, "roles",
              "expected a map of role name to role, with a router and at least one worker role");
      } else {
        std::set<std::string> seen;
        for (auto it = roles.begin(); it != roles.end(); ++it) {
          if (!it->first.IsScalar()) {
            Error(it->first, "roles", "role names must be plain names");
            continue;
          }
          const std::string name = it->first.Scalar();
          if (!seen.insert(name).second) {
            Error(it->first, Path("roles", name), "appears twice; each role name must be unique");
            continue;
          }
          if (!IsDnsLabel(name, kMaxRoleNameLength)) {
            Error(it->first, Path("roles", name),
                  absl::StrCat("is not a valid role name; allowed: up to ", kMaxRoleNameLength,
                               " lower-case letters, digits and '-', starting with a letter"));
            continue;
          }
          Role role;
          ParseRole(name, it->second, role);
          role.line = LineOf(it->first);  // errors about the whole role point at its name
          spec.roles.push_back(std::move(role));
        }
      }
      if (Has(root, "scalingGroups")) {
        const YAML::Node groups = root["scalingGroups"];
        if (!groups.IsSequence()) {
          Error(groups, "scalingGroups", "expected a list of {name, roles, ...}");
        } else {
          for (size_t i = 0; i < groups.size(); ++i) {
            ScalingGroup group;
            ParseScalingGroup(groups[i], absl::StrCat("scalingGroups[", i, "]"), group);
            spec.scaling_groups.push_back(std::move(group));
          }
        }
      }
      if (Has(root, "kubernetes")) ParseKubernetes(root["kubernetes"], spec.kubernetes);
      if (problems_.empty()) CheckSpec(spec);
    }
  } catch (const YAML::Exception& e) {
    Error(e.mark.line + 1, "", absl::StrCat("cannot read the spec: ", e.msg));
  }
  if (!problems_.empty()) {
    std::stable_sort(problems_.begin(), problems_.end(),
                     [](const Problem& a, const Problem& b) { return a.line < b.line; });
    std::vector<std::string> lines;
    for (const Problem& problem : problems_) {
      lines.push_back(problem.line > 0
                          ? absl::StrCat(filename_, ":", problem.line, ": ", problem.text)
                          : absl::StrCat(filename_, ": ", problem.text));
    }
    return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
  }
  SortRoles(spec);
  return spec;
}

void SpecParser::CheckPackLevels(const DeploymentSpec& spec, const PackConstraint& pack, int line,
                                 absl::string_view path) {
  std::vector<absl::string_view> names;
  for (const TopologyLevel& level : spec.levels) names.push_back(level.name);
  for (const auto& [key, level] :
       {std::pair<absl::string_view, const std::string*>{"packRequired", &pack.required},
        {"packPreferred", &pack.preferred}}) {
    if (level->empty() || spec.LevelIndex(*level) >= 0) continue;
    const std::string field = Path(path, key);
    auto it = lines_.find(field);
    std::string suggestion = DidYouMean(*level, names);
    Error(it != lines_.end() ? it->second : line, field,
          names.empty()
              ? absl::StrCat("unknown topology level ", Quoted(*level),
                             "; no levels are declared: list them under topology.levels, "
                             "broadest first")
              : absl::StrCat(
                    "unknown topology level ", Quoted(*level),
                    suggestion.empty() ? "" : absl::StrCat(" (did you mean '", suggestion, "'?)"),
                    "; allowed: ", AllowedList(names)));
  }
  if (!pack.required.empty() && !pack.preferred.empty() && spec.LevelIndex(pack.required) >= 0 &&
      spec.LevelIndex(pack.preferred) >= 0 &&
      spec.LevelIndex(pack.preferred) <= spec.LevelIndex(pack.required)) {
    const std::string field = Path(path, "packPreferred");
    Error(lines_.count(field) ? lines_[field] : line, field,
          absl::StrCat(Quoted(pack.preferred), " is not narrower than packRequired ",
                       Quoted(pack.required),
                       "; allowed: a level below the required one (levels are listed broadest "
                       "first)"));
  }
}

// An inner unit (a role instance inside a group, a group inside the deployment) cannot be packed
// more loosely than the unit that contains it.
void SpecParser::CheckNesting(const DeploymentSpec& spec, const PackConstraint& inner, int line,
                              absl::string_view inner_path, const PackConstraint& outer,
                              absl::string_view outer_name) {
  if (inner.required.empty() || outer.required.empty()) return;
  int inner_index = spec.LevelIndex(inner.required);
  int outer_index = spec.LevelIndex(outer.required);
  if (inner_index < 0 || outer_index < 0 || inner_index >= outer_index) return;
  const std::string field = Path(inner_path, "packRequired");
  Error(lines_.count(field) ? lines_[field] : line, field,
        absl::StrCat(Quoted(inner.required), " is broader than ", outer_name, "'s packRequired ",
                     Quoted(outer.required), "; allowed: ", Quoted(outer.required),
                     " or a narrower level"));
}

void SpecParser::CheckAutoscaling(const DeploymentSpec& spec, Autoscaling& autoscaling,
                                  int replicas, int min_available, int line, absl::string_view path,
                                  bool explicit_control, bool is_router) {
  const bool has_planner = spec.FirstOfKind(RoleKind::kPlanner) != nullptr;
  if (!explicit_control) {
    autoscaling.controller =
        has_planner && !is_router ? ScalingController::kPlanner : ScalingController::kHpa;
  }
  if (autoscaling.min > autoscaling.max) {
    Error(line, path,
          absl::StrCat("min ", autoscaling.min, " is more than max ", autoscaling.max,
                       "; allowed: min <= max"));
    return;
  }
  if (autoscaling.max < 1) {
    Error(line, Path(path, "max"), "0 would never run an instance; allowed: 1 or more");
    return;
  }
  if (replicas < autoscaling.min || replicas > autoscaling.max) {
    Error(line, path,
          absl::StrCat("replicas ", replicas, " is outside the bounds ", autoscaling.min, "..",
                       autoscaling.max, "; allowed: min <= replicas <= max"));
  }
  if (autoscaling.min < min_available) {
    Error(line, Path(path, "min"),
          absl::StrCat(autoscaling.min, " is less than minAvailable (", min_available,
                       "): scaling down that far would break the gang; allowed: ", min_available,
                       "..max"));
  }
  if (autoscaling.controller == ScalingController::kPlanner) {
    if (!has_planner) {
      Error(line, Path(path, "controller"),
            "planner, but the deployment has no planner role; allowed: hpa, or add a role of "
            "kind planner");
    } else if (is_router) {
      Error(line, Path(path, "controller"),
            "the planner scales engine roles, not the router; allowed: hpa");
    }
    for (absl::string_view field : {"cpuUtilization", "metric"}) {
      std::string field_path = Path(path, field);
      if (lines_.count(field_path)) {
        Error(lines_[field_path], field_path,
              absl::StrCat("only applies with controller: hpa; the planner uses its SLA targets (",
                           "controller is ", ScalingControllerName(autoscaling.controller), ")"));
      }
    }
  } else if (!autoscaling.cpu_utilization && autoscaling.metric_name.empty()) {
    autoscaling.cpu_utilization = 80;  // the HorizontalPodAutoscaler default, made explicit
  }
}

void SpecParser::CheckSpec(DeploymentSpec& spec) {
  // Deployment-level topology.
  CheckPackLevels(spec, spec.topology, 0, "topology");

  // Role kinds present.
  int routers = 0;
  int planners = 0;
  int prefills = 0;
  int decoders = 0;
  int workers = 0;
  for (const Role& role : spec.roles) {
    routers += role.kind == RoleKind::kRouter;
    planners += role.kind == RoleKind::kPlanner;
    prefills += role.kind == RoleKind::kPrefill;
    decoders += role.kind == RoleKind::kDecode;
    workers += role.kind == RoleKind::kWorker;
  }
  if (routers != 1) {
    Error(0, "roles",
          absl::StrCat(routers == 0 ? "no" : absl::StrCat(routers),
                       " roles of kind router; allowed: exactly one (scale it with replicas)"));
  }
  if (planners > 1) {
    Error(0, "roles", absl::StrCat(planners, " roles of kind planner; allowed: at most one"));
  }
  if (decoders == 0 && workers == 0) {
    Error(0, "roles",
          "no role that generates tokens; allowed: add a role of kind decode (with prefill for "
          "disaggregated serving) or worker (aggregated)");
  } else if (prefills > 0 && decoders == 0) {
    Error(0, "roles",
          "prefill roles need a role of kind decode to hand their KV blocks to; allowed: add a "
          "decode role, or use kind worker alone for aggregated serving");
  }

  std::set<std::string> role_names;
  for (const Role& role : spec.roles) role_names.insert(role.name);
  std::vector<absl::string_view> role_list(role_names.begin(), role_names.end());

  for (Role& role : spec.roles) {
    const std::string path = Path("roles", role.name);
    if (!IsEngineKind(role.kind)) {
      if (role.gpus_per_instance != 0 || role.nodes_per_instance != 1) {
        Error(role.line, path,
              absl::StrCat("a ", RoleKindName(role.kind),
                           " runs no model; allowed: gpusPerInstance 0 and nodesPerInstance 1"));
      }
      if (!role.model.empty()) {
        Error(lines_[Path(path, "model")], Path(path, "model"),
              absl::StrCat("a ", RoleKindName(role.kind),
                           " loads no model; allowed: model on prefill, decode and worker roles"));
      }
    } else if (role.model.empty()) {
      if (spec.model.empty()) {
        Error(role.line, Path(path, "model"),
              "no model: set `model:` on the role or at the top level of the spec");
      } else {
        role.model = spec.model;
      }
    }
    if (role.kind == RoleKind::kPlanner && role.replicas > 1) {
      Error(role.line, Path(path, "replicas"),
            absl::StrCat(role.replicas,
                         " planners would fight over the replica counts; "
                         "allowed: 0 or 1"));
    }
    if (role.port == 0) {
      role.port = role.kind == RoleKind::kRouter    ? 8000
                  : role.kind == RoleKind::kPlanner ? 8090
                                                    : 8080;
    }

    // startsAfter.
    std::set<std::string> dependencies;
    const int starts_line =
        lines_.count(Path(path, "startsAfter")) ? lines_[Path(path, "startsAfter")] : role.line;
    for (const std::string& dependency : role.starts_after) {
      const std::string field = Path(path, "startsAfter");
      if (dependency == role.name) {
        Error(starts_line, field,
              absl::StrCat("role ", Quoted(role.name),
                           " cannot start after "
                           "itself; allowed: other role names"));
      } else if (role_names.count(dependency) == 0) {
        std::string suggestion = DidYouMean(dependency, role_list);
        Error(starts_line, field,
              absl::StrCat(
                  "unknown role ", Quoted(dependency),
                  suggestion.empty() ? "" : absl::StrCat(" (did you mean '", suggestion, "'?)"),
                  "; allowed: ", AllowedList(role_list)));
      } else if (!dependencies.insert(dependency).second) {
        Error(starts_line, field, absl::StrCat(Quoted(dependency), " is listed twice"));
      }
    }

    CheckPackLevels(spec, role.topology, role.line, Path(path, "topology"));
    CheckNesting(spec, role.topology, role.line, Path(path, "topology"), spec.topology,
                 "the deployment");
    if (role.autoscaling) {
      const std::string autoscaling_path = Path(path, "autoscaling");
      if (role.kind == RoleKind::kPlanner) {
        Error(lines_[autoscaling_path], autoscaling_path,
              "the planner is not autoscaled; allowed: remove autoscaling");
      } else {
        CheckAutoscaling(spec, *role.autoscaling, role.replicas, role.min_available,
                         lines_[autoscaling_path], autoscaling_path,
                         explicit_controller_.count(autoscaling_path) != 0,
                         role.kind == RoleKind::kRouter);
      }
    }
  }

  // Cycles in startsAfter: depth-first search, reporting the first cycle found as a path.
  {
    std::map<std::string, int> state;  // 0 = unvisited, 1 = on the stack, 2 = done
    std::vector<std::string> stack;
    bool reported = false;
    std::function<void(const Role&)> visit = [&](const Role& role) {
      state[role.name] = 1;
      stack.push_back(role.name);
      for (const std::string& dependency : role.starts_after) {
        const Role* next = spec.FindRole(dependency);
        if (next == nullptr || next == &role) continue;
        if (state[dependency] == 1 && !reported) {
          auto start = std::find(stack.begin(), stack.end(), dependency);
          std::vector<std::string> cycle(start, stack.end());
          cycle.push_back(dependency);
          const std::string field = Path(Path("roles", role.name), "startsAfter");
          Error(lines_.count(field) ? lines_[field] : role.line, field,
                absl::StrCat("startup order has a cycle: ", absl::StrJoin(cycle, " -> "),
                             " (each starts after the next); allowed: an order without cycles"));
          reported = true;
        } else if (state[dependency] == 0) {
          visit(*next);
        }
      }
      stack.pop_back();
      state[role.name] = 2;
    };
    for (const Role& role : spec.roles) {
      if (state[role.name] == 0) visit(role);
    }
  }

  // Scaling groups.
  std::set<std::string> group_names;
  for (size_t i = 0; i < spec.scaling_groups.size(); ++i) {
    ScalingGroup& group = spec.scaling_groups[i];
    const std::string path = absl::StrCat("scalingGroups[", i, "]");
    if (!group_names.insert(group.name).second) {
      Error(group.line, Path(path, "name"),
            absl::StrCat("scaling group ", Quoted(group.name),
                         " is declared twice; each group name must be unique"));
    }
    if (role_names.count(group.name) != 0) {
      Error(group.line, Path(path, "name"),
            absl::StrCat(Quoted(group.name), " is also a role name; allowed: a name no role uses"));
    }
    const int roles_line =
        lines_.count(Path(path, "roles")) ? lines_[Path(path, "roles")] : group.line;
    std::set<std::string> members;
    for (const std::string& member : group.roles) {
      Role* role = nullptr;
      for (Role& candidate : spec.roles) {
        if (candidate.name == member) role = &candidate;
      }
      if (role == nullptr) {
        std::string suggestion = DidYouMean(member, role_list);
        Error(roles_line, Path(path, "roles"),
              absl::StrCat(
                  "unknown role ", Quoted(member),
                  suggestion.empty() ? "" : absl::StrCat(" (did you mean '", suggestion, "'?)"),
                  "; allowed: ", AllowedList(role_list)));
        continue;
      }
      if (!members.insert(member).second) {
        Error(roles_line, Path(path, "roles"), absl::StrCat(Quoted(member), " is listed twice"));
        continue;
      }
      if (!IsEngineKind(role->kind)) {
        Error(roles_line, Path(path, "roles"),
              absl::StrCat(Quoted(member), " is a ", RoleKindName(role->kind),
                           "; allowed: prefill, decode and worker roles"));
        continue;
      }
      if (!role->scaling_group.empty()) {
        Error(roles_line, Path(path, "roles"),
              absl::StrCat("role ", Quoted(member), " is already in scaling group ",
                           Quoted(role->scaling_group), "; allowed: one group per role"));
        continue;
      }
      role->scaling_group = group.name;
      if (role->autoscaling) {
        const std::string field = Path(Path("roles", member), "autoscaling");
        Error(lines_[field], field,
              absl::StrCat("role ", Quoted(member), " is scaled with its scaling group ",
                           Quoted(group.name), "; allowed: autoscaling on the group instead"));
      }
      if (role->MultiHost() && role->replicas != 1) {
        Error(role->line, Path(Path("roles", member), "replicas"),
              absl::StrCat(role->replicas, " multi-host TP groups per replica of scaling group ",
                           Quoted(group.name),
                           "; allowed: 1 (scale the group to get more TP groups)"));
      }
      CheckNesting(spec, role->topology, role->line, Path(Path("roles", member), "topology"),
                   group.topology, absl::StrCat("scaling group ", Quoted(group.name)));
    }
    CheckPackLevels(spec, group.topology, group.line, Path(path, "topology"));
    CheckNesting(spec, group.topology, group.line, Path(path, "topology"), spec.topology,
                 "the deployment");
    if (group.autoscaling) {
      const std::string autoscaling_path = Path(path, "autoscaling");
      CheckAutoscaling(spec, *group.autoscaling, group.replicas, group.min_available,
                       lines_[autoscaling_path], autoscaling_path,
                       explicit_controller_.count(autoscaling_path) != 0, false);
    }
  }
}

// Startup order: a role comes after everything in its startsAfter; ties broken by kind (router
// first) and name so the order is the same on every run.
void SpecParser::SortRoles(DeploymentSpec& spec) {
  std::vector<Role> pending = std::move(spec.roles);
  std::sort(pending.begin(), pending.end(), [](const Role& a, const Role& b) {
    if (a.kind != b.kind) return static_cast<int>(a.kind) < static_cast<int>(b.kind);
    return a.name < b.name;
  });
  std::set<std::string> placed;
  spec.roles.clear();
  while (!pending.empty()) {
    auto ready = std::find_if(pending.begin(), pending.end(), [&](const Role& role) {
      return std::all_of(role.starts_after.begin(), role.starts_after.end(),
                         [&](const std::string& d) { return placed.count(d) != 0; });
    });
    if (ready == pending.end()) ready = pending.begin();  // unreachable: cycles were refused
    placed.insert(ready->name);
    spec.roles.push_back(std::move(*ready));
    pending.erase(ready);
  }
}

}  // namespace

absl::StatusOr<DeploymentSpec> ParseSpec(std::string_view text, std::string_view filename) {
  SpecParser parser{std::string(filename)};
  return parser.Parse(absl::string_view(text.data(), text.size()));
}

absl::StatusOr<DeploymentSpec> LoadSpec(Env& env, const std::string& path) {
  absl::StatusOr<std::string> text = env.ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("cannot read deployment spec: ", text.status().message()));
  }
  return ParseSpec(*text, path);
}

}  // namespace tandem::deploy
