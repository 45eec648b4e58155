#include "planner/config.h"

#include <cmath>
#include <filesystem>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/status.h"
#include "planner/scale_targets.h"
#include "yaml-cpp/yaml.h"

namespace tandem::planner {
namespace {

absl::string_view View(std::string_view text) { return {text.data(), text.size()}; }

// Reads one YAML mapping: typed getters that record which keys are known, then a check that no
// other key is present. Messages read "planner.yaml:7: 'targets.ttft_ms' must be ...".
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string source, std::string path)
      : node_(node), source_(std::move(source)), path_(std::move(path)) {}

  absl::Status CheckMap() const {
    if (!node_.IsMap()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(node_), ": ", path_.empty() ? "the planner config" : Quote(path_),
                       " must be a mapping of keys to values"));
    }
    return absl::OkStatus();
  }

  absl::Status Number(const std::string& key, double* out) {
    YAML::Node value = Find(key);
    if (Absent(value)) return absl::OkStatus();
    double parsed = 0;
    if (!value.IsScalar() || !YAML::convert<double>::decode(value, parsed) ||
        !std::isfinite(parsed)) {
      return Error(value, key, "must be a number", value);
    }
    *out = parsed;
    return absl::OkStatus();
  }

  absl::Status Integer(const std::string& key, int64_t* out) {
    YAML::Node value = Find(key);
    if (Absent(value)) return absl::OkStatus();
    int64_t parsed = 0;
    if (!value.IsScalar() || !YAML::convert<int64_t>::decode(value, parsed)) {
      return Error(value, key, "must be a whole number", value);
    }
    *out = parsed;
    return absl::OkStatus();
  }

  absl::Status Int(const std::string& key, int* out) {
    int64_t wide = *out;
    TANDEM_RETURN_IF_ERROR(Integer(key, &wide));
    if (wide < std::numeric_limits<int>::min() || wide > std::numeric_limits<int>::max()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(Find(key)), ": ", Quote(Path(key)), " is out of range, got ", wide));
    }
    *out = static_cast<int>(wide);
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, bool* out) {
    YAML::Node value = Find(key);
    if (Absent(value)) return absl::OkStatus();
    bool parsed = false;
    if (!value.IsScalar() || !YAML::convert<bool>::decode(value, parsed)) {
      return Error(value, key, "must be true or false", value);
    }
    *out = parsed;
    return absl::OkStatus();
  }

  absl::Status String(const std::string& key, std::string* out) {
    YAML::Node value = Find(key);
    if (Absent(value)) return absl::OkStatus();
    if (!value.IsScalar()) return Error(value, key, "must be a string", value);
    *out = value.Scalar();
    return absl::OkStatus();
  }

  absl::Status StringList(const std::string& key, std::vector<std::string>* out) {
    YAML::Node value = Find(key);
    if (Absent(value)) return absl::OkStatus();
    if (!value.IsSequence()) return Error(value, key, "must be a list of strings", value);
    std::vector<std::string> items;
    for (const YAML::Node& item : value) {
      if (!item.IsScalar()) return Error(item, key, "must be a list of strings", item);
      items.push_back(item.Scalar());
    }
    *out = std::move(items);
    return absl::OkStatus();
  }

  // A mapping of names to strings, as "NAME=VALUE" items.
  absl::Status StringMap(const std::string& key, std::vector<std::string>* out) {
    YAML::Node value = Find(key);
    if (Absent(value)) return absl::OkStatus();
    if (!value.IsMap()) return Error(value, key, "must be a mapping of names to strings", value);
    std::vector<std::string> items;
    for (const auto& item : value) {
      if (!item.second.IsScalar()) {
        return Error(item.second, key, "must be a mapping of names to strings", item.second);
      }
      items.push_back(absl::StrCat(item.first.Scalar(), "=", item.second.Scalar()));
    }
    *out = std::move(items);
    return absl::OkStatus();
  }

  // The line of the `index`th item of the list `key` ("planner.yaml:7").
  std::string WhereItem(const std::string& key, size_t index) const {
    const YAML::Node& node = node_;
    if (node.IsMap() && node[key] && node[key].IsSequence() && index < node[key].size()) {
      return Where(node[key][index]);
    }
    return WhereKey(key);
  }

  // The child mapping, or an undefined node when absent.
  absl::StatusOr<MapReader> Child(const std::string& key) {
    const YAML::Node value = Find(key);
    if (Absent(value)) return MapReader(YAML::Node(YAML::NodeType::Map), source_, Path(key));
    MapReader child(value, source_, Path(key));
    TANDEM_RETURN_IF_ERROR(child.CheckMap());
    return child;
  }

  bool Has(const std::string& key) const {
    const YAML::Node& node = node_;
    return node.IsMap() && node[key] && !node[key].IsNull();
  }

  absl::Status NoUnknownKeys() const {
    for (const auto& item : node_) {
      std::string key = item.first.Scalar();
      if (known_.count(key) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(Where(item.first), ": unknown key ", Quote(Path(key)),
                         " (known here: ", absl::StrJoin(known_, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  // "planner.yaml:12" for the line of `key`, or of the mapping when the key is absent.
  std::string WhereKey(const std::string& key) const {
    const YAML::Node& node = node_;
    if (node.IsMap() && node[key]) return Where(node[key]);
    return Where(node);
  }
  std::string Path(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }

 private:
  static bool Absent(const YAML::Node& value) { return !value.IsDefined() || value.IsNull(); }
  YAML::Node Find(const std::string& key) {
    known_.insert(key);
    // Const lookups: yaml-cpp's non-const operator[] would insert the key.
    const YAML::Node& node = node_;
    if (!node.IsMap()) return YAML::Node();
    return node[key];
  }
  std::string Where(const YAML::Node& node) const {
    if (node.Mark().is_null()) return source_;
    return absl::StrCat(source_, ":", node.Mark().line + 1);
  }
  static std::string Quote(const std::string& text) { return absl::StrCat("'", text, "'"); }
  absl::Status Error(const YAML::Node& at, const std::string& key, std::string_view expected,
                     const YAML::Node& value) const {
    std::string got = value.IsScalar()     ? absl::StrCat("'", value.Scalar(), "'")
                      : value.IsSequence() ? "a list"
                                           : "a mapping";
    return absl::InvalidArgumentError(
        absl::StrCat(Where(at), ": ", Quote(Path(key)), " ", View(expected), ", got ", got));
  }

  YAML::Node node_;
  std::string source_;
  std::string path_;
  std::set<std::string> known_;
};

absl::Status Positive(std::string_view what, double value) {
  if (!(value > 0) || !std::isfinite(value)) {
    return absl::InvalidArgumentError(absl::StrCat(View(what), " must be > 0, got ", value));
  }
  return absl::OkStatus();
}

// Far above any real deployment; keeps the feasibility search (linear in max) instant.
constexpr int kMaxInstancesPerRole = 100000;

absl::Status ValidateRole(std::string_view role, const RoleBounds& bounds) {
  if (bounds.min_instances < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'", View(role), ".min' must be >= 1 (a role with no instance cannot serve), got ",
        bounds.min_instances));
  }
  if (bounds.max_instances < bounds.min_instances) {
    return absl::InvalidArgumentError(absl::StrCat("'", View(role), ".min' (", bounds.min_instances,
                                                   ") is greater than '", View(role), ".max' (",
                                                   bounds.max_instances, ")"));
  }
  if (bounds.max_instances > kMaxInstancesPerRole) {
    return absl::InvalidArgumentError(absl::StrCat("'", View(role),
                                                   ".max' must be <= ", kMaxInstancesPerRole,
                                                   ", got ", bounds.max_instances));
  }
  if (bounds.gpus_per_instance < 1) {
    return absl::InvalidArgumentError(absl::StrCat("'", View(role),
                                                   ".gpus_per_instance' (the TP group size) must "
                                                   "be >= 1, got ",
                                                   bounds.gpus_per_instance));
  }
  return absl::OkStatus();
}

}  // namespace

std::string_view PlannerModeName(PlannerMode mode) {
  return mode == PlannerMode::kThroughput ? "throughput" : "load";
}

absl::StatusOr<std::pair<int, int>> SmallestFeasibleReplicas(const ReplicaBounds& bounds) {
  TANDEM_RETURN_IF_ERROR(ValidateRole("prefill", bounds.prefill));
  TANDEM_RETURN_IF_ERROR(ValidateRole("decode", bounds.decode));
  std::optional<std::pair<int, int>> best;
  for (int prefill = bounds.prefill.min_instances; prefill <= bounds.prefill.max_instances;
       ++prefill) {
    // The fewest decode instances the ratio allows with this many prefill instances.
    double needed =
        std::isfinite(bounds.max_ratio) ? std::ceil(prefill / bounds.max_ratio - 1e-9) : 0;
    int decode = std::max<double>(bounds.decode.min_instances, needed) > bounds.decode.max_instances
                     ? bounds.decode.max_instances + 1
                     : static_cast<int>(std::max<double>(bounds.decode.min_instances, needed));
    if (decode > bounds.decode.max_instances || !RatioHolds(prefill, decode, bounds)) continue;
    if (bounds.gpu_budget > 0 && Gpus(prefill, decode, bounds) > bounds.gpu_budget) continue;
    if (!best || Gpus(prefill, decode, bounds) < Gpus(best->first, best->second, bounds)) {
      best = {prefill, decode};
    }
  }
  if (!best) {
    return absl::InvalidArgumentError(absl::StrCat(
        "no replica counts satisfy the bounds together: prefill ", bounds.prefill.min_instances,
        "..", bounds.prefill.max_instances, " x ", bounds.prefill.gpus_per_instance,
        " GPUs, decode ", bounds.decode.min_instances, "..", bounds.decode.max_instances, " x ",
        bounds.decode.gpus_per_instance, " GPUs, prefill:decode ratio in [", bounds.min_ratio, ", ",
        bounds.max_ratio, "]",
        bounds.gpu_budget > 0 ? absl::StrCat(", GPU budget ", bounds.gpu_budget) : ""));
  }
  return *best;
}

absl::Status ValidatePlannerConfig(const PlannerConfig& config) {
  TANDEM_RETURN_IF_ERROR(Positive("'targets.ttft_ms'", config.ttft_target_seconds * 1000));
  TANDEM_RETURN_IF_ERROR(Positive("'targets.itl_ms'", config.itl_target_seconds * 1000));
  TANDEM_RETURN_IF_ERROR(Positive("'interval_s'", config.interval_seconds));
  if (config.mode == PlannerMode::kThroughput && config.profile_path.empty()) {
    return absl::InvalidArgumentError(
        "throughput mode needs a latency profile: set 'profile' to the JSON file written by "
        "`tandem profile`, or use 'mode: load', which needs none");
  }
  if (!(config.horizon_seconds >= 0) || !std::isfinite(config.horizon_seconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'predictor.horizon_s' must be >= 0, got ", config.horizon_seconds));
  }
  PredictorOptions predictor = config.predictor;
  predictor.interval_seconds = config.interval_seconds;
  absl::Status predictor_status = ValidatePredictorOptions(predictor);
  if (!predictor_status.ok()) return Annotate(predictor_status, "'predictor'");
  const ReplicaBounds& bounds = config.bounds;
  if (bounds.gpu_budget < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'gpu_budget' must be >= 0 (0 = no budget), got ", bounds.gpu_budget));
  }
  if (!(bounds.min_ratio >= 0) || !(bounds.max_ratio > 0) || bounds.min_ratio > bounds.max_ratio) {
    return absl::InvalidArgumentError(
        absl::StrCat("'ratio' needs 0 <= min <= max and max > 0, got min ", bounds.min_ratio,
                     " and max ", bounds.max_ratio));
  }
  absl::StatusOr<std::pair<int, int>> floor = SmallestFeasibleReplicas(bounds);
  if (!floor.ok()) return floor.status();
  if (!(config.scale_out_cooldown_seconds >= 0) || !(config.scale_in_cooldown_seconds >= 0)) {
    return absl::InvalidArgumentError(
        "'scale_out.cooldown_s' and 'scale_in.cooldown_s' must be >= 0");
  }
  if (!(config.scale_in_margin >= 0 && config.scale_in_margin < 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'scale_in.margin' must be in [0, 1), got ", config.scale_in_margin));
  }
  if (config.scale_in_stable_intervals < 1 || config.scale_in_step < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("'scale_in.stable_intervals' and 'scale_in.step' must be >= 1, got ",
                     config.scale_in_stable_intervals, " and ", config.scale_in_step));
  }
  if (config.max_decode_batch < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("'throughput.max_decode_batch' must be >= 1, got ", config.max_decode_batch));
  }
  if (!(config.correction_smoothing > 0 && config.correction_smoothing <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'throughput.correction.smoothing' must be in (0, 1], got ", config.correction_smoothing));
  }
  if (!(config.correction_min > 0) || !(config.correction_max >= config.correction_min) ||
      !std::isfinite(config.correction_max)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'throughput.correction' needs 0 < min <= max, got min ",
                     config.correction_min, " and max ", config.correction_max));
  }
  if (config.regression_min_samples < 2 ||
      config.regression_window < config.regression_min_samples) {
    return absl::InvalidArgumentError(
        absl::StrCat("'load' needs min_samples >= 2 and window >= min_samples, got min_samples ",
                     config.regression_min_samples, " and window ", config.regression_window));
  }
  return absl::OkStatus();
}

