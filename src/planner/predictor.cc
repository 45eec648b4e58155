#include "planner/predictor.h"

#include <algorithm>
#include <cmath>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace tandem::planner {
namespace {

constexpr double kPi = 3.14159265358979323846;

// Converts a horizon in seconds into whole sampling steps (at least one).
class StepClock {
 public:
  explicit StepClock(double configured_interval) : configured_(configured_interval) {}

  void Observe(double time_seconds) {
    if (count_ > 0 && time_seconds > last_time_) {
      double gap = time_seconds - last_time_;
      measured_ = measured_ > 0 ? 0.8 * measured_ + 0.2 * gap : gap;
    }
    last_time_ = time_seconds;
    ++count_;
  }
  int Steps(double horizon_seconds) const {
    double interval = configured_ > 0 ? configured_ : (measured_ > 0 ? measured_ : 1.0);
    return std::max(1, static_cast<int>(std::lround(std::max(0.0, horizon_seconds) / interval)));
  }

 private:
  double configured_;
  double measured_ = 0;
  double last_time_ = 0;
  long count_ = 0;
};

class LastValuePredictor : public LoadPredictor {
 public:
  void Observe(double, double value) override { last_ = value; }
  double Predict(double) const override { return std::max(0.0, last_); }
  std::string_view name() const override { return "last_value"; }

 private:
  double last_ = 0;
};

class EwmaPredictor : public LoadPredictor {
 public:
  explicit EwmaPredictor(double alpha) : alpha_(alpha) {}
  void Observe(double, double value) override {
    smoothed_ = started_ ? alpha_ * value + (1 - alpha_) * smoothed_ : value;
    started_ = true;
  }
  double Predict(double) const override { return std::max(0.0, smoothed_); }
  std::string_view name() const override { return "ewma"; }

 private:
  double alpha_;
  double smoothed_ = 0;
  bool started_ = false;
};

// Additive Holt-Winters (level, trend, one seasonal component per position in the season).
// Until a full season has been seen it forecasts the last value.
class HoltWintersPredictor : public LoadPredictor {
 public:
  HoltWintersPredictor(const PredictorOptions& options, int season_length)
      : alpha_(options.alpha),
        beta_(options.beta),
        gamma_(options.gamma),
        season_length_(season_length),
        clock_(options.interval_seconds) {}

  void Observe(double time_seconds, double value) override {
    clock_.Observe(time_seconds);
    last_ = value;
    if (static_cast<int>(seasonal_.size()) < season_length_) {
      // First season: collect, then initialise level as its mean, seasonals as deviations.
      seasonal_.push_back(value);
      ++index_;
      if (static_cast<int>(seasonal_.size()) == season_length_) {
        double mean = 0;
        for (double x : seasonal_) mean += x;
        mean /= season_length_;
        for (double& s : seasonal_) s -= mean;
        level_ = mean;
        trend_ = 0;
      }
      return;
    }
    double& seasonal = seasonal_[index_ % season_length_];
    double previous_level = level_;
    level_ = alpha_ * (value - seasonal) + (1 - alpha_) * (level_ + trend_);
    trend_ = beta_ * (level_ - previous_level) + (1 - beta_) * trend_;
    seasonal = gamma_ * (value - level_) + (1 - gamma_) * seasonal;
    ++index_;
  }

  double Predict(double horizon_seconds) const override {
    if (static_cast<int>(seasonal_.size()) < season_length_ || index_ <= season_length_) {
      return std::max(0.0, last_);
    }
    int steps = clock_.Steps(horizon_seconds);
    // index_ is the position of the next sample; the forecast is for index_ + steps - 1.
    long position = (index_ + steps - 1) % season_length_;
    return std::max(0.0, level_ + steps * trend_ + seasonal_[position]);
  }
  std::string_view name() const override { return "holt_winters"; }

 private:
  double alpha_, beta_, gamma_;
  int season_length_;
  StepClock clock_;
  std::vector<double> seasonal_;
  long index_ = 0;
  double level_ = 0, trend_ = 0, last_ = 0;
};

// A Kalman filter on a local linear trend: state (level, trend), level += trend each step.
// Measurement noise is 1 and the process noises are given relative to it, so the steady-state
// gain (and thus the behaviour) does not depend on the load's units.
class KalmanPredictor : public LoadPredictor {
 public:
  explicit KalmanPredictor(const PredictorOptions& options)
      : level_noise_(options.kalman_level_noise),
        trend_noise_(options.kalman_trend_noise),
        clock_(options.interval_seconds) {}

