#include "sim/scenario.h"

#include <cmath>
#include <filesystem>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/status.h"
#include "planner/config.h"
#include "yaml-cpp/yaml.h"

namespace tandem::sim {
namespace {

// yaml-cpp access that never throws past this file, with "FILE:LINE: field: message" errors.
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  absl::Status Error(const YAML::Node& node, absl::string_view field,
                     absl::string_view message) const {
    std::string where = source_;
    if (node.IsDefined() && !node.Mark().is_null()) {
      where = absl::StrCat(source_, ":", node.Mark().line + 1);
    }
    return absl::InvalidArgumentError(absl::StrCat(where, ": ", field, ": ", message));
  }

  absl::Status Keys(const YAML::Node& map, absl::string_view field,
                    const std::vector<absl::string_view>& allowed) const {
    if (!map.IsMap()) return Error(map, field, "expected a mapping");
    for (const auto& entry : map) {
      const std::string key = entry.first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
        return Error(entry.first, Join(field, key),
                     absl::StrCat("unknown key; expected one of: ", absl::StrJoin(allowed, ", ")));
      }
    }
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Get(const YAML::Node& map, const std::string& key, absl::string_view field, T* out,
                   absl::string_view expected) const {
    YAML::Node node = map[key];
    if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
    if (!node.IsScalar()) return Error(node, Join(field, key), absl::StrCat("expected ", expected));
    try {
      *out = node.as<T>();
    } catch (const YAML::Exception&) {
      return Error(node, Join(field, key), absl::StrCat("'", node.Scalar(), "' is not ", expected));
    }
    return absl::OkStatus();
  }
  absl::Status Double(const YAML::Node& map, const std::string& key, absl::string_view field,
                      double* out, bool allow_negative = false) const {
    TANDEM_RETURN_IF_ERROR(Get(map, key, field, out, "a number"));
    if (!std::isfinite(*out) || (!allow_negative && *out < 0)) {
      return Error(map[key], Join(field, key),
                   absl::StrCat(*out, " is negative or not finite; expected a number >= 0"));
    }
    return absl::OkStatus();
  }
  absl::Status Int(const YAML::Node& map, const std::string& key, absl::string_view field,
                   int64_t* out, int64_t min_value) const {
    TANDEM_RETURN_IF_ERROR(Get(map, key, field, out, "an integer"));
    if (*out < min_value) {
      return Error(map[key], Join(field, key),
                   absl::StrCat(*out, " is out of range; expected an integer >= ", min_value));
    }
    return absl::OkStatus();
  }
  absl::Status Int(const YAML::Node& map, const std::string& key, absl::string_view field, int* out,
                   int64_t min_value) const {
    int64_t value = *out;
    TANDEM_RETURN_IF_ERROR(Int(map, key, field, &value, min_value));
    if (value > (1 << 30)) {
      return Error(map[key], Join(field, key), absl::StrCat(value, " is too large"));
    }
    *out = static_cast<int>(value);
    return absl::OkStatus();
  }
  absl::Status Bool(const YAML::Node& map, const std::string& key, absl::string_view field,
                    bool* out) const {
    return Get(map, key, field, out, "true or false");
  }
  absl::Status String(const YAML::Node& map, const std::string& key, absl::string_view field,
                      std::string* out) const {
    return Get(map, key, field, out, "a string");
  }