absl::StatusOr<PlannerConfig> ParsePlannerConfig(std::string_view yaml, std::string_view source) {
  const std::string name(source);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
  }
  if (!root || root.IsNull()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": the planner config is empty; it needs at least 'targets'"));
  }
  PlannerConfig config;
  auto parse = [&]() -> absl::Status {
    MapReader top(root, name, "");
    TANDEM_RETURN_IF_ERROR(top.CheckMap());
    std::string mode = "throughput";
    TANDEM_RETURN_IF_ERROR(top.String("mode", &mode));
    if (mode == "throughput") {
      config.mode = PlannerMode::kThroughput;
    } else if (mode == "load") {
      config.mode = PlannerMode::kLoad;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(top.WhereKey("mode"), ": unknown 'mode' '",
                                                     mode, "' (expected throughput or load)"));
    }
    TANDEM_RETURN_IF_ERROR(top.Bool("advisory", &config.advisory));
    TANDEM_RETURN_IF_ERROR(top.Number("interval_s", &config.interval_seconds));
    TANDEM_RETURN_IF_ERROR(top.String("profile", &config.profile_path));

    if (!top.Has("targets")) {
      return absl::InvalidArgumentError(absl::StrCat(
          name, ": missing 'targets' (the SLA: 'targets: {ttft_ms: 500, itl_ms: 50}')"));
    }
    TANDEM_ASSIGN_OR_RETURN(MapReader targets, top.Child("targets"));
    if (!targets.Has("ttft_ms") || !targets.Has("itl_ms")) {
      return absl::InvalidArgumentError(absl::StrCat(
          top.WhereKey("targets"), ": 'targets' needs both ttft_ms and itl_ms (milliseconds)"));
    }
    double ttft_ms = 0, itl_ms = 0;
    TANDEM_RETURN_IF_ERROR(targets.Number("ttft_ms", &ttft_ms));
    TANDEM_RETURN_IF_ERROR(targets.Number("itl_ms", &itl_ms));
    if (!(ttft_ms > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          targets.WhereKey("ttft_ms"), ": 'targets.ttft_ms' must be > 0, got ", ttft_ms));
    }
    if (!(itl_ms > 0)) {
      return absl::InvalidArgumentError(
          absl::StrCat(targets.WhereKey("itl_ms"), ": 'targets.itl_ms' must be > 0, got ", itl_ms));
    }
    config.ttft_target_seconds = ttft_ms / 1000;
    config.itl_target_seconds = itl_ms / 1000;
    TANDEM_RETURN_IF_ERROR(targets.NoUnknownKeys());

    TANDEM_ASSIGN_OR_RETURN(MapReader predictor, top.Child("predictor"));
    std::string kind = std::string(PredictorKindName(config.predictor.kind));
    TANDEM_RETURN_IF_ERROR(predictor.String("kind", &kind));
    absl::StatusOr<PredictorKind> parsed_kind = ParsePredictorKind(kind);
    if (!parsed_kind.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(predictor.WhereKey("kind"), ": ", parsed_kind.status().message()));
    }
    config.predictor.kind = *parsed_kind;
    TANDEM_RETURN_IF_ERROR(predictor.Number("horizon_s", &config.horizon_seconds));
    TANDEM_RETURN_IF_ERROR(predictor.Number("alpha", &config.predictor.alpha));
    TANDEM_RETURN_IF_ERROR(predictor.Number("beta", &config.predictor.beta));
    TANDEM_RETURN_IF_ERROR(predictor.Number("gamma", &config.predictor.gamma));
    TANDEM_RETURN_IF_ERROR(
        predictor.Number("season_period_s", &config.predictor.season_period_seconds));
    TANDEM_RETURN_IF_ERROR(predictor.Number("level_noise", &config.predictor.kalman_level_noise));
    TANDEM_RETURN_IF_ERROR(predictor.Number("trend_noise", &config.predictor.kalman_trend_noise));
    TANDEM_RETURN_IF_ERROR(predictor.NoUnknownKeys());

    for (auto [role, bounds] :
         {std::pair<const char*, RoleBounds*>{"prefill", &config.bounds.prefill},
          {"decode", &config.bounds.decode}}) {
      if (!top.Has(role)) {
        return absl::InvalidArgumentError(
            absl::StrCat(name, ": missing '", role, "' (its bounds: '", role,
                         ": {min: 1, max: 4, gpus_per_instance: 1}')"));
      }
      TANDEM_ASSIGN_OR_RETURN(MapReader reader, top.Child(role));
      TANDEM_RETURN_IF_ERROR(reader.Int("min", &bounds->min_instances));
      TANDEM_RETURN_IF_ERROR(reader.Int("max", &bounds->max_instances));
      TANDEM_RETURN_IF_ERROR(reader.Int("gpus_per_instance", &bounds->gpus_per_instance));
      TANDEM_RETURN_IF_ERROR(reader.NoUnknownKeys());
      absl::Status role_status = ValidateRole(role, *bounds);
      if (!role_status.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(top.WhereKey(role), ": ", role_status.message()));
      }
    }
    TANDEM_RETURN_IF_ERROR(top.Int("gpu_budget", &config.bounds.gpu_budget));
    TANDEM_ASSIGN_OR_RETURN(MapReader ratio, top.Child("ratio"));
    TANDEM_RETURN_IF_ERROR(ratio.Number("min", &config.bounds.min_ratio));
    TANDEM_RETURN_IF_ERROR(ratio.Number("max", &config.bounds.max_ratio));
    TANDEM_RETURN_IF_ERROR(ratio.NoUnknownKeys());

    TANDEM_ASSIGN_OR_RETURN(MapReader scale_out, top.Child("scale_out"));
    TANDEM_RETURN_IF_ERROR(scale_out.Number("cooldown_s", &config.scale_out_cooldown_seconds));
    TANDEM_RETURN_IF_ERROR(scale_out.NoUnknownKeys());
    TANDEM_ASSIGN_OR_RETURN(MapReader scale_in, top.Child("scale_in"));
    TANDEM_RETURN_IF_ERROR(scale_in.Number("cooldown_s", &config.scale_in_cooldown_seconds));
    TANDEM_RETURN_IF_ERROR(scale_in.Number("margin", &config.scale_in_margin));
    TANDEM_RETURN_IF_ERROR(scale_in.Int("stable_intervals", &config.scale_in_stable_intervals));
    TANDEM_RETURN_IF_ERROR(scale_in.Int("step", &config.scale_in_step));
    TANDEM_RETURN_IF_ERROR(scale_in.NoUnknownKeys());

    TANDEM_ASSIGN_OR_RETURN(MapReader throughput, top.Child("throughput"));
    TANDEM_RETURN_IF_ERROR(throughput.Integer("max_decode_batch", &config.max_decode_batch));
    TANDEM_ASSIGN_OR_RETURN(MapReader correction, throughput.Child("correction"));
    TANDEM_RETURN_IF_ERROR(correction.Number("smoothing", &config.correction_smoothing));
    TANDEM_RETURN_IF_ERROR(correction.Number("min", &config.correction_min));
    TANDEM_RETURN_IF_ERROR(correction.Number("max", &config.correction_max));
    TANDEM_RETURN_IF_ERROR(correction.NoUnknownKeys());
    TANDEM_RETURN_IF_ERROR(throughput.NoUnknownKeys());

    TANDEM_ASSIGN_OR_RETURN(MapReader load, top.Child("load"));
    TANDEM_RETURN_IF_ERROR(load.Int("window", &config.regression_window));
    TANDEM_RETURN_IF_ERROR(load.Int("min_samples", &config.regression_min_samples));
    TANDEM_RETURN_IF_ERROR(load.NoUnknownKeys());

    TANDEM_ASSIGN_OR_RETURN(MapReader live, top.Child("live"));
    LiveConfig& l = config.live;
    TANDEM_RETURN_IF_ERROR(live.String("listen", &l.listen));
    TANDEM_RETURN_IF_ERROR(live.String("router", &l.router));
    TANDEM_RETURN_IF_ERROR(live.StringList("scrape", &l.scrape));
    TANDEM_RETURN_IF_ERROR(live.String("prometheus", &l.prometheus));
    TANDEM_RETURN_IF_ERROR(live.Number("prometheus_window_s", &l.prometheus_window_seconds));
    TANDEM_RETURN_IF_ERROR(live.String("prometheus_selector", &l.prometheus_selector));
    TANDEM_RETURN_IF_ERROR(live.String("connector", &l.connector));
    TANDEM_RETURN_IF_ERROR(live.String("orchestrator", &l.orchestrator));
    TANDEM_RETURN_IF_ERROR(live.String("orchestrator_state", &l.orchestrator_state));
    TANDEM_RETURN_IF_ERROR(live.String("namespace", &l.kubernetes_namespace));
    TANDEM_RETURN_IF_ERROR(live.StringList("scale", &l.scale));
    TANDEM_RETURN_IF_ERROR(live.StringMap("role_of", &l.role_of));
    TANDEM_RETURN_IF_ERROR(live.NoUnknownKeys());
    if (!l.connector.empty() && l.connector != "local" && l.connector != "kubernetes" &&
        l.connector != "none") {
      return absl::InvalidArgumentError(absl::StrCat(live.WhereKey("connector"),
                                                     ": unknown 'live.connector' '", l.connector,
                                                     "' (expected local, kubernetes or none)"));
    }
    if (l.prometheus_window_seconds < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          live.WhereKey("prometheus_window_s"), ": 'live.prometheus_window_s' must be > 0, got ",
          l.prometheus_window_seconds));
    }
    for (size_t i = 0; i < l.scale.size(); ++i) {
      absl::StatusOr<ScaleTarget> target = ParseScaleTarget(l.scale[i]);
      if (!target.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(
            live.WhereItem("scale", i), ": 'live.scale': ", target.status().message()));
      }
    }
    for (const std::string& item : l.role_of) {
      const std::string kind = item.substr(item.find('=') + 1);
      if (kind != "prefill" && kind != "decode") {
        return absl::InvalidArgumentError(absl::StrCat(
            live.WhereKey("role_of"), ": 'live.role_of' maps '", item.substr(0, item.find('=')),
            "' to '", kind, "' (expected prefill or decode)"));
      }
    }

    TANDEM_RETURN_IF_ERROR(top.NoUnknownKeys());
    absl::Status valid = ValidatePlannerConfig(config);
    if (!valid.ok()) return Annotate(valid, name);
    return absl::OkStatus();
  };
  absl::Status status;
  try {
    status = parse();
  } catch (const YAML::Exception& e) {
    status = absl::InvalidArgumentError(absl::StrCat(name, ":", e.mark.line + 1, ": ", e.msg));
  }
  if (!status.ok()) return status;
  return config;
}