  void Observe(double time_seconds, double value) override {
    clock_.Observe(time_seconds);
    if (!started_) {
      level_ = value;
      trend_ = 0;
      // Uncertain start: the first few samples set level and trend.
      p00_ = 1e4;
      p01_ = 0;
      p11_ = 1e2;
      started_ = true;
      return;
    }
    // Predict one step: x = F x, P = F P F' + Q with F = [[1, 1], [0, 1]].
    level_ += trend_;
    double p00 = p00_ + 2 * p01_ + p11_ + level_noise_;
    double p01 = p01_ + p11_;
    double p11 = p11_ + trend_noise_;
    // Update with the measurement of the level (H = [1, 0], R = 1).
    double innovation = value - level_;
    double s = p00 + 1;
    double k0 = p00 / s, k1 = p01 / s;
    level_ += k0 * innovation;
    trend_ += k1 * innovation;
    p00_ = (1 - k0) * p00;
    p01_ = (1 - k0) * p01;
    p11_ = p11 - k1 * p01;
  }

  double Predict(double horizon_seconds) const override {
    if (!started_) return 0;
    return std::max(0.0, level_ + clock_.Steps(horizon_seconds) * trend_);
  }
  std::string_view name() const override { return "kalman"; }

 private:
  double level_noise_, trend_noise_;
  StepClock clock_;
  bool started_ = false;
  double level_ = 0, trend_ = 0;
  double p00_ = 0, p01_ = 0, p11_ = 0;
};

int SeasonLength(const PredictorOptions& options) {
  if (!(options.interval_seconds > 0)) return 0;
  return static_cast<int>(std::lround(options.season_period_seconds / options.interval_seconds));
}

bool InUnitInterval(double value) { return value > 0 && value <= 1; }

}  // namespace

std::string_view PredictorKindName(PredictorKind kind) {
  switch (kind) {
    case PredictorKind::kLastValue:
      return "last_value";
    case PredictorKind::kEwma:
      return "ewma";
    case PredictorKind::kHoltWinters:
      return "holt_winters";
    case PredictorKind::kKalman:
      return "kalman";
  }
  return "unknown";
}

absl::StatusOr<PredictorKind> ParsePredictorKind(std::string_view name) {
  for (PredictorKind kind : {PredictorKind::kLastValue, PredictorKind::kEwma,
                             PredictorKind::kHoltWinters, PredictorKind::kKalman}) {
    if (name == PredictorKindName(kind)) return kind;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown predictor '", absl::string_view(name.data(), name.size()),
                   "' (expected last_value, ewma, holt_winters or kalman)"));
}