  static std::string Join(absl::string_view field, absl::string_view key) {
    return field.empty() ? std::string(key) : absl::StrCat(field, ".", key);
  }
  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

// A new mapping sharing `map`'s values (so their line marks survive) without `drop`.
YAML::Node Without(const YAML::Node& map, const std::vector<std::string>& drop) {
  YAML::Node out(YAML::NodeType::Map);
  for (const auto& entry : map) {
    const std::string key = entry.first.Scalar();
    if (std::find(drop.begin(), drop.end(), key) == drop.end()) out[key] = entry.second;
  }
  return out;
}

// Maps merge key by key; anything else in `overlay` replaces what `base` has. Values are shared,
// not copied, so errors still point at the line they were written on.
YAML::Node Merge(const YAML::Node& base, const YAML::Node& overlay) {
  if (!base.IsMap() || !overlay.IsMap()) return overlay;
  YAML::Node out = Without(base, {});
  for (const auto& entry : overlay) {
    const std::string key = entry.first.Scalar();
    YAML::Node existing = base[key];
    if (existing.IsDefined() && existing.IsMap() && entry.second.IsMap()) {
      out[key] = Merge(existing, entry.second);
    } else {
      out[key] = entry.second;
    }
  }
  return out;
}

struct LinkPreset {
  const char* name;
  double gigabytes_per_second;
  double latency_us;
};
// Per direction. NVLink: per GPU (H100/H200 NVLink 4, B200 NVLink 5); RDMA: one 200/400 Gb/s
// NIC per node; Ethernet: TCP over one NIC of that speed.
constexpr LinkPreset kLinkPresets[] = {
    {"nvlink", 450, 3}, {"nvlink5", 900, 3},  {"rdma-400g", 50, 10}, {"rdma-200g", 25, 10},
    {"400gbe", 50, 30}, {"100gbe", 12.5, 30}, {"25gbe", 3.125, 50},  {"10gbe", 1.25, 60},
};

std::string LinkPresetNames() {
  std::vector<std::string> names;
  for (const LinkPreset& preset : kLinkPresets) names.push_back(preset.name);
  return absl::StrJoin(names, ", ");
}

absl::Status ParseLink(const Reader& r, const YAML::Node& node, const std::string& field,
                       router::Link* link) {
  if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
  if (node.IsScalar()) {
    const std::string name = absl::AsciiStrToLower(node.Scalar());
    for (const LinkPreset& preset : kLinkPresets) {
      if (name == preset.name) {
        *link = {preset.gigabytes_per_second * 1e9, preset.latency_us * 1e-6};
        return absl::OkStatus();
      }
    }
    return r.Error(node, field,
                   absl::StrCat("unknown link preset '", node.Scalar(),
                                "'; expected one of: ", LinkPresetNames(),
                                ", or {gigabytes_per_second: N, latency_us: N}"));
  }
  TANDEM_RETURN_IF_ERROR(r.Keys(node, field, {"gigabytes_per_second", "latency_us"}));
  double gbps = link->bytes_per_second / 1e9, latency_us = link->latency_seconds * 1e6;
  TANDEM_RETURN_IF_ERROR(r.Double(node, "gigabytes_per_second", field, &gbps));
  TANDEM_RETURN_IF_ERROR(r.Double(node, "latency_us", field, &latency_us));
  if (!(gbps > 0)) return r.Error(node, field + ".gigabytes_per_second", "must be > 0");
  *link = {gbps * 1e9, latency_us * 1e-6};
  return absl::OkStatus();
}

absl::Status ParseCluster(const Reader& r, const YAML::Node& node, ClusterSpec* cluster) {
  if (!node.IsDefined()) return r.Error(node, "cluster", "missing; the cluster to simulate");
  TANDEM_RETURN_IF_ERROR(
      r.Keys(node, "cluster", {"nodes", "gpus_per_node", "nodes_per_domain", "links"}));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "nodes", "cluster", &cluster->nodes, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "gpus_per_node", "cluster", &cluster->gpus_per_node, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "nodes_per_domain", "cluster", &cluster->nodes_per_domain, 1));
  // Defaults: NVLink in a node, 400 Gb/s RDMA in a domain (rack), 100 GbE across.
  cluster->links.same_host = {450e9, 3e-6};
  cluster->links.same_rack = {50e9, 10e-6};
  cluster->links.cross_rack = {12.5e9, 30e-6};
  YAML::Node links = node["links"];
  if (links.IsDefined()) {
    TANDEM_RETURN_IF_ERROR(
        r.Keys(links, "cluster.links", {"same_node", "same_domain", "cross_domain"}));
    TANDEM_RETURN_IF_ERROR(
        ParseLink(r, links["same_node"], "cluster.links.same_node", &cluster->links.same_host));
    TANDEM_RETURN_IF_ERROR(
        ParseLink(r, links["same_domain"], "cluster.links.same_domain", &cluster->links.same_rack));
    TANDEM_RETURN_IF_ERROR(ParseLink(r, links["cross_domain"], "cluster.links.cross_domain",
                                     &cluster->links.cross_rack));
    absl::Status valid = router::ValidateLinkTable(cluster->links);
    if (!valid.ok()) return r.Error(links, "cluster.links", valid.message());
  }
  return absl::OkStatus();
}

absl::StatusOr<GpuPreset> ParseGpu(const Reader& r, const YAML::Node& node) {
  if (!node.IsDefined())
    return r.Error(node, "gpu",
                   "missing; a preset name (" + absl::StrJoin(GpuPresetNames(), ", ") + ")");
  if (node.IsScalar()) {
    absl::StatusOr<GpuPreset> gpu = FindGpuPreset(node.Scalar());
    if (!gpu.ok()) return r.Error(node, "gpu", gpu.status().message());
    return gpu;
  }
  TANDEM_RETURN_IF_ERROR(r.Keys(
      node, "gpu", {"preset", "compute_efficiency", "bandwidth_efficiency", "step_overhead_ms"}));
  std::string name;
  TANDEM_RETURN_IF_ERROR(r.String(node, "preset", "gpu", &name));
  absl::StatusOr<GpuPreset> gpu = FindGpuPreset(name);
  if (!gpu.ok())
    return r.Error(node["preset"].IsDefined() ? node["preset"] : node, "gpu.preset",
                   gpu.status().message());
  TANDEM_RETURN_IF_ERROR(r.Double(node, "compute_efficiency", "gpu", &gpu->compute_efficiency));
  TANDEM_RETURN_IF_ERROR(r.Double(node, "bandwidth_efficiency", "gpu", &gpu->bandwidth_efficiency));
  double overhead_ms = gpu->step_overhead_seconds * 1e3;
  TANDEM_RETURN_IF_ERROR(r.Double(node, "step_overhead_ms", "gpu", &overhead_ms));
  gpu->step_overhead_seconds = overhead_ms / 1e3;
  if (!(gpu->compute_efficiency > 0 && gpu->compute_efficiency <= 1) ||
      !(gpu->bandwidth_efficiency > 0 && gpu->bandwidth_efficiency <= 1)) {
    return r.Error(node, "gpu", "compute_efficiency and bandwidth_efficiency must be in (0, 1]");
  }
  return gpu;
}

