#include "planner/planner.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "core/status.h"
#include "nlohmann/json.hpp"

namespace tandem::planner {
namespace {

constexpr double kEpsilon = 1e-9;

bool Feasible(int prefill, int decode, const ReplicaBounds& bounds) {
  return prefill >= bounds.prefill.min_instances && prefill <= bounds.prefill.max_instances &&
         decode >= bounds.decode.min_instances && decode <= bounds.decode.max_instances &&
         RatioHolds(prefill, decode, bounds) &&
         (bounds.gpu_budget <= 0 || Gpus(prefill, decode, bounds) <= bounds.gpu_budget);
}

// Four significant digits, without an exponent for the magnitudes a planner sees.
std::string Num(double value) {
  if (std::isfinite(value) && std::abs(value) >= 1000 && std::abs(value) < 1e15) {
    return absl::StrFormat("%.0f", value);
  }
  return absl::StrFormat("%.4g", value);
}

absl::Status NonNegative(const char* field, double value) {
  if (!std::isfinite(value) || value < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", field, "' must be a finite number >= 0, got ", value));
  }
  return absl::OkStatus();
}

}  // namespace

int InstancesFor(double load, double capacity) {
  if (!(load > 0)) return 0;
  if (!(capacity > 0)) return std::numeric_limits<int>::max();
  double instances = std::ceil(load / capacity - kEpsilon);
  return instances >= std::numeric_limits<int>::max() ? std::numeric_limits<int>::max()
                                                      : std::max(1, static_cast<int>(instances));
}

std::pair<int, int> ApplyReplicaBounds(int want_prefill, int want_decode,
                                       const ReplicaBounds& bounds,
                                       std::vector<std::string>* reasons) {
  absl::StatusOr<std::pair<int, int>> smallest = SmallestFeasibleReplicas(bounds);
  if (!smallest.ok()) {
    // Validated configs never get here; stay at the minimums and say why.
    reasons->push_back(absl::StrCat("bounds are infeasible: ", smallest.status().message()));
    return {bounds.prefill.min_instances, bounds.decode.min_instances};
  }
  auto clamp_role = [&](const char* name, int want, const RoleBounds& role) {
    int clamped = std::clamp(want, role.min_instances, role.max_instances);
    if (clamped != want) {
      reasons->push_back(absl::StrCat(name, " ", want, " -> ", clamped, ": role ",
                                      clamped > want ? "minimum" : "maximum", " is ", clamped));
    }
    return clamped;
  };
  int prefill = clamp_role("prefill", want_prefill, bounds.prefill);
  int decode = clamp_role("decode", want_decode, bounds.decode);

  // Ratio: prefer raising the lagging role, since lowering the leading one gives up capacity the
  // load asked for.
  if (prefill > bounds.max_ratio * decode + kEpsilon) {
    int needed = static_cast<int>(std::ceil(prefill / bounds.max_ratio - kEpsilon));
    if (needed <= bounds.decode.max_instances) {
      reasons->push_back(absl::StrCat("decode ", decode, " -> ", needed,
                                      ": prefill:decode may not exceed ", Num(bounds.max_ratio),
                                      " (", prefill, " prefill instances)"));
      decode = needed;
    } else {
      int allowed =
          static_cast<int>(std::floor(bounds.max_ratio * bounds.decode.max_instances + kEpsilon));
      reasons->push_back(absl::StrCat(
          "prefill ", prefill, " -> ", allowed, ": prefill:decode may not exceed ",
          Num(bounds.max_ratio), " and decode is at its maximum ", bounds.decode.max_instances));
      decode = bounds.decode.max_instances;
      prefill = allowed;
    }
  }
  if (prefill + kEpsilon < bounds.min_ratio * decode) {
    int needed = static_cast<int>(std::ceil(bounds.min_ratio * decode - kEpsilon));
    if (needed <= bounds.prefill.max_instances) {
      reasons->push_back(absl::StrCat("prefill ", prefill, " -> ", needed,
                                      ": prefill:decode may not fall below ", Num(bounds.min_ratio),
                                      " (", decode, " decode instances)"));
      prefill = needed;
    } else {
      int allowed =
          static_cast<int>(std::floor(bounds.prefill.max_instances / bounds.min_ratio + kEpsilon));
      reasons->push_back(absl::StrCat(
          "decode ", decode, " -> ", allowed, ": prefill:decode may not fall below ",
          Num(bounds.min_ratio), " and prefill is at its maximum ", bounds.prefill.max_instances));
      prefill = bounds.prefill.max_instances;
      decode = allowed;
    }
  }
  if (Feasible(prefill, decode, bounds)) return {prefill, decode};

  // GPU budget (or a ratio fix that broke a minimum): scale both roles down by the same factor,
  // never below the smallest feasible counts, then hand leftover GPUs back one instance at a time.
  const int wanted_prefill = prefill, wanted_decode = decode;
  const auto [floor_prefill, floor_decode] = *smallest;
  int scaled_prefill = floor_prefill, scaled_decode = floor_decode;
  for (int step = 1000; step >= 0; --step) {
    double factor = step / 1000.0;
    int p = std::max(floor_prefill, static_cast<int>(std::floor(wanted_prefill * factor)));
    int d = std::max(floor_decode, static_cast<int>(std::floor(wanted_decode * factor)));
    if (Feasible(p, d, bounds)) {
      scaled_prefill = p;
      scaled_decode = d;
      break;
    }
  }
  while (true) {
    // The role furthest below what it wanted gets the next instance.
    double prefill_shortfall = static_cast<double>(wanted_prefill) / scaled_prefill;
    double decode_shortfall = static_cast<double>(wanted_decode) / scaled_decode;
    std::vector<std::pair<int, int>> candidates;
    bool prefill_first = prefill_shortfall >= decode_shortfall;
    std::pair<int, int> add_prefill{scaled_prefill + 1, scaled_decode};
    std::pair<int, int> add_decode{scaled_prefill, scaled_decode + 1};
    if (prefill_first) {
      candidates = {add_prefill, add_decode};
    } else {
      candidates = {add_decode, add_prefill};
    }
    candidates.push_back({scaled_prefill + 1, scaled_decode + 1});
    bool grew = false;
    for (const auto& [p, d] : candidates) {
      if (p <= std::max(wanted_prefill, floor_prefill) &&
          d <= std::max(wanted_decode, floor_decode) && Feasible(p, d, bounds)) {
        scaled_prefill = p;
        scaled_decode = d;
        grew = true;
        break;
      }
    }
    if (!grew) break;
  }
  std::string why =
      bounds.gpu_budget > 0 && Gpus(wanted_prefill, wanted_decode, bounds) > bounds.gpu_budget
          ? absl::StrCat("GPU budget ", bounds.gpu_budget, ": ", wanted_prefill, " prefill x ",
                         bounds.prefill.gpus_per_instance, " + ", wanted_decode, " decode x ",
                         bounds.decode.gpus_per_instance, " = ",
                         Gpus(wanted_prefill, wanted_decode, bounds), " GPUs wanted")
          : absl::StrCat("bounds: ", wanted_prefill, " prefill with ", wanted_decode,
                         " decode instances do not fit together");
  reasons->push_back(absl::StrCat(why, "; both roles scaled down proportionally to prefill ",
                                  scaled_prefill, ", decode ", scaled_decode, " (",
                                  Gpus(scaled_prefill, scaled_decode, bounds), " GPUs)"));
  return {scaled_prefill, scaled_decode};
}

void WindowedRegression::Add(double x, double y) {
  samples_.emplace_back(x, y);
  while (static_cast<int>(samples_.size()) > window_) samples_.pop_front();
}

std::optional<std::pair<double, double>> WindowedRegression::Fit() const {
  const double n = samples_.size();
  if (n < 2) return std::nullopt;
  double mean_x = 0, mean_y = 0;
  for (const auto& [x, y] : samples_) {
    mean_x += x;
    mean_y += y;
  }
  mean_x /= n;
  mean_y /= n;
  double sxx = 0, sxy = 0;
  for (const auto& [x, y] : samples_) {
    sxx += (x - mean_x) * (x - mean_x);
    sxy += (x - mean_x) * (y - mean_y);
  }
  if (sxx <= kEpsilon * std::max(1.0, mean_x * mean_x)) return std::nullopt;
  double slope = sxy / sxx;
  return std::make_pair(mean_y - slope * mean_x, slope);
}

absl::Status ValidateObservation(const Observation& o) {
  if (!std::isfinite(o.time_seconds)) {
    return absl::InvalidArgumentError("'time_s' must be a finite number");
  }
  if (o.prefill_instances < 0 || o.decode_instances < 0) {
    return absl::InvalidArgumentError(absl::StrCat("instance counts must be >= 0, got prefill ",
                                                   o.prefill_instances, " and decode ",
                                                   o.decode_instances));
  }
  TANDEM_RETURN_IF_ERROR(NonNegative("prompt_tokens_per_s", o.prompt_tokens_per_second));
  TANDEM_RETURN_IF_ERROR(NonNegative("mean_prompt_tokens", o.mean_prompt_tokens));
  TANDEM_RETURN_IF_ERROR(NonNegative("output_tokens_per_s", o.output_tokens_per_second));
  TANDEM_RETURN_IF_ERROR(NonNegative("mean_context_tokens", o.mean_context_tokens));
  TANDEM_RETURN_IF_ERROR(NonNegative("active_sequences", o.active_sequences));
  TANDEM_RETURN_IF_ERROR(NonNegative("ttft_s", o.ttft_seconds));
  TANDEM_RETURN_IF_ERROR(NonNegative("itl_s", o.itl_seconds));
  if (!(o.prefix_hit_rate >= 0 && o.prefix_hit_rate <= 1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'prefix_hit_rate' must be in [0, 1], got ", o.prefix_hit_rate));
  }
  for (const auto& [name, loads, count] :
       {std::tuple<const char*, const std::vector<InstanceLoad>*, int>{
            "prefill_load", &o.prefill_load, o.prefill_instances},
        {"decode_load", &o.decode_load, o.decode_instances}}) {
    // Fewer entries than instances is normal live (an instance still starting, or one whose
    // metrics could not be read, reports nothing); more is a broken observation.
    if (static_cast<int>(loads->size()) > count) {
      return absl::InvalidArgumentError(absl::StrCat("'", name, "' has ", loads->size(),
                                                     " entries but only ", count,
                                                     " instances are running"));
    }
    for (size_t i = 0; i < loads->size(); ++i) {
      const InstanceLoad& load = (*loads)[i];
      if (!std::isfinite(load.active) || load.active < 0 || !std::isfinite(load.latency_seconds) ||
          load.latency_seconds < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("'", name, "[", i, "]' needs active >= 0 and latency_s >= 0, got ",
                         load.active, " and ", load.latency_seconds));
      }
    }
  }
  return absl::OkStatus();
}

Planner::Planner(PlannerConfig config, std::optional<LatencyModel> model)
    : config_(std::move(config)), model_(std::move(model)) {}

absl::StatusOr<Planner> Planner::Create(const PlannerConfig& config,
                                        std::optional<LatencyModel> model) {
  TANDEM_RETURN_IF_ERROR(ValidatePlannerConfig(config));
  if (config.mode == PlannerMode::kThroughput && !model.has_value()) {
    return absl::InvalidArgumentError(
        "throughput mode needs the latency profile's model (load it with LoadPlannerConfig)");
  }
  Planner planner(config,
                  config.mode == PlannerMode::kThroughput ? std::move(model) : std::nullopt);
  PredictorOptions options = config.predictor;
  options.interval_seconds = config.interval_seconds;
  for (RoleState* state : {&planner.prefill_, &planner.decode_}) {
    TANDEM_ASSIGN_OR_RETURN(state->predictor, MakePredictor(options));
    state->regression = WindowedRegression(config.regression_window);
  }
  return planner;
}

double Planner::Corrected(double previous, double raw) const {
  raw = std::clamp(raw, config_.correction_min, config_.correction_max);
  double smoothed =
      config_.correction_smoothing * raw + (1 - config_.correction_smoothing) * previous;
  return std::clamp(smoothed, config_.correction_min, config_.correction_max);
}

Planner::Sizing Planner::SizeThroughputPrefill(const Observation& o, RoleDecision* role,
                                               std::vector<std::string>* reasons) {
  Sizing sizing;
  const double uncached_rate = o.prompt_tokens_per_second * (1 - o.prefix_hit_rate);
  prefill_.predictor->Observe(o.time_seconds, uncached_rate);
  role->observed_load = uncached_rate;
  role->predicted_load = prefill_.predictor->Predict(config_.horizon_seconds);
  const double load = std::max(role->observed_load, role->predicted_load);
  role->observed_latency_seconds = o.ttft_seconds;
  if (!(load > 0) || !(o.mean_prompt_tokens > 0)) {
    reasons->push_back("prefill: no prompt traffic observed or predicted");
    return sizing;  // 0 wanted; the role minimum applies
  }
  const double uncached = std::max(1.0, o.mean_prompt_tokens * (1 - o.prefix_hit_rate));
  const double cached = o.mean_prompt_tokens * o.prefix_hit_rate;
  const double profiled_service = model_->PrefillSeconds(
      static_cast<int64_t>(std::ceil(uncached)), static_cast<int64_t>(std::llround(cached)));
  // Correction: the factor on the profiled service time that explains the observed mean TTFT at
  // the observed utilisation (the M/D/1 formula is monotone in it, so bisect).
  const double profiled_rho =
      o.prefill_instances > 0 ? uncached_rate / o.prefill_instances * profiled_service / uncached
                              : 0;
  if (o.ttft_seconds > 0 && o.prefill_instances > 0) {
    auto ttft_at = [&](double factor) {
      return MeanTtftSeconds(factor * profiled_service, factor * profiled_rho);
    };
    double low = config_.correction_min, high = config_.correction_max;
    if (ttft_at(low) >= o.ttft_seconds) {
      high = low;
    } else if (ttft_at(high) <= o.ttft_seconds) {
      low = high;
    }
    for (int i = 0; i < 60 && high - low > 1e-6; ++i) {
      double middle = (low + high) / 2;
      (ttft_at(middle) < o.ttft_seconds ? low : high) = middle;
    }
    prefill_.correction = Corrected(prefill_.correction, (low + high) / 2);
  }
  role->correction = prefill_.correction;
  role->predicted_latency_seconds =
      MeanTtftSeconds(prefill_.correction * profiled_service, prefill_.correction * profiled_rho);
  absl::StatusOr<PrefillCapacity> capacity =
      MaxPrefillThroughput(*model_, {.ttft_target_seconds = config_.ttft_target_seconds,
                                     .uncached_tokens = uncached,
                                     .cached_tokens = cached,
                                     .correction = prefill_.correction});
  double per_instance = 0;
  if (capacity.ok()) {
    per_instance = capacity->tokens_per_second;
  } else {
    // The target cannot be met at any load; still provide the throughput, at 80% utilisation.
    per_instance = 0.8 * uncached / (prefill_.correction * profiled_service);
    reasons->push_back(absl::StrCat("prefill: ", capacity.status().message(),
                                    "; sizing for 80% utilisation instead"));
  }
  role->capacity_per_instance = per_instance;
  sizing.scale_out_to = InstancesFor(load, per_instance);
  sizing.scale_in_to = InstancesFor(load, per_instance * (1 - config_.scale_in_margin));
  reasons->push_back(absl::StrCat(
      "prefill: ", Num(load), " uncached prompt tokens/s (observed ", Num(uncached_rate),
      ", predicted ", Num(role->predicted_load), ", prefix hit rate ", Num(o.prefix_hit_rate),
      ") / ", Num(per_instance), " tokens/s per instance at TTFT <= ",
      Num(config_.ttft_target_seconds * 1000), " ms (correction ", Num(prefill_.correction),
      ") = ", Num(load / per_instance), " -> ", sizing.scale_out_to, " instances"));
  return sizing;
}

Planner::Sizing Planner::SizeThroughputDecode(const Observation& o, RoleDecision* role,
                                              std::vector<std::string>* reasons) {
  Sizing sizing;
  decode_.predictor->Observe(o.time_seconds, o.output_tokens_per_second);
  role->observed_load = o.output_tokens_per_second;
  role->predicted_load = decode_.predictor->Predict(config_.horizon_seconds);
  role->observed_latency_seconds = o.itl_seconds;
  const double load = std::max(role->observed_load, role->predicted_load);
  if (!(load > 0)) {
    reasons->push_back("decode: no generated tokens observed or predicted");
    return sizing;
  }
  const double context = o.mean_context_tokens;
  if (o.decode_instances > 0 && o.active_sequences > 0) {
    int64_t batch = std::max<int64_t>(1, std::llround(o.active_sequences / o.decode_instances));
    double profiled_step = model_->DecodeStepSecondsMeanContext(batch, context);
    if (o.itl_seconds > 0) {
      decode_.correction = Corrected(decode_.correction, o.itl_seconds / profiled_step);
    }
    role->predicted_latency_seconds = decode_.correction * profiled_step;
  }
  role->correction = decode_.correction;
  absl::StatusOr<DecodeCapacity> capacity =
      MaxDecodeConcurrency(*model_, {.itl_target_seconds = config_.itl_target_seconds,
                                     .mean_context_tokens = context,
                                     .max_batch_size = config_.max_decode_batch,
                                     .correction = decode_.correction});
  double per_instance = 0;
  std::string concurrency;
  if (capacity.ok()) {
    per_instance = capacity->tokens_per_second;
    concurrency = absl::StrCat(capacity->max_concurrency, " sequences x 1 token / ",
                               Num(capacity->step_seconds * 1000), " ms = ");
  } else {
    per_instance = 1.0 / (decode_.correction * model_->DecodeStepSecondsMeanContext(1, context));
    reasons->push_back(absl::StrCat("decode: ", capacity.status().message(),
                                    "; sizing for one sequence per instance instead"));
  }
  role->capacity_per_instance = per_instance;
  sizing.scale_out_to = InstancesFor(load, per_instance);
  sizing.scale_in_to = InstancesFor(load, per_instance * (1 - config_.scale_in_margin));
  reasons->push_back(absl::StrCat(
      "decode: ", Num(load), " tokens/s (observed ", Num(o.output_tokens_per_second),
      ", predicted ", Num(role->predicted_load), ") / ", concurrency, Num(per_instance),
      " tokens/s per instance at ITL <= ", Num(config_.itl_target_seconds * 1000), " ms, context ",
      Num(context), " tokens (correction ", Num(decode_.correction),
      ") = ", Num(load / per_instance), " -> ", sizing.scale_out_to, " instances"));
  return sizing;
}

Planner::Sizing Planner::SizeByLoad(const char* name, const std::vector<InstanceLoad>& instances,
                                    double target, RoleState& state, RoleDecision* role,
                                    std::vector<std::string>* reasons, double now) {
  Sizing sizing;
  const int current = role->current;
  double total = 0, latency_sum = 0;
  int latency_count = 0;
  for (const InstanceLoad& instance : instances) {
    total += instance.active;
    if (instance.latency_seconds > 0) {
      state.regression.Add(instance.active, instance.latency_seconds);
      latency_sum += instance.latency_seconds;
      ++latency_count;
    }
  }
  state.predictor->Observe(now, total);
  role->observed_load = total;
  role->predicted_load = state.predictor->Predict(config_.horizon_seconds);
  role->observed_latency_seconds = latency_count > 0 ? latency_sum / latency_count : 0;
  const double load = std::max(total, role->predicted_load);
  const bool all_over_target =
      !instances.empty() && std::all_of(instances.begin(), instances.end(),
                                        [&](const auto& i) { return i.latency_seconds > target; });
  if (instances.empty() && current > 0) {
    sizing.may_scale_in = false;
    sizing.scale_out_to = current;
    reasons->push_back(absl::StrCat(name, ": the observation has no per-instance load (", name,
                                    "_load), which load mode needs; holding"));
    return sizing;
  }
  std::optional<std::pair<double, double>> fit = state.regression.Fit();
  if (state.regression.size() < config_.regression_min_samples || !fit || fit->second <= 0) {
    sizing.may_scale_in = false;
    sizing.scale_out_to = all_over_target ? current + 1 : current;
    reasons->push_back(absl::StrCat(
        name, ": latency regression not ready (", state.regression.size(), " samples, ",
        config_.regression_min_samples, " needed, and latency must grow with load); ",
        all_over_target ? "every instance is over the target: one more"
                        : "holding, no scale-in until it is"));
    return sizing;
  }
  const auto [intercept, slope] = *fit;
  const double sla_point = (target - intercept) / slope;
  if (!(sla_point > 0)) {
    sizing.may_scale_in = false;
    sizing.scale_out_to = current + 1;
    reasons->push_back(absl::StrCat(name, ": an idle instance already takes ", Num(intercept),
                                    " s, above the target ", Num(target),
                                    " s; adding one instance"));
    return sizing;
  }
  role->capacity_per_instance = sla_point;
  if (current > 0) role->predicted_latency_seconds = intercept + slope * total / current;
  // Instances that have not reported yet (still starting) will take their share: scale out
  // only when the load spread over all of them is past the SLA point too.
  const bool every_instance_past =
      !instances.empty() &&
      std::all_of(instances.begin(), instances.end(),
                  [&](const auto& i) { return i.active >= sla_point; }) &&
      (current <= 0 || total / current >= sla_point);
  sizing.may_scale_out = every_instance_past || current == 0;
  sizing.scale_out_to = std::max(current + 1, InstancesFor(load, sla_point));
  sizing.scale_in_to = InstancesFor(load, sla_point * (1 - config_.scale_in_margin));
  // Scale in only when n - 1 instances would each stay under the (margined) SLA point.
  sizing.may_scale_in =
      current > 1 && load / (current - 1) <= sla_point * (1 - config_.scale_in_margin);
  reasons->push_back(absl::StrCat(
      name, ": latency = ", Num(intercept), " s + ", Num(slope), " s x load (",
      state.regression.size(), " samples) reaches the target ", Num(target * 1000), " ms at ",
      Num(sla_point), " per instance; load ", Num(load), " over ", current, " instances; ",
      every_instance_past   ? "every instance is past the SLA point"
      : sizing.may_scale_in ? absl::StrCat(current - 1, " instances would stay under it")
                            : "within the band, no change needed"));
  return sizing;
}

int Planner::Gate(const char* name, const Sizing& sizing, int current, double now, RoleState& state,
                  std::vector<std::string>* reasons, std::string* reason_code) {
  auto cooling = [&](double cooldown) {
    return state.last_change_seconds.has_value() && now - *state.last_change_seconds < cooldown;
  };
  if (sizing.may_scale_out && sizing.scale_out_to > current) {
    state.scale_in_streak = 0;
    if (cooling(config_.scale_out_cooldown_seconds)) {
      reasons->push_back(absl::StrCat(
          name, ": wants ", sizing.scale_out_to, " but held at ", current, ": scale-out cooldown, ",
          Num(config_.scale_out_cooldown_seconds - (now - *state.last_change_seconds)), " s left"));
      *reason_code = "scale_out_cooldown";
      return current;
    }
    *reason_code = "load";
    return sizing.scale_out_to;
  }
  if (sizing.may_scale_in && sizing.scale_in_to < current) {
    ++state.scale_in_streak;
    int to = std::max(sizing.scale_in_to, current - config_.scale_in_step);
    if (state.scale_in_streak < config_.scale_in_stable_intervals) {
      reasons->push_back(absl::StrCat(
          name, ": ", sizing.scale_in_to, " instances would do, for ", state.scale_in_streak,
          " of ", config_.scale_in_stable_intervals, " evaluations needed before scaling in"));
      *reason_code = "stabilizing";
      return current;
    }
    if (cooling(config_.scale_in_cooldown_seconds)) {
      reasons->push_back(absl::StrCat(
          name, ": could scale in to ", to, " but held at ", current, ": scale-in cooldown, ",
          Num(config_.scale_in_cooldown_seconds - (now - *state.last_change_seconds)), " s left"));
      *reason_code = "scale_in_cooldown";
      return current;
    }
    *reason_code = "load";
    return to;
  }
  state.scale_in_streak = 0;
  *reason_code = "within_band";
  return current;
}

Decision Planner::Decide(const Observation& o) {
  Decision decision;
  decision.time_seconds = o.time_seconds;
  decision.mode = config_.mode;
  decision.advisory = config_.advisory;
  decision.prefill.current = o.prefill_instances;
  decision.decode.current = o.decode_instances;
  absl::Status valid = ValidateObservation(o);
  if (valid.ok() && last_time_.has_value() && o.time_seconds < *last_time_) {
    valid = absl::InvalidArgumentError(absl::StrCat(
        "time ", o.time_seconds, " s is before the previous observation at ", *last_time_, " s"));
  }
  if (!valid.ok()) {
    decision.prefill.proposed = decision.prefill.target = o.prefill_instances;
    decision.decode.proposed = decision.decode.target = o.decode_instances;
    decision.prefill.reason = decision.decode.reason = "invalid_observation";
    decision.reasons.push_back(
        absl::StrCat("observation refused, keeping the current counts: ", valid.message()));
    return decision;
  }
  last_time_ = o.time_seconds;
  std::vector<std::string>& reasons = decision.reasons;
  Sizing prefill_sizing, decode_sizing;
  if (config_.mode == PlannerMode::kThroughput) {
    prefill_sizing = SizeThroughputPrefill(o, &decision.prefill, &reasons);
    decode_sizing = SizeThroughputDecode(o, &decision.decode, &reasons);
  } else {
    prefill_sizing = SizeByLoad("prefill", o.prefill_load, config_.ttft_target_seconds, prefill_,
                                &decision.prefill, &reasons, o.time_seconds);
    decode_sizing = SizeByLoad("decode", o.decode_load, config_.itl_target_seconds, decode_,
                               &decision.decode, &reasons, o.time_seconds);
  }
  // Scaling in below a role's minimum can never happen; do not count evaluations towards it.
  prefill_sizing.scale_in_to =
      std::max(prefill_sizing.scale_in_to, config_.bounds.prefill.min_instances);
  decode_sizing.scale_in_to =
      std::max(decode_sizing.scale_in_to, config_.bounds.decode.min_instances);
  decision.prefill.proposed = Gate("prefill", prefill_sizing, o.prefill_instances, o.time_seconds,
                                   prefill_, &reasons, &decision.prefill.reason);
  decision.decode.proposed = Gate("decode", decode_sizing, o.decode_instances, o.time_seconds,
                                  decode_, &reasons, &decision.decode.reason);
  auto [prefill, decode] = ApplyReplicaBounds(decision.prefill.proposed, decision.decode.proposed,
                                              config_.bounds, &reasons);
  decision.prefill.target = prefill;
  decision.decode.target = decode;
  for (RoleDecision* role : {&decision.prefill, &decision.decode}) {
    if (role->target != role->proposed) role->reason = "bounds";
  }
  decision.gpus = static_cast<int64_t>(prefill) * config_.bounds.prefill.gpus_per_instance +
                  static_cast<int64_t>(decode) * config_.bounds.decode.gpus_per_instance;
  for (auto [role, state] : {std::pair<RoleDecision*, RoleState*>{&decision.prefill, &prefill_},
                             {&decision.decode, &decode_}}) {
    if (role->target != role->current) {
      state->last_change_seconds = o.time_seconds;
      state->scale_in_streak = 0;
      decision.changed = true;
    }
  }
  reasons.push_back(absl::StrCat(
      decision.changed ? "change: " : "no change: ", "prefill ", decision.prefill.current, " -> ",
      prefill, " x ", config_.bounds.prefill.gpus_per_instance, " GPUs, decode ",
      decision.decode.current, " -> ", decode, " x ", config_.bounds.decode.gpus_per_instance,
      " GPUs, ", decision.gpus, " GPUs in all",
      config_.advisory ? " (advisory: not applied)" : ""));
  return decision;
}

absl::Status Planner::Learn(const Observation& o) {
  absl::Status valid = ValidateObservation(o);
  if (!valid.ok()) return valid;
  if (last_time_.has_value() && o.time_seconds < *last_time_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "time ", o.time_seconds, " s is before the previous observation at ", *last_time_, " s"));
  }
  last_time_ = o.time_seconds;
  Decision scratch;
  scratch.prefill.current = o.prefill_instances;
  scratch.decode.current = o.decode_instances;
  std::vector<std::string> reasons;
  if (config_.mode == PlannerMode::kThroughput) {
    SizeThroughputPrefill(o, &scratch.prefill, &reasons);
    SizeThroughputDecode(o, &scratch.decode, &reasons);
  } else {
    SizeByLoad("prefill", o.prefill_load, config_.ttft_target_seconds, prefill_, &scratch.prefill,
               &reasons, o.time_seconds);
    SizeByLoad("decode", o.decode_load, config_.itl_target_seconds, decode_, &scratch.decode,
               &reasons, o.time_seconds);
  }
  return absl::OkStatus();
}

