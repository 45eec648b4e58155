#include "core/latency_profile.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "core/kv_type.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

using Json = nlohmann::json;

// Below this a time is treated as zero; keeps the model strictly positive for real work.
constexpr double kMinSeconds = 1e-9;

std::string JsonTypeName(const Json& value) { return value.type_name(); }

// Reads the keys of one JSON object, refusing unknown ones and checking types, with messages
// that name the full path of the field ("prefill[2].seconds").
class ObjectReader {
 public:
  ObjectReader(const Json& object, std::string path) : object_(object), path_(std::move(path)) {}

  absl::Status CheckObject() const {
    if (!object_.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Name(), " must be an object, got ", JsonTypeName(object_)));
    }
    return absl::OkStatus();
  }

  absl::Status String(absl::string_view key, bool required, std::string* out) {
    const Json* value = Find(key);
    if (value == nullptr) return Missing(key, required);
    if (!value->is_string()) return WrongType(key, "a string", *value);
    *out = value->get<std::string>();
    return absl::OkStatus();
  }

  absl::Status Integer(absl::string_view key, bool required, int64_t* out) {
    const Json* value = Find(key);
    if (value == nullptr) return Missing(key, required);
    if (!value->is_number_integer()) return WrongType(key, "an integer", *value);
    *out = value->get<int64_t>();
    return absl::OkStatus();
  }

  absl::Status Number(absl::string_view key, bool required, double* out) {
    const Json* value = Find(key);
    if (value == nullptr) return Missing(key, required);
    if (!value->is_number()) return WrongType(key, "a number", *value);
    *out = value->get<double>();
    return absl::OkStatus();
  }

  // Returns nullptr (and OK) when an optional key is absent.
  absl::StatusOr<const Json*> Child(absl::string_view key, bool required, Json::value_t type) {
    const Json* value = Find(key);
    if (value == nullptr) {
      TANDEM_RETURN_IF_ERROR(Missing(key, required));
      return nullptr;
    }
    if (value->type() != type) {
      return WrongType(key, type == Json::value_t::array ? "an array" : "an object", *value);
    }
    return value;
  }

  // Call after reading every known key.
  absl::Status NoUnknownKeys() const {
    for (const auto& [key, value] : object_.items()) {
      if (seen_.count(key) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("unknown key ", Field(key), " (known: ", absl::StrJoin(seen_, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  std::string Field(absl::string_view key) const {
    return path_.empty() ? absl::StrCat("'", key, "'") : absl::StrCat("'", path_, ".", key, "'");
  }

 private:
  std::string Name() const { return path_.empty() ? "the profile" : absl::StrCat("'", path_, "'"); }
  const Json* Find(absl::string_view key) {
    seen_.insert(std::string(key));
    auto it = object_.find(std::string(key));
    return it == object_.end() ? nullptr : &*it;
  }
  absl::Status Missing(absl::string_view key, bool required) const {
    if (!required) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat("missing required key ", Field(key)));
  }
  absl::Status WrongType(absl::string_view key, absl::string_view expected,
                         const Json& value) const {
    return absl::InvalidArgumentError(
        absl::StrCat(Field(key), " must be ", expected, ", got ", JsonTypeName(value)));
  }

  const Json& object_;
  std::string path_;
  std::set<std::string> seen_;
};

absl::Status Positive(absl::string_view field, double value) {
  if (!std::isfinite(value) || value <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " must be a finite number > 0, got ", value));
  }
  return absl::OkStatus();
}

// Least-squares slope and intercept of y over x; slope 0 when x does not vary.
std::pair<double, double> FitLine(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n == 0) return {0, 0};
  double mean_x = 0, mean_y = 0;
  for (size_t i = 0; i < n; ++i) {
    mean_x += x[i];
    mean_y += y[i];
  }
  mean_x /= n;
  mean_y /= n;
  double sxx = 0, sxy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxx += (x[i] - mean_x) * (x[i] - mean_x);
    sxy += (x[i] - mean_x) * (y[i] - mean_y);
  }
  double slope = sxx > 0 ? sxy / sxx : 0;
  return {slope, mean_y - slope * mean_x};
}

}  // namespace