absl::StatusOr<ModelShape> ParseModel(const Reader& r, const YAML::Node& node) {
  if (!node.IsDefined())
    return r.Error(node, "model",
                   "missing; a model shape name (" + absl::StrJoin(ModelShapeNames(), ", ") +
                       ") or dimensions");
  if (node.IsScalar()) {
    absl::StatusOr<ModelShape> shape = FindModelShape(node.Scalar());
    if (!shape.ok()) return r.Error(node, "model", shape.status().message());
    return shape;
  }
  TANDEM_RETURN_IF_ERROR(r.Keys(
      node, "model",
      {"name", "layers", "hidden", "heads", "kv_heads", "head_dim", "intermediate", "vocab"}));
  ModelShape shape;
  shape.name = "custom";
  TANDEM_RETURN_IF_ERROR(r.String(node, "name", "model", &shape.name));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "layers", "model", &shape.layers, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "hidden", "model", &shape.hidden, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "heads", "model", &shape.heads, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "kv_heads", "model", &shape.kv_heads, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "head_dim", "model", &shape.head_dim, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "intermediate", "model", &shape.intermediate, 1));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "vocab", "model", &shape.vocab, 1));
  absl::Status valid = ValidateModelShape(shape);
  if (!valid.ok()) return r.Error(node, "model", valid.message());
  return shape;
}

absl::StatusOr<InstanceRole> ParseRole(const Reader& r, const YAML::Node& node,
                                       const std::string& field) {
  std::string name = node.IsScalar() ? absl::AsciiStrToLower(node.Scalar()) : "";
  if (name == "prefill") return InstanceRole::kPrefill;
  if (name == "decode") return InstanceRole::kDecode;
  if (name == "aggregated" || name == "both") return InstanceRole::kBoth;
  return r.Error(
      node, field,
      absl::StrCat("'", name, "' is not a role; expected prefill, decode or aggregated"));
}

absl::Status ParseInstances(const Reader& r, const YAML::Node& node,
                            std::vector<InstanceGroup>* groups) {
  if (!node.IsDefined() || !node.IsSequence() || node.size() == 0) {
    return r.Error(node, "instances", "expected a list of {role, count, tensor_parallel, ...}");
  }
  groups->clear();
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string field = absl::StrCat("instances[", i, "]");
    const YAML::Node item = node[i];
    TANDEM_RETURN_IF_ERROR(
        r.Keys(item, field,
               {"role", "count", "tensor_parallel", "max_batch_tokens", "max_batch_sequences"}));
    InstanceGroup group;
    TANDEM_ASSIGN_OR_RETURN(group.role, ParseRole(r, item["role"], field + ".role"));
    for (const InstanceGroup& other : *groups) {
      if (other.role == group.role)
        return r.Error(item, field + ".role",
                       absl::StrCat("a second '", InstanceRoleName(group.role),
                                    "' group; one group per role"));
    }
    TANDEM_RETURN_IF_ERROR(r.Int(item, "count", field, &group.count, 0));
    TANDEM_RETURN_IF_ERROR(r.Int(item, "tensor_parallel", field, &group.tensor_parallel, 1));
    TANDEM_RETURN_IF_ERROR(r.Int(item, "max_batch_tokens", field, &group.max_batch_tokens, 1));
    TANDEM_RETURN_IF_ERROR(
        r.Int(item, "max_batch_sequences", field, &group.max_batch_sequences, 1));
    groups->push_back(group);
  }
  return absl::OkStatus();
}

absl::Status ParseRouting(const Reader& r, const YAML::Node& node, router::RoutingConfig* routing,
                          bool* topology_aware) {
  if (!node.IsDefined()) return absl::OkStatus();
  TANDEM_RETURN_IF_ERROR(
      r.Keys(node, "routing",
             {"block_size", "overlap_weight", "temperature", "disaggregation",
              "local_prefill_max_uncached_tokens", "prefill_queue_limit", "prefill_queue_weight",
              "forecast_output_tokens", "topology_aware"}));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "block_size", "routing", &routing->block_size, 1));
  TANDEM_RETURN_IF_ERROR(r.Double(node, "overlap_weight", "routing", &routing->overlap_weight));
  TANDEM_RETURN_IF_ERROR(r.Double(node, "temperature", "routing", &routing->temperature));
  TANDEM_RETURN_IF_ERROR(r.Bool(node, "disaggregation", "routing", &routing->disaggregation));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "local_prefill_max_uncached_tokens", "routing",
                               &routing->local_prefill_max_uncached_tokens, 0));
  TANDEM_RETURN_IF_ERROR(
      r.Int(node, "prefill_queue_limit", "routing", &routing->prefill_queue_limit, 1));
  TANDEM_RETURN_IF_ERROR(
      r.Double(node, "prefill_queue_weight", "routing", &routing->prefill_queue_weight));
  TANDEM_RETURN_IF_ERROR(
      r.Int(node, "forecast_output_tokens", "routing", &routing->forecast_output_tokens, 0));
  TANDEM_RETURN_IF_ERROR(r.Bool(node, "topology_aware", "routing", topology_aware));
  return absl::OkStatus();
}

// A relative path as the working directory sees it, else next to the scenario.
std::string Resolve(Env& env, const std::string& path, const std::string& scenario_path) {
  std::filesystem::path p(path);
  if (p.is_absolute() || env.FileExists(path)) return path;
  std::filesystem::path beside = std::filesystem::path(scenario_path).parent_path() / p;
  if (env.FileExists(beside.string())) return beside.string();
  return path;
}