std::string FormatDecision(const Decision& d) {
  std::string text = absl::StrCat("decision at t=", Num(d.time_seconds), " s (",
                                  std::string(PlannerModeName(d.mode)), " mode",
                                  d.advisory ? ", advisory" : "", ")\n");
  const char* unit = d.mode == PlannerMode::kThroughput ? "tokens/s" : "active";
  for (const auto& [name, role] :
       {std::pair<const char*, const RoleDecision*>{"prefill", &d.prefill},
        {"decode", &d.decode}}) {
    absl::StrAppend(
        &text,
        absl::StrFormat("  %-8s %d -> %d instances (load asks %d); load %s %s observed, "
                        "%s predicted; capacity %s per instance; latency %s s observed, "
                        "%s s modeled; correction %s\n",
                        name, role->current, role->target, role->proposed, Num(role->observed_load),
                        unit, Num(role->predicted_load), Num(role->capacity_per_instance),
                        Num(role->observed_latency_seconds), Num(role->predicted_latency_seconds),
                        Num(role->correction)));
  }
  absl::StrAppend(&text, "  GPUs     ", d.gpus, d.changed ? " (changed)" : " (unchanged)", "\n");
  absl::StrAppend(&text, "  reasons:\n");
  for (const std::string& reason : d.reasons) absl::StrAppend(&text, "    - ", reason, "\n");
  return text;
}

std::string DecisionToJson(const Decision& d) {
  auto role = [](const RoleDecision& r) {
    return nlohmann::json{{"current", r.current},
                          {"proposed", r.proposed},
                          {"target", r.target},
                          {"observed_load", r.observed_load},
                          {"predicted_load", r.predicted_load},
                          {"capacity_per_instance", r.capacity_per_instance},
                          {"correction", r.correction},
                          {"observed_latency_s", r.observed_latency_seconds},
                          {"predicted_latency_s", r.predicted_latency_seconds},
                          {"reason", r.reason}};
  };
  nlohmann::json json{{"time_s", d.time_seconds}, {"mode", std::string(PlannerModeName(d.mode))},
                      {"advisory", d.advisory},   {"prefill", role(d.prefill)},
                      {"decode", role(d.decode)}, {"gpus", d.gpus},
                      {"changed", d.changed},     {"reasons", d.reasons}};
  return json.dump(2) + "\n";
}

}  // namespace tandem::planner