absl::Status ValidateLatencyProfile(const LatencyProfile& profile) {
  if (profile.version != kLatencyProfileVersion) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'version' is ", profile.version, ", this build reads version ", kLatencyProfileVersion));
  }
  if (profile.model.name.empty()) {
    return absl::InvalidArgumentError("'model.name' must name the profiled model");
  }
  const std::pair<absl::string_view, int64_t> shape[] = {
      {"layers", profile.model.layers},
      {"hidden_size", profile.model.hidden_size},
      {"attention_heads", profile.model.attention_heads},
      {"kv_heads", profile.model.kv_heads},
      {"head_dim", profile.model.head_dim},
      {"vocab_size", profile.model.vocab_size},
      {"parameters", profile.model.parameters}};
  for (const auto& [name, value] : shape) {
    if (value < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("'model.", name, "' must be >= 0 (0 = unknown), got ", value));
    }
  }
  if (profile.hardware.threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'hardware.threads' must be >= 0, got ", profile.hardware.threads));
  }
  if (profile.hardware.tensor_parallel < 1) {
    return absl::InvalidArgumentError(absl::StrCat("'hardware.tensor_parallel' must be >= 1, got ",
                                                   profile.hardware.tensor_parallel));
  }
  std::set<int64_t> uncached_sizes;
  for (size_t i = 0; i < profile.prefill.size(); ++i) {
    const LatencyProfile::PrefillPoint& point = profile.prefill[i];
    std::string at = absl::StrCat("'prefill[", i, "]");
    if (point.uncached_tokens < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".uncached_tokens' must be >= 1, got ", point.uncached_tokens));
    }
    if (point.cached_tokens < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".cached_tokens' must be >= 0, got ", point.cached_tokens));
    }
    TANDEM_RETURN_IF_ERROR(Positive(absl::StrCat(at, ".seconds'"), point.seconds));
    if (point.cached_tokens == 0) uncached_sizes.insert(point.uncached_tokens);
  }
  if (uncached_sizes.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("'prefill' needs points at two or more distinct uncached_tokens with "
                     "cached_tokens 0 (has ",
                     uncached_sizes.size(), ")"));
  }
  std::set<int64_t> batch_sizes;
  for (size_t i = 0; i < profile.decode.size(); ++i) {
    const LatencyProfile::DecodePoint& point = profile.decode[i];
    std::string at = absl::StrCat("'decode[", i, "]");
    if (point.batch_size < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".batch_size' must be >= 1, got ", point.batch_size));
    }
    if (point.context_tokens < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".context_tokens' must be >= 0, got ", point.context_tokens));
    }
    TANDEM_RETURN_IF_ERROR(Positive(absl::StrCat(at, ".step_seconds'"), point.step_seconds));
    batch_sizes.insert(point.batch_size);
  }
  if (batch_sizes.size() < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("'decode' needs points at two or more distinct batch sizes (has ",
                     batch_sizes.size(), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<LatencyProfile> ParseLatencyProfile(std::string_view json,
                                                   std::string_view source_text) {
  const absl::string_view source(source_text.data(), source_text.size());
  auto fail = [&](const absl::Status& status) {
    return absl::InvalidArgumentError(
        absl::StrCat("latency profile '", source, "': ", status.message()));
  };
  Json root;
  try {
    root = Json::parse(json);
  } catch (const Json::exception& e) {  // parse_error, or out_of_range for a huge number
    return absl::InvalidArgumentError(
        absl::StrCat("latency profile '", source, "': not valid JSON: ", e.what()));
  }
  LatencyProfile profile;
  auto parse = [&]() -> absl::Status {
    ObjectReader top(root, "");
    TANDEM_RETURN_IF_ERROR(top.CheckObject());
    std::string format;
    TANDEM_RETURN_IF_ERROR(top.String("format", true, &format));
    if (format != kLatencyProfileFormat) {
      return absl::InvalidArgumentError(absl::StrCat("'format' is '", format, "', expected '",
                                                     std::string(kLatencyProfileFormat), "'"));
    }
    int64_t version = 0;
    TANDEM_RETURN_IF_ERROR(top.Integer("version", true, &version));
    if (version != kLatencyProfileVersion) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'version' is ", version, ", this build reads version ", kLatencyProfileVersion));
    }
    profile.version = static_cast<int>(version);
    TANDEM_ASSIGN_OR_RETURN(const Json* model, top.Child("model", true, Json::value_t::object));
    {
      ObjectReader reader(*model, "model");
      LatencyProfile::Model& m = profile.model;
      TANDEM_RETURN_IF_ERROR(reader.String("name", true, &m.name));
      TANDEM_RETURN_IF_ERROR(reader.Integer("layers", false, &m.layers));
      TANDEM_RETURN_IF_ERROR(reader.Integer("hidden_size", false, &m.hidden_size));
      TANDEM_RETURN_IF_ERROR(reader.Integer("attention_heads", false, &m.attention_heads));
      TANDEM_RETURN_IF_ERROR(reader.Integer("kv_heads", false, &m.kv_heads));
      TANDEM_RETURN_IF_ERROR(reader.Integer("head_dim", false, &m.head_dim));
      TANDEM_RETURN_IF_ERROR(reader.Integer("vocab_size", false, &m.vocab_size));
      TANDEM_RETURN_IF_ERROR(reader.Integer("parameters", false, &m.parameters));
      TANDEM_RETURN_IF_ERROR(reader.NoUnknownKeys());
    }
    TANDEM_RETURN_IF_ERROR(top.String("dtype", true, &profile.dtype));
    TANDEM_RETURN_IF_ERROR(top.String("kv_dtype", false, &profile.kv_dtype));
    if (!profile.kv_dtype.empty() && !ParseKvType(profile.kv_dtype).has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("'kv_dtype' must be \"f32\" or \"bf16\", got \"", profile.kv_dtype, "\""));
    }
    TANDEM_ASSIGN_OR_RETURN(const Json* hardware,
                            top.Child("hardware", true, Json::value_t::object));
    {
      ObjectReader reader(*hardware, "hardware");
      LatencyProfile::Hardware& h = profile.hardware;
      TANDEM_RETURN_IF_ERROR(reader.String("description", true, &h.description));
      TANDEM_RETURN_IF_ERROR(reader.String("device", false, &h.device));
      TANDEM_RETURN_IF_ERROR(reader.Integer("threads", false, &h.threads));
      TANDEM_RETURN_IF_ERROR(reader.Integer("tensor_parallel", false, &h.tensor_parallel));
      TANDEM_RETURN_IF_ERROR(reader.NoUnknownKeys());
    }
    TANDEM_RETURN_IF_ERROR(top.String("measured_at", false, &profile.measured_at));
    TANDEM_ASSIGN_OR_RETURN(const Json* prefill, top.Child("prefill", true, Json::value_t::array));
    for (size_t i = 0; i < prefill->size(); ++i) {
      ObjectReader reader((*prefill)[i], absl::StrCat("prefill[", i, "]"));
      TANDEM_RETURN_IF_ERROR(reader.CheckObject());
      LatencyProfile::PrefillPoint point;
      TANDEM_RETURN_IF_ERROR(reader.Integer("uncached_tokens", true, &point.uncached_tokens));
      TANDEM_RETURN_IF_ERROR(reader.Integer("cached_tokens", false, &point.cached_tokens));
      TANDEM_RETURN_IF_ERROR(reader.Number("seconds", true, &point.seconds));
      TANDEM_RETURN_IF_ERROR(reader.NoUnknownKeys());
      profile.prefill.push_back(point);
    }
    TANDEM_ASSIGN_OR_RETURN(const Json* decode, top.Child("decode", true, Json::value_t::array));
    for (size_t i = 0; i < decode->size(); ++i) {
      ObjectReader reader((*decode)[i], absl::StrCat("decode[", i, "]"));
      TANDEM_RETURN_IF_ERROR(reader.CheckObject());
      LatencyProfile::DecodePoint point;
      TANDEM_RETURN_IF_ERROR(reader.Integer("batch_size", true, &point.batch_size));
      TANDEM_RETURN_IF_ERROR(reader.Integer("context_tokens", true, &point.context_tokens));
      TANDEM_RETURN_IF_ERROR(reader.Number("step_seconds", true, &point.step_seconds));
      TANDEM_RETURN_IF_ERROR(reader.NoUnknownKeys());
      profile.decode.push_back(point);
    }
    TANDEM_RETURN_IF_ERROR(top.NoUnknownKeys());
    return ValidateLatencyProfile(profile);
  };
  absl::Status status;
  try {
    status = parse();
  } catch (const Json::exception& e) {
    // Number conversions (e.g. an integer beyond int64) end up here.
    status = absl::InvalidArgumentError(e.what());
  }
  if (!status.ok()) return fail(status);
  return profile;
}