absl::Status ParseWorkload(Env& env, const Reader& r, const YAML::Node& node,
                           const std::string& path, SimConfig* config) {
  if (!node.IsDefined())
    return r.Error(node, "workload", "missing; arrivals and lengths (or a trace)");
  TANDEM_RETURN_IF_ERROR(
      r.Keys(node, "workload",
             {"rate", "burstiness", "rate_curve", "input", "output", "requests", "duration_s",
              "prefix_groups", "prefix_tokens", "trace", "trace_time_scale"}));
  bench::WorkloadSpec& w = config->workload;
  TANDEM_RETURN_IF_ERROR(
      r.Double(node, "rate", "workload", &w.arrivals.rate, /*allow_negative=*/true));
  if (!(w.arrivals.rate >= 0)) {
    return r.Error(
        node["rate"], "workload.rate",
        absl::StrCat(w.arrivals.rate, " is negative; expected requests per second >= 0"));
  }
  TANDEM_RETURN_IF_ERROR(r.Double(node, "burstiness", "workload", &w.arrivals.burstiness));
  if (!(w.arrivals.burstiness > 0))
    return r.Error(node["burstiness"], "workload.burstiness",
                   "must be > 0 (1 = Poisson, < 1 burstier)");
  std::string text;
  TANDEM_RETURN_IF_ERROR(r.String(node, "rate_curve", "workload", &text));
  if (!text.empty()) {
    absl::StatusOr<bench::RateCurve> curve = bench::ParseRateCurve(text);
    if (!curve.ok())
      return r.Error(node["rate_curve"], "workload.rate_curve", curve.status().message());
    w.arrivals.curve = *curve;
  }
  for (const char* key : {"input", "output"}) {
    text.clear();
    TANDEM_RETURN_IF_ERROR(r.String(node, key, "workload", &text));
    if (text.empty()) continue;
    absl::StatusOr<bench::LengthSpec> spec = bench::ParseLengthSpec(text);
    if (!spec.ok())
      return r.Error(node[key], absl::StrCat("workload.", key), spec.status().message());
    (absl::string_view(key) == "input" ? w.input : w.output) = *spec;
  }
  int64_t requests = static_cast<int64_t>(w.num_requests);
  TANDEM_RETURN_IF_ERROR(r.Int(node, "requests", "workload", &requests, 0));
  w.num_requests = static_cast<uint64_t>(requests);
  TANDEM_RETURN_IF_ERROR(r.Double(node, "duration_s", "workload", &w.duration_s));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "prefix_groups", "workload", &w.prefix_groups, 0));
  TANDEM_RETURN_IF_ERROR(r.Int(node, "prefix_tokens", "workload", &w.prefix_tokens, 0));
  TANDEM_RETURN_IF_ERROR(r.Double(node, "trace_time_scale", "workload", &w.trace_time_scale));
  std::string trace;
  TANDEM_RETURN_IF_ERROR(r.String(node, "trace", "workload", &trace));
  if (!trace.empty()) {
    std::string resolved = Resolve(env, trace, path);
    if (!env.FileExists(resolved)) {
      return r.Error(node["trace"], "workload.trace",
                     absl::StrCat("file '", trace,
                                  "' not found (relative paths are resolved against the working "
                                  "directory, then the scenario's folder)"));
    }
    absl::StatusOr<std::string> contents = env.ReadFile(resolved);
    if (!contents.ok())
      return r.Error(node["trace"], "workload.trace", contents.status().message());
    absl::StatusOr<std::vector<bench::RequestSpec>> requests_in =
        bench::ParseTrace(*contents, trace, w.trace_time_scale);
    if (!requests_in.ok())
      return r.Error(node["trace"], "workload.trace", requests_in.status().message());
    if (requests_in->empty())
      return r.Error(node["trace"], "workload.trace",
                     absl::StrCat("'", trace, "' holds no requests"));
    config->trace = std::move(*requests_in);
    w.trace_path = trace;
    if (!node["requests"].IsDefined()) w.num_requests = 0;
  }
  absl::Status valid = bench::ValidateWorkload(w);
  if (!valid.ok()) return r.Error(node, "workload", valid.message());
  return absl::OkStatus();
}

absl::Status ParseSloNode(const Reader& r, const YAML::Node& node, const std::string& field,
                          bench::Slo* slo) {
  TANDEM_RETURN_IF_ERROR(r.Keys(node, field, {"ttft_ms", "tpot_ms", "e2e_ms"}));
  double ttft = slo->ttft_s * 1e3, tpot = slo->tpot_s * 1e3, e2e = slo->e2e_s * 1e3;
  TANDEM_RETURN_IF_ERROR(r.Double(node, "ttft_ms", field, &ttft));
  TANDEM_RETURN_IF_ERROR(r.Double(node, "tpot_ms", field, &tpot));
  TANDEM_RETURN_IF_ERROR(r.Double(node, "e2e_ms", field, &e2e));
  *slo = {ttft / 1e3, tpot / 1e3, e2e / 1e3};
  return absl::OkStatus();
}