absl::Status ValidatePredictorOptions(const PredictorOptions& options) {
  const std::pair<const char*, double> unit_values[] = {
      {"alpha", options.alpha}, {"beta", options.beta}, {"gamma", options.gamma}};
  for (const auto& [name, value] : unit_values) {
    if (!InUnitInterval(value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("predictor ", name, " must be in (0, 1], got ", value));
    }
  }
  if (options.kind == PredictorKind::kHoltWinters) {
    if (!(options.season_period_seconds > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the holt_winters predictor needs season_period_s > 0 (e.g. 86400 for a daily "
          "pattern), got ",
          options.season_period_seconds));
    }
    if (SeasonLength(options) < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("the holt_winters season (season_period_s ", options.season_period_seconds,
                       ") must span at least 2 evaluation intervals (interval_s ",
                       options.interval_seconds, ")"));
    }
  }
  if (!(options.kalman_level_noise > 0) || !(options.kalman_trend_noise > 0) ||
      !std::isfinite(options.kalman_level_noise) || !std::isfinite(options.kalman_trend_noise)) {
    return absl::InvalidArgumentError(
        absl::StrCat("kalman level_noise and trend_noise must be > 0, got ",
                     options.kalman_level_noise, " and ", options.kalman_trend_noise));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<LoadPredictor>> MakePredictor(const PredictorOptions& options) {
  absl::Status valid = ValidatePredictorOptions(options);
  if (!valid.ok()) return valid;
  switch (options.kind) {
    case PredictorKind::kLastValue:
      return std::unique_ptr<LoadPredictor>(new LastValuePredictor());
    case PredictorKind::kEwma:
      return std::unique_ptr<LoadPredictor>(new EwmaPredictor(options.alpha));
    case PredictorKind::kHoltWinters:
      return std::unique_ptr<LoadPredictor>(
          new HoltWintersPredictor(options, SeasonLength(options)));
    case PredictorKind::kKalman:
      return std::unique_ptr<LoadPredictor>(new KalmanPredictor(options));
  }
  return absl::InvalidArgumentError("unknown predictor kind");
}

absl::StatusOr<BacktestResult> Backtest(const PredictorOptions& options,
                                        const std::vector<double>& trace, double interval_seconds,
                                        int horizon_steps, int warmup_steps, double min_actual) {
  if (horizon_steps < 1 || warmup_steps < 0 || !(interval_seconds > 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("backtest needs horizon_steps >= 1, warmup_steps >= 0 and an interval > 0"));
  }
  absl::StatusOr<std::unique_ptr<LoadPredictor>> predictor = MakePredictor(options);
  if (!predictor.ok()) return predictor.status();
  BacktestResult result;
  result.predictor = std::string((*predictor)->name());
  double absolute_percentage = 0, squared = 0;
  int rmse_count = 0;
  for (size_t t = 0; t < trace.size(); ++t) {
    (*predictor)->Observe(t * interval_seconds, trace[t]);
    size_t target = t + horizon_steps;
    if (static_cast<int>(t) < warmup_steps || target >= trace.size()) continue;
    double forecast = (*predictor)->Predict(horizon_steps * interval_seconds);
    double actual = trace[target];
    squared += (forecast - actual) * (forecast - actual);
    ++rmse_count;
    if (std::abs(actual) >= min_actual) {
      absolute_percentage += std::abs(forecast - actual) / std::abs(actual);
      ++result.scored;
    }
  }
  if (result.scored == 0) {
    return absl::InvalidArgumentError("backtest: the trace is too short to score any forecast");
  }
  result.mape_percent = 100 * absolute_percentage / result.scored;
  result.rmse = std::sqrt(squared / rmse_count);
  return result;
}

namespace {

std::vector<double> WithNoise(std::vector<double> trace, const TraceOptions& options) {
  std::mt19937_64 rng(options.seed);
  std::normal_distribution<double> noise(0.0, options.noise);
  for (double& value : trace) value = std::max(0.0, value * (1 + noise(rng)));
  return trace;
}

}  // namespace

std::vector<double> StepTrace(const TraceOptions& options) {
  std::vector<double> trace(options.samples, options.base);
  for (int i = options.samples / 2; i < options.samples; ++i) trace[i] = 3 * options.base;
  return WithNoise(std::move(trace), options);
}

std::vector<double> RampTrace(const TraceOptions& options) {
  std::vector<double> trace(options.samples);
  for (int i = 0; i < options.samples; ++i) {
    double fraction = options.samples > 1 ? static_cast<double>(i) / (options.samples - 1) : 0;
    trace[i] = options.base * (1 + 3 * fraction);
  }
  return WithNoise(std::move(trace), options);
}

std::vector<double> DiurnalTrace(const TraceOptions& options, double period_seconds) {
  std::vector<double> trace(options.samples);
  for (int i = 0; i < options.samples; ++i) {
    double phase = std::fmod(i * options.interval_seconds, period_seconds) / period_seconds;
    // Night trough at phase 0, peak at midday, a second bump in the evening.
    double cycle = 1 + 0.8 * std::sin(2 * kPi * (phase - 0.25));
    double evening = 0.4 * std::exp(-std::pow((phase - 0.8) / 0.04, 2));
    trace[i] = options.base * (cycle + evening);
  }
  return WithNoise(std::move(trace), options);
}

std::vector<double> BurstyTrace(const TraceOptions& options) {
  std::vector<double> trace(options.samples, options.base);
  std::mt19937_64 rng(options.seed ^ 0x9e3779b97f4a7c15ULL);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int i = 0; i < options.samples;) {
    if (unit(rng) < 0.05) {
      int length = 2 + static_cast<int>(unit(rng) * 4);
      double height = 3 + 3 * unit(rng);
      for (int k = 0; k < length && i < options.samples; ++k, ++i) {
        trace[i] = options.base * height;
      }
    } else {
      ++i;
    }
  }
  return WithNoise(std::move(trace), options);
}

}  // namespace tandem::planner