std::string SerializeLatencyProfile(const LatencyProfile& profile) {
  Json root = Json::object();
  root["format"] = kLatencyProfileFormat;
  root["version"] = profile.version;
  const LatencyProfile::Model& m = profile.model;
  root["model"] = {{"name", m.name},
                   {"layers", m.layers},
                   {"hidden_size", m.hidden_size},
                   {"attention_heads", m.attention_heads},
                   {"kv_heads", m.kv_heads},
                   {"head_dim", m.head_dim},
                   {"vocab_size", m.vocab_size},
                   {"parameters", m.parameters}};
  root["dtype"] = profile.dtype;
  if (!profile.kv_dtype.empty()) root["kv_dtype"] = profile.kv_dtype;
  const LatencyProfile::Hardware& h = profile.hardware;
  root["hardware"] = {{"description", h.description},
                      {"device", h.device},
                      {"threads", h.threads},
                      {"tensor_parallel", h.tensor_parallel}};
  root["measured_at"] = profile.measured_at;
  Json prefill = Json::array();
  for (const LatencyProfile::PrefillPoint& point : profile.prefill) {
    prefill.push_back({{"uncached_tokens", point.uncached_tokens},
                       {"cached_tokens", point.cached_tokens},
                       {"seconds", point.seconds}});
  }
  root["prefill"] = std::move(prefill);
  Json decode = Json::array();
  for (const LatencyProfile::DecodePoint& point : profile.decode) {
    decode.push_back({{"batch_size", point.batch_size},
                      {"context_tokens", point.context_tokens},
                      {"step_seconds", point.step_seconds}});
  }
  root["decode"] = std::move(decode);
  return root.dump(2) + "\n";
}