absl::Status ParsePlacement(const Reader& r, const YAML::Node& node,
                            const std::vector<InstanceGroup>& groups, PlacementSpec* spec) {
  TANDEM_RETURN_IF_ERROR(r.Keys(node, "placement",
                                {"policy", "fit", "pods_per_instance", "background_fraction",
                                 "background_pod_gpus", "competing_deployments", "min_instances"}));
  std::string policy = "gang", fit = "best-fit";
  TANDEM_RETURN_IF_ERROR(r.String(node, "policy", "placement", &policy));
  if (policy == "gang") {
    spec->policy = PlacementPolicy::kGang;
  } else if (policy == "pod-by-pod") {
    spec->policy = PlacementPolicy::kPodByPod;
  } else {
    return r.Error(node["policy"], "placement.policy",
                   absl::StrCat("'", policy, "'; expected gang or pod-by-pod"));
  }
  TANDEM_RETURN_IF_ERROR(r.String(node, "fit", "placement", &fit));
  if (fit == "best-fit") {
    spec->fit = sched::FitPolicy::kBestFit;
  } else if (fit == "spread") {
    spec->fit = sched::FitPolicy::kSpread;
  } else {
    return r.Error(node["fit"], "placement.fit",
                   absl::StrCat("'", fit, "'; expected best-fit or spread"));
  }
  TANDEM_RETURN_IF_ERROR(
      r.Int(node, "pods_per_instance", "placement", &spec->pods_per_instance, 1));
  TANDEM_RETURN_IF_ERROR(
      r.Double(node, "background_fraction", "placement", &spec->background_fraction));
  if (spec->background_fraction >= 1)
    return r.Error(node["background_fraction"], "placement.background_fraction", "must be < 1");
  TANDEM_RETURN_IF_ERROR(
      r.Int(node, "competing_deployments", "placement", &spec->competing_deployments, 0));
  YAML::Node sizes = node["background_pod_gpus"];
  if (sizes.IsDefined()) {
    if (!sizes.IsSequence() || sizes.size() == 0)
      return r.Error(sizes, "placement.background_pod_gpus", "expected a list of GPU counts");
    spec->background_pod_gpus.clear();
    for (const auto& s : sizes) {
      int value = 0;
      try {
        value = s.as<int>();
      } catch (const YAML::Exception&) {
        return r.Error(s, "placement.background_pod_gpus", "expected integers");
      }
      spec->background_pod_gpus.push_back(value);
    }
  }
  YAML::Node mins = node["min_instances"];
  if (mins.IsDefined()) {
    if (!mins.IsMap())
      return r.Error(mins, "placement.min_instances",
                     "expected {prefill: N, decode: N, aggregated: N}");
    spec->min_instances.clear();
    for (const InstanceGroup& g : groups) spec->min_instances.push_back(g.count);
    for (const auto& entry : mins) {
      TANDEM_ASSIGN_OR_RETURN(InstanceRole role,
                              ParseRole(r, entry.first, "placement.min_instances"));
      bool found = false;
      for (size_t g = 0; g < groups.size(); ++g) {
        if (groups[g].role != role) continue;
        int value = 0;
        TANDEM_RETURN_IF_ERROR(
            r.Int(mins, entry.first.Scalar(), "placement.min_instances", &value, 0));
        spec->min_instances[g] = value;
        found = true;
      }
      if (!found)
        return r.Error(entry.first, "placement.min_instances",
                       "names a role with no instance group");
    }
  }
  return absl::OkStatus();
}

absl::Status ParsePlanner(const Reader& r, const YAML::Node& node, SimConfig* config,
                          const std::string& model_name) {
  bool prefill = false, decode = false;
  for (const InstanceGroup& g : config->groups) {
    prefill = prefill || g.role == InstanceRole::kPrefill;
    decode = decode || g.role == InstanceRole::kDecode;
  }
  if (!prefill || !decode) {
    return r.Error(node, "planner",
                   "it sizes the prefill and decode roles; declare both under instances");
  }
  YAML::Node copy = YAML::Clone(node);
  PlannerSetup setup;
  if (copy["pod_start_delay_s"].IsDefined()) {
    TANDEM_RETURN_IF_ERROR(
        r.Double(node, "pod_start_delay_s", "planner", &setup.pod_start_delay_s));
    copy.remove("pod_start_delay_s");
  }
  std::string mode =
      copy["mode"].IsDefined() && copy["mode"].IsScalar() ? copy["mode"].Scalar() : "throughput";
  // The planner plans with the simulated instances' own latency, as if they had been profiled.
  if (mode == "throughput") copy["profile"] = "(simulated instances)";
  YAML::Emitter emitter;
  emitter << copy;
  absl::StatusOr<planner::PlannerConfig> parsed =
      planner::ParsePlannerConfig(emitter.c_str(), absl::StrCat(r.source(), ": planner section"));
  if (!parsed.ok()) return r.Error(node, "planner", parsed.status().message());
  setup.config = *parsed;
  for (const InstanceGroup& g : config->groups) {
    if (g.role == InstanceRole::kPrefill)
      setup.config.bounds.prefill.gpus_per_instance = g.tensor_parallel;
    if (g.role == InstanceRole::kDecode)
      setup.config.bounds.decode.gpus_per_instance = g.tensor_parallel;
  }
  if (setup.config.mode == planner::PlannerMode::kThroughput) {
    absl::StatusOr<LatencyModel> model =
        LatencyModel::Create(SynthesizeProfile(*config->cost, model_name));
    if (!model.ok()) return r.Error(node, "planner", model.status().message());
    setup.model = *model;
  }
  absl::Status valid = planner::ValidatePlannerConfig(setup.config);
  if (!valid.ok()) return r.Error(node, "planner", valid.message());
  config->planner = std::move(setup);
  return absl::OkStatus();
}