absl::StatusOr<PlannerSetup> LoadPlannerConfig(Env& env, const std::string& path) {
  absl::StatusOr<std::string> text = env.ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("planner config: ", text.status().message()));
  }
  PlannerSetup setup;
  TANDEM_ASSIGN_OR_RETURN(setup.config, ParsePlannerConfig(*text, path));
  if (setup.config.mode == PlannerMode::kThroughput) {
    std::filesystem::path profile(setup.config.profile_path);
    if (profile.is_relative()) profile = std::filesystem::path(path).parent_path() / profile;
    absl::StatusOr<LatencyProfile> loaded = ReadLatencyProfile(env, profile.string());
    if (!loaded.ok()) {
      return Annotate(loaded.status(),
                      absl::StrCat(path, ": 'profile' (needed in throughput mode)"));
    }
    absl::StatusOr<LatencyModel> model = LatencyModel::Create(*loaded);
    if (!model.ok()) return Annotate(model.status(), profile.string());
    setup.model = std::move(*model);
  }
  return setup;
}

bool RatioHolds(int prefill, int decode, const ReplicaBounds& bounds) {
  const double tolerance = 1e-9;
  return prefill + tolerance >= bounds.min_ratio * decode &&
         prefill <= bounds.max_ratio * decode + tolerance;
}

int64_t Gpus(int prefill, int decode, const ReplicaBounds& bounds) {
  return static_cast<int64_t>(prefill) * bounds.prefill.gpus_per_instance +
         static_cast<int64_t>(decode) * bounds.decode.gpus_per_instance;
}

}  // namespace tandem::planner