absl::StatusOr<LatencyProfile> ReadLatencyProfile(Env& env, const std::string& path) {
  absl::StatusOr<std::string> text = env.ReadFile(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("latency profile: ", text.status().message()));
  }
  return ParseLatencyProfile(*text, path);
}

absl::Status WriteLatencyProfile(Env& env, const std::string& path, const LatencyProfile& profile) {
  absl::Status valid = ValidateLatencyProfile(profile);
  if (!valid.ok()) return Annotate(valid, absl::StrCat("latency profile '", path, "'"));
  return env.WriteFile(path, SerializeLatencyProfile(profile));
}

double LatencyModel::Curve::At(double at) const {
  if (at <= x.front()) {
    if (x.front() <= 0) return y.front();
    return value_at_zero + (y.front() - value_at_zero) * std::max(at, 0.0) / x.front();
  }
  if (at >= x.back()) return y.back() + slope_after * (at - x.back());
  size_t hi = std::upper_bound(x.begin(), x.end(), at) - x.begin();
  size_t lo = hi - 1;
  double t = (at - x[lo]) / (x[hi] - x[lo]);
  return y[lo] + t * (y[hi] - y[lo]);
}

LatencyModel::Curve LatencyModel::MakeCurve(std::vector<std::pair<double, double>> points,
                                            double fallback_slope) {
  // Average repeated measurements at the same x.
  std::map<double, std::pair<double, int>> merged;
  for (const auto& [x, y] : points) {
    auto& [sum, count] = merged[x];
    sum += y;
    ++count;
  }
  std::vector<double> xs, ys, weights;
  for (const auto& [x, sum_count] : merged) {
    xs.push_back(x);
    ys.push_back(sum_count.first / sum_count.second);
    weights.push_back(sum_count.second);
  }
  // Pool adjacent violators: the closest non-decreasing sequence in least squares, so one noisy
  // point does not make a longer prompt look faster.
  std::vector<double> block_value, block_weight;
  std::vector<size_t> block_size;
  for (size_t i = 0; i < ys.size(); ++i) {
    block_value.push_back(ys[i]);
    block_weight.push_back(weights[i]);
    block_size.push_back(1);
    while (block_value.size() > 1 && block_value[block_value.size() - 2] > block_value.back()) {
      size_t last = block_value.size() - 1;
      double weight = block_weight[last - 1] + block_weight[last];
      block_value[last - 1] = (block_value[last - 1] * block_weight[last - 1] +
                               block_value[last] * block_weight[last]) /
                              weight;
      block_weight[last - 1] = weight;
      block_size[last - 1] += block_size[last];
      block_value.pop_back();
      block_weight.pop_back();
      block_size.pop_back();
    }
  }
  Curve curve;
  curve.x = xs;
  for (size_t b = 0; b < block_value.size(); ++b) {
    for (size_t k = 0; k < block_size[b]; ++k) curve.y.push_back(block_value[b]);
  }
  const size_t n = curve.x.size();
  if (n >= 2) {
    // Extrapolate with the slope of the upper half, where the growth rate of a super-linear cost
    // (attention) is best represented; start from the fit of the lower half towards zero.
    size_t half = std::max<size_t>(2, (n + 1) / 2);
    std::vector<double> upper_x(curve.x.end() - half, curve.x.end());
    std::vector<double> upper_y(curve.y.end() - half, curve.y.end());
    curve.slope_after = std::max(0.0, FitLine(upper_x, upper_y).first);
    std::vector<double> lower_x(curve.x.begin(), curve.x.begin() + half);
    std::vector<double> lower_y(curve.y.begin(), curve.y.begin() + half);
    curve.value_at_zero = FitLine(lower_x, lower_y).second;
  } else {
    curve.slope_after = std::max(0.0, fallback_slope);
    curve.value_at_zero = curve.y.front() - curve.slope_after * curve.x.front();
  }
  curve.value_at_zero = std::clamp(curve.value_at_zero, 0.0, curve.y.front());
  return curve;
}