absl::StatusOr<Variant> ParseVariant(Env& env, const Reader& r, const YAML::Node& root,
                                     const std::string& path, std::string name) {
  Variant v;
  v.name = std::move(name);
  SimConfig& c = v.config;
  int64_t seed = 1;
  TANDEM_RETURN_IF_ERROR(r.Int(root, "seed", "", &seed, 0));
  c.seed = static_cast<uint64_t>(seed);
  TANDEM_RETURN_IF_ERROR(ParseCluster(r, root["cluster"], &c.cluster));
  TANDEM_RETURN_IF_ERROR(ParseInstances(r, root["instances"], &c.groups));
  int max_tp = 1;
  for (const InstanceGroup& g : c.groups) max_tp = std::max(max_tp, g.tensor_parallel);
  ModelShape shape;
  if (root["profile"].IsDefined()) {
    // A measured profile: it is the performance model.
    const YAML::Node p = root["profile"];
    std::string file;
    int64_t capacity = 1 << 20;
    double kv_bytes_per_element = 2;
    if (p.IsScalar()) {
      file = p.Scalar();
    } else {
      TANDEM_RETURN_IF_ERROR(
          r.Keys(p, "profile", {"path", "kv_capacity_tokens", "kv_bytes_per_element"}));
      TANDEM_RETURN_IF_ERROR(r.String(p, "path", "profile", &file));
      TANDEM_RETURN_IF_ERROR(r.Int(p, "kv_capacity_tokens", "profile", &capacity, 1));
      TANDEM_RETURN_IF_ERROR(r.Double(p, "kv_bytes_per_element", "profile", &kv_bytes_per_element));
    }
    if (file.empty())
      return r.Error(p, "profile", "expected the path of a `tandem profile` JSON file");
    std::filesystem::path resolved(file);
    if (resolved.is_relative()) resolved = std::filesystem::path(path).parent_path() / resolved;
    absl::StatusOr<LatencyProfile> profile = ReadLatencyProfile(env, resolved.string());
    if (!profile.ok()) return r.Error(p, "profile", profile.status().message());
    absl::StatusOr<LatencyModel> model = LatencyModel::Create(*profile);
    if (!model.ok()) return r.Error(p, "profile", model.status().message());
    const LatencyProfile::Model& m = profile->model;
    shape.name = m.name;
    shape.layers = std::max<int64_t>(1, m.layers);
    double kv_bytes = 2.0 * std::max<int64_t>(1, m.layers) * std::max<int64_t>(1, m.kv_heads) *
                      std::max<int64_t>(1, m.head_dim) * kv_bytes_per_element;
    c.cost = std::make_shared<ProfileModel>(*model, kv_bytes, capacity);
  } else {
    TANDEM_ASSIGN_OR_RETURN(GpuPreset gpu, ParseGpu(r, root["gpu"]));
    TANDEM_ASSIGN_OR_RETURN(shape, ParseModel(r, root["model"]));
    RooflineOptions options;
    options.tensor_parallel = 1;
    std::string precision = "bf16";
    TANDEM_RETURN_IF_ERROR(r.String(root, "precision", "", &precision));
    if (precision != "bf16" && precision != "fp8")
      return r.Error(root["precision"], "precision",
                     absl::StrCat("'", precision, "'; expected bf16 or fp8"));
    options.fp8 = precision == "fp8";
    if (options.fp8 && gpu.fp8_flops <= 0)
      return r.Error(root["precision"], "precision",
                     absl::StrCat("GPU '", gpu.name, "' has no FP8 support"));
    TANDEM_RETURN_IF_ERROR(r.Double(root, "memory_utilization", "", &options.memory_utilization));
    if (!(options.memory_utilization > 0 && options.memory_utilization <= 1))
      return r.Error(root["memory_utilization"], "memory_utilization", "must be in (0, 1]");
    // One model per TP size would be exact; groups share a TP size in practice, so the
    // largest is used and a mix is refused.
    for (const InstanceGroup& g : c.groups) {
      if (g.tensor_parallel != max_tp) {
        return r.Error(
            root["instances"], "instances",
            "all groups must use the same tensor_parallel (one performance model per scenario)");
      }
    }
    options.tensor_parallel = max_tp;
    auto model = std::make_shared<RooflineModel>(gpu, shape, options);
    if (model->KvCapacityTokens() <= 0) {
      return r.Error(root["instances"], "instances.tensor_parallel",
                     absl::StrCat(shape.name, " weights do not fit ", max_tp, " x ", gpu.name,
                                  " at memory_utilization ", options.memory_utilization,
                                  "; raise tensor_parallel"));
    }
    c.cost = model;
  }
  c.model_layers = static_cast<int>(std::max<int64_t>(1, shape.layers));
  TANDEM_RETURN_IF_ERROR(ParseRouting(r, root["routing"], &c.routing, &c.topology_aware_routing));
  TANDEM_RETURN_IF_ERROR(ParseWorkload(env, r, root["workload"], path, &c));
  if (root["slo"].IsDefined()) TANDEM_RETURN_IF_ERROR(ParseSloNode(r, root["slo"], "slo", &c.slo));
  YAML::Node failures = root["failures"];
  if (failures.IsDefined()) {
    if (!failures.IsSequence())
      return r.Error(failures, "failures", "expected a list of {node, time_s}");
    for (size_t i = 0; i < failures.size(); ++i) {
      const std::string field = absl::StrCat("failures[", i, "]");
      TANDEM_RETURN_IF_ERROR(r.Keys(failures[i], field, {"node", "time_s"}));
      NodeFailure f;
      f.node = -1;
      TANDEM_RETURN_IF_ERROR(r.Int(failures[i], "node", field, &f.node, 0));
      TANDEM_RETURN_IF_ERROR(r.Double(failures[i], "time_s", field, &f.time_s));
      if (f.node >= c.cluster.nodes)
        return r.Error(
            failures[i]["node"], field + ".node",
            absl::StrCat(f.node, " is outside the cluster (nodes 0..", c.cluster.nodes - 1, ")"));
      c.failures.push_back(f);
    }
  }
  YAML::Node serving = root["serving"];
  if (serving.IsDefined()) {
    TANDEM_RETURN_IF_ERROR(r.Keys(
        serving, "serving", {"first_token_overhead_ms", "token_overhead_ms", "remote_join_ms"}));
    double first_token_ms = 0, token_ms = 0, join_ms = 0;
    TANDEM_RETURN_IF_ERROR(
        r.Double(serving, "first_token_overhead_ms", "serving", &first_token_ms));
    TANDEM_RETURN_IF_ERROR(r.Double(serving, "token_overhead_ms", "serving", &token_ms));
    c.overheads.first_token_seconds = first_token_ms / 1e3;
    c.overheads.per_token_seconds = token_ms / 1e3;
    TANDEM_RETURN_IF_ERROR(r.Double(serving, "remote_join_ms", "serving", &join_ms));
    c.overheads.remote_join_seconds = join_ms / 1e3;
  }
  TANDEM_RETURN_IF_ERROR(r.Int(root, "prefix_cache_groups", "", &c.prefix_cache_groups, 0));
  TANDEM_RETURN_IF_ERROR(r.Double(root, "timeline_interval_s", "", &c.timeline_interval_s));
  if (!(c.timeline_interval_s > 0))
    return r.Error(root["timeline_interval_s"], "timeline_interval_s", "must be > 0");
  int64_t total = 0;
  for (const InstanceGroup& g : c.groups) total += int64_t{g.count} * g.tensor_parallel;
  v.gpus = static_cast<int>(total);
  if (root["placement"].IsDefined()) {
    PlacementSpec spec;
    TANDEM_RETURN_IF_ERROR(ParsePlacement(r, root["placement"], c.groups, &spec));
    if (root["planner"].IsDefined())
      return r.Error(root["placement"], "placement",
                     "placement and planner together are not supported; use one");
    v.placement = spec;
  } else {
    for (const InstanceGroup& g : c.groups) {
      if (g.tensor_parallel > c.cluster.gpus_per_node)
        return r.Error(root["instances"], "instances.tensor_parallel",
                       absl::StrCat(g.tensor_parallel, " GPUs do not fit a node of ",
                                    c.cluster.gpus_per_node));
    }
    if (total > int64_t{c.cluster.nodes} * c.cluster.gpus_per_node) {
      return r.Error(root["instances"], "instances",
                     absl::StrCat("need ", total, " GPUs; the cluster has ",
                                  int64_t{c.cluster.nodes} * c.cluster.gpus_per_node,
                                  " (impossible placement)"));
    }
  }
  if (root["planner"].IsDefined())
    TANDEM_RETURN_IF_ERROR(ParsePlanner(r, root["planner"], &c, shape.name));
  absl::Status valid = ValidateSimConfig(c);
  if (!valid.ok())
    return r.Error(root, v.name == "base" ? "scenario" : absl::StrCat("variants.", v.name),
                   valid.message());
  return v;
}

}  // namespace