absl::StatusOr<LatencyModel> LatencyModel::Create(const LatencyProfile& profile) {
  TANDEM_RETURN_IF_ERROR(ValidateLatencyProfile(profile));
  LatencyModel model;
  model.profile_ = profile;

  std::vector<std::pair<double, double>> uncached;
  for (const LatencyProfile::PrefillPoint& point : profile.prefill) {
    if (point.cached_tokens == 0) uncached.emplace_back(point.uncached_tokens, point.seconds);
  }
  model.prefill_ = MakeCurve(std::move(uncached), 0);
  // The cached prefix costs attention of every new token over it: fit the extra time over the
  // no-prefix curve as beta * uncached * cached, through the origin.
  double numerator = 0, denominator = 0;
  for (const LatencyProfile::PrefillPoint& point : profile.prefill) {
    if (point.cached_tokens == 0) continue;
    double work = static_cast<double>(point.uncached_tokens) * point.cached_tokens;
    double extra = point.seconds - model.prefill_.At(point.uncached_tokens);
    numerator += extra * work;
    denominator += work * work;
  }
  model.cached_prefix_cost_ = denominator > 0 ? std::max(0.0, numerator / denominator) : 0;

  // Decode: a context slope from the rows that vary context, a batch slope from all points once
  // the context part is taken out.
  std::map<int64_t, std::vector<std::pair<double, double>>> rows;
  for (const LatencyProfile::DecodePoint& point : profile.decode) {
    rows[point.batch_size].emplace_back(point.context_tokens, point.step_seconds);
  }
  double slope_sum = 0;
  int slope_rows = 0;
  for (const auto& [batch, points] : rows) {
    std::vector<double> xs, ys;
    for (const auto& [x, y] : points) {
      xs.push_back(x);
      ys.push_back(y);
    }
    if (std::set<double>(xs.begin(), xs.end()).size() < 2) continue;
    slope_sum += std::max(0.0, FitLine(xs, ys).first);
    ++slope_rows;
  }
  model.decode_context_slope_ = slope_rows > 0 ? slope_sum / slope_rows : 0;
  std::vector<double> batches, residuals;
  for (const LatencyProfile::DecodePoint& point : profile.decode) {
    batches.push_back(point.batch_size);
    residuals.push_back(point.step_seconds - model.decode_context_slope_ * point.context_tokens);
  }
  model.decode_batch_slope_ = std::max(0.0, FitLine(batches, residuals).first);
  for (auto& [batch, points] : rows) {
    model.decode_batches_.push_back(batch);
    model.decode_rows_.push_back(MakeCurve(std::move(points), model.decode_context_slope_));
  }
  return model;
}

double LatencyModel::PrefillSeconds(int64_t uncached_tokens, int64_t cached_tokens) const {
  if (uncached_tokens <= 0) return 0;
  double base = std::max(kMinSeconds, prefill_.At(static_cast<double>(uncached_tokens)));
  return base + cached_prefix_cost_ * static_cast<double>(uncached_tokens) *
                    static_cast<double>(std::max<int64_t>(0, cached_tokens));
}

double LatencyModel::DecodeStepSeconds(int64_t batch_size, int64_t context_tokens) const {
  batch_size = std::max<int64_t>(1, batch_size);
  const double context = static_cast<double>(std::max<int64_t>(0, context_tokens));
  // Rows are combined through a running maximum so that a larger batch is never faster at the
  // same total context, whatever noise the measurements carry.
  double envelope = decode_rows_.front().At(context);
  if (batch_size <= decode_batches_.front()) {
    double value = envelope - decode_batch_slope_ * (decode_batches_.front() - batch_size);
    return std::max(kMinSeconds, value);
  }
  for (size_t i = 1; i < decode_rows_.size(); ++i) {
    double next = std::max(envelope, decode_rows_[i].At(context));
    if (batch_size <= decode_batches_[i]) {
      double t = static_cast<double>(batch_size - decode_batches_[i - 1]) /
                 static_cast<double>(decode_batches_[i] - decode_batches_[i - 1]);
      return std::max(kMinSeconds, envelope + t * (next - envelope));
    }
    envelope = next;
  }
  return std::max(kMinSeconds,
                  envelope + decode_batch_slope_ * (batch_size - decode_batches_.back()));
}

double LatencyModel::DecodeStepSecondsMeanContext(int64_t batch_size,
                                                  double mean_context_tokens) const {
  double total =
      std::max(0.0, mean_context_tokens) * static_cast<double>(std::max<int64_t>(1, batch_size));
  return DecodeStepSeconds(batch_size, static_cast<int64_t>(std::llround(std::min(total, 9.0e18))));
}