absl::StatusOr<Scenario> ParseScenario(Env& env, std::string_view yaml, const std::string& path) {
  Reader r(path);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::ParserException& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
  }
  if (!root.IsMap())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a mapping of scenario fields"));
  try {
    TANDEM_RETURN_IF_ERROR(r.Keys(root, "",
                                  {"name",
                                   "description",
                                   "seed",
                                   "cluster",
                                   "gpu",
                                   "model",
                                   "profile",
                                   "precision",
                                   "memory_utilization",
                                   "instances",
                                   "routing",
                                   "workload",
                                   "slo",
                                   "failures",
                                   "prefix_cache_groups",
                                   "serving",
                                   "timeline_interval_s",
                                   "planner",
                                   "placement",
                                   "goodput",
                                   "slo_grid",
                                   "variants"}));
    Scenario scenario;
    scenario.source = path;
    scenario.name = std::filesystem::path(path).stem().string();
    TANDEM_RETURN_IF_ERROR(r.String(root, "name", "", &scenario.name));
    TANDEM_RETURN_IF_ERROR(r.String(root, "description", "", &scenario.description));
    YAML::Node goodput = root["goodput"];
    if (goodput.IsDefined()) {
      TANDEM_RETURN_IF_ERROR(
          r.Keys(goodput, "goodput", {"low", "high", "iterations", "attainment"}));
      GoodputSearch search;
      TANDEM_RETURN_IF_ERROR(r.Double(goodput, "low", "goodput", &search.low));
      TANDEM_RETURN_IF_ERROR(r.Double(goodput, "high", "goodput", &search.high));
      TANDEM_RETURN_IF_ERROR(r.Int(goodput, "iterations", "goodput", &search.iterations, 1));
      TANDEM_RETURN_IF_ERROR(r.Double(goodput, "attainment", "goodput", &search.attainment));
      if (!(search.low > 0) || !(search.high > search.low))
        return r.Error(goodput, "goodput", "need 0 < low < high (requests per second)");
      if (!(search.attainment > 0 && search.attainment <= 1))
        return r.Error(goodput, "goodput.attainment", "must be in (0, 1]");
      scenario.goodput = search;
    }
    YAML::Node grid = root["slo_grid"];
    if (grid.IsDefined()) {
      TANDEM_RETURN_IF_ERROR(r.Keys(grid, "slo_grid", {"ttft_ms", "tpot_ms"}));
      if (!scenario.goodput.has_value())
        return r.Error(grid, "slo_grid", "needs a goodput section (the search bounds)");
      std::vector<double> lists[2];
      const char* keys[2] = {"ttft_ms", "tpot_ms"};
      for (int k = 0; k < 2; ++k) {
        YAML::Node list = grid[keys[k]];
        if (!list.IsDefined() || !list.IsSequence() || list.size() == 0)
          return r.Error(list.IsDefined() ? list : grid, absl::StrCat("slo_grid.", keys[k]),
                         "expected a list of milliseconds");
        for (const auto& item : list) {
          double value = 0;
          try {
            value = item.as<double>();
          } catch (const YAML::Exception&) {
            return r.Error(item, absl::StrCat("slo_grid.", keys[k]),
                           "expected numbers (milliseconds)");
          }
          if (!(value > 0)) return r.Error(item, absl::StrCat("slo_grid.", keys[k]), "must be > 0");
          lists[k].push_back(value);
        }
      }
      for (double ttft : lists[0]) {
        for (double tpot : lists[1]) scenario.slo_grid.push_back({ttft / 1e3, tpot / 1e3, 0});
      }
    }
    YAML::Node base = Without(root, {"name", "description", "goodput", "slo_grid", "variants"});
    YAML::Node variants = root["variants"];
    if (!variants.IsDefined()) {
      TANDEM_ASSIGN_OR_RETURN(Variant v, ParseVariant(env, r, base, path, "base"));
      scenario.variants.push_back(std::move(v));
    } else {
      if (!variants.IsSequence() || variants.size() == 0)
        return r.Error(variants, "variants", "expected a list of {name, set: {overrides}}");
      for (size_t i = 0; i < variants.size(); ++i) {
        const std::string field = absl::StrCat("variants[", i, "]");
        TANDEM_RETURN_IF_ERROR(r.Keys(variants[i], field, {"name", "set"}));
        std::string name;
        TANDEM_RETURN_IF_ERROR(r.String(variants[i], "name", field, &name));
        if (name.empty())
          return r.Error(variants[i], field + ".name", "missing; every variant needs a name");
        for (const Variant& other : scenario.variants) {
          if (other.name == name)
            return r.Error(variants[i], field + ".name",
                           absl::StrCat("'", name, "' is used twice"));
        }
        YAML::Node set = variants[i]["set"];
        if (set.IsDefined() && !set.IsMap())
          return r.Error(set, field + ".set", "expected a mapping of scenario fields to override");
        if (set.IsDefined()) {
          for (const auto& entry : set) {
            const std::string key = entry.first.Scalar();
            if (key == "name" || key == "description" || key == "goodput" || key == "slo_grid" ||
                key == "variants") {
              return r.Error(entry.first, field + ".set." + key, "cannot be set per variant");
            }
          }
        }
        YAML::Node merged = set.IsDefined() ? Merge(base, set) : base;
        TANDEM_ASSIGN_OR_RETURN(Variant v, ParseVariant(env, r, merged, path, name));
        scenario.variants.push_back(std::move(v));
      }
    }
    return scenario;
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.mark.line + 1, ": ", e.msg));
  }
}