double MeanTtftSeconds(double service_seconds, double rho) {
  if (rho >= 1) return std::numeric_limits<double>::infinity();
  rho = std::max(0.0, rho);
  return service_seconds + rho * service_seconds / (2 * (1 - rho));
}

absl::StatusOr<PrefillCapacity> MaxPrefillThroughput(const LatencyModel& model,
                                                     const PrefillCapacityQuery& query) {
  if (!(query.ttft_target_seconds > 0) || !std::isfinite(query.ttft_target_seconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TTFT target must be > 0 seconds, got ", query.ttft_target_seconds));
  }
  if (!(query.uncached_tokens > 0) || !std::isfinite(query.uncached_tokens) ||
      !(query.cached_tokens >= 0) || !std::isfinite(query.cached_tokens)) {
    return absl::InvalidArgumentError(
        absl::StrCat("prefill capacity needs uncached tokens > 0 and cached tokens >= 0, got ",
                     query.uncached_tokens, " and ", query.cached_tokens));
  }
  if (!(query.correction > 0) || !std::isfinite(query.correction)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the correction factor must be > 0, got ", query.correction));
  }
  const auto uncached = static_cast<int64_t>(std::ceil(std::min(query.uncached_tokens, 1e15)));
  const auto cached = static_cast<int64_t>(std::llround(std::min(query.cached_tokens, 1e15)));
  PrefillCapacity capacity;
  capacity.service_seconds = query.correction * model.PrefillSeconds(uncached, cached);
  const double service = capacity.service_seconds;
  const double target = query.ttft_target_seconds;
  if (service >= target) {
    return absl::FailedPreconditionError(
        absl::StrCat("a prompt of ", uncached, " uncached tokens (", cached, " cached) takes ",
                     service, " s to prefill, at or above the TTFT target of ", target,
                     " s: no load meets the target on this hardware"));
  }
  capacity.utilization = 2 * (target - service) / (2 * target - service);
  capacity.tokens_per_second = capacity.utilization * query.uncached_tokens / service;
  return capacity;
}

absl::StatusOr<DecodeCapacity> MaxDecodeConcurrency(const LatencyModel& model,
                                                    const DecodeCapacityQuery& query) {
  if (!(query.itl_target_seconds > 0) || !std::isfinite(query.itl_target_seconds)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the ITL target must be > 0 seconds, got ", query.itl_target_seconds));
  }
  if (!(query.mean_context_tokens >= 0) || !std::isfinite(query.mean_context_tokens)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "decode capacity needs a mean context >= 0 tokens, got ", query.mean_context_tokens));
  }
  if (query.max_batch_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the maximum batch size must be >= 1, got ", query.max_batch_size));
  }
  if (!(query.correction > 0) || !std::isfinite(query.correction)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the correction factor must be > 0, got ", query.correction));
  }
  auto step = [&](int64_t batch) {
    return query.correction * model.DecodeStepSecondsMeanContext(batch, query.mean_context_tokens);
  };
  if (step(1) > query.itl_target_seconds) {
    return absl::FailedPreconditionError(
        absl::StrCat("one sequence with ", query.mean_context_tokens, " context tokens takes ",
                     step(1), " s per decode step, above the ITL target of ",
                     query.itl_target_seconds, " s: no load meets the target on this hardware"));
  }
  // The step time is monotone in the batch size, so the largest batch within target is found by
  // bisection: step(low) <= target < step(high + 1).
  int64_t low = 1, high = query.max_batch_size;
  while (low < high) {
    int64_t middle = low + (high - low + 1) / 2;
    if (step(middle) <= query.itl_target_seconds) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  DecodeCapacity capacity;
  capacity.max_concurrency = low;
  capacity.step_seconds = step(low);
  capacity.tokens_per_second = static_cast<double>(low) / capacity.step_seconds;
  return capacity;
}

}  // namespace tandem