absl::StatusOr<Scenario> LoadScenario(Env& env, const std::string& path) {
  absl::StatusOr<std::string> text = env.ReadFile(path);
  if (!text.ok())
    return absl::Status(text.status().code(), absl::StrCat("scenario: ", text.status().message()));
  return ParseScenario(env, *text, path);
}

absl::StatusOr<ScenarioOutcome> RunScenario(const Scenario& scenario) {
  ScenarioOutcome outcome;
  outcome.name = scenario.name;
  outcome.description = scenario.description;
  outcome.goodput_search = scenario.goodput;
  if (!scenario.variants.empty()) outcome.slo = scenario.variants.front().config.slo;
  for (const Variant& variant : scenario.variants) {
    VariantOutcome out;
    out.name = variant.name;
    out.gpus = variant.gpus;
    SimConfig config = variant.config;
    if (variant.placement.has_value()) {
      TANDEM_ASSIGN_OR_RETURN(
          PlacementOutcome placed,
          PlaceInstances(config.cluster, config.groups, *variant.placement, config.seed));
      config.instance_nodes = placed.instance_nodes;
      out.placement = std::move(placed);
      out.gpus = 0;
      size_t next = 0;
      for (const InstanceGroup& g : config.groups) {
        for (int i = 0; i < g.count; ++i) {
          if (config.instance_nodes[next++] >= 0) out.gpus += g.tensor_parallel;
        }
      }
    }
    absl::StatusOr<SimResult> result = Simulate(config);
    if (!result.ok())
      return absl::Status(result.status().code(), absl::StrCat("variant '", variant.name,
                                                               "': ", result.status().message()));
    out.result = std::move(*result);
    if (scenario.goodput.has_value()) {
      TANDEM_ASSIGN_OR_RETURN(GoodputResult goodput, FindGoodput(config, *scenario.goodput));
      out.goodput = std::move(goodput);
      for (const bench::Slo& slo : scenario.slo_grid) {
        SimConfig c = config;
        c.slo = slo;
        TANDEM_ASSIGN_OR_RETURN(GoodputResult point, FindGoodput(c, *scenario.goodput));
        out.grid.push_back({slo, std::move(point)});
      }
    }
    outcome.variants.push_back(std::move(out));
  }
  return outcome;
}

}  // namespace tandem::sim
