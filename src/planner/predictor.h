// Load predictors: forecast a load series (prompt tokens/s, generated tokens/s, active tokens) a
// short horizon ahead so the planner scales before the load arrives.
//
// Every predictor has the same interface: `Observe(t, value)` feeds one sample taken at time `t`
// (seconds, non-decreasing), `Predict(horizon)` forecasts the value `horizon` seconds after the
// last sample. Samples are expected at a roughly regular interval (the planner's evaluation
// interval); the seasonal and trend models measure that interval from the timestamps.
//
//   auto predictor = MakePredictor({.kind = PredictorKind::kHoltWinters,
//                                   .season_period_seconds = 86400, .interval_seconds = 60});
//   for (...) (*predictor)->Observe(now, tokens_per_second);
//   double expected = (*predictor)->Predict(/*horizon_seconds=*/120);
//
// Pure: no clocks (time is an argument), no I/O, deterministic.
// Thread-safety: a predictor is a single-threaded value; use one per thread or guard it.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::planner {

enum class PredictorKind { kLastValue, kEwma, kHoltWinters, kKalman };

// "last_value", "ewma", "holt_winters", "kalman".
std::string_view PredictorKindName(PredictorKind kind);
absl::StatusOr<PredictorKind> ParsePredictorKind(std::string_view name);

struct PredictorOptions {
  PredictorKind kind = PredictorKind::kLastValue;
  // EWMA weight of the newest sample; Holt-Winters level smoothing.
  double alpha = 0.5;
  // Holt-Winters trend smoothing.
  double beta = 0.05;
  // Holt-Winters seasonal smoothing.
  double gamma = 0.3;
  // Holt-Winters season length (e.g. 86400 for a daily pattern) and the sampling interval that
  // turns it into a number of samples.
  double season_period_seconds = 0;
  double interval_seconds = 0;
  // Kalman local-level + trend model: process noise of level and trend relative to the
  // measurement noise (only the ratios matter, so the model is independent of the load's units).
  double kalman_level_noise = 0.1;
  double kalman_trend_noise = 0.001;
};

// Checks ranges (0 < alpha <= 1, ...; a Holt-Winters season of at least 2 samples).
absl::Status ValidatePredictorOptions(const PredictorOptions& options);

class LoadPredictor {
 public:
  virtual ~LoadPredictor() = default;
  virtual void Observe(double time_seconds, double value) = 0;
  // The forecast `horizon_seconds` after the last sample; never negative; 0 before any sample.
  virtual double Predict(double horizon_seconds) const = 0;
  virtual std::string_view name() const = 0;
};

absl::StatusOr<std::unique_ptr<LoadPredictor>> MakePredictor(const PredictorOptions& options);

// Backtest: feed `trace` (one sample every `interval_seconds`) to a fresh predictor and compare
// each forecast `horizon_steps` ahead with what happened.
struct BacktestResult {
  std::string predictor;
  double mape_percent = 0;  // mean absolute percentage error over the scored samples
  double rmse = 0;
  int scored = 0;
};
// Samples before `warmup_steps` are observed but not scored (so every predictor is judged on the
// same window after the seasonal one has seen a season); samples whose actual value is below
// `min_actual` are left out of MAPE (a percentage of ~0 means nothing).
absl::StatusOr<BacktestResult> Backtest(const PredictorOptions& options,
                                        const std::vector<double>& trace, double interval_seconds,
                                        int horizon_steps, int warmup_steps,
                                        double min_actual = 1e-9);

// Synthetic load traces, deterministic for a seed.
struct TraceOptions {
  int samples = 0;
  double interval_seconds = 60;
  double base = 1000;   // the load level
  double noise = 0.05;  // relative Gaussian noise per sample
  uint64_t seed = 1;
};
// base, then 3 x base from the middle on.
std::vector<double> StepTrace(const TraceOptions& options);
// From base to 4 x base linearly over the trace.
std::vector<double> RampTrace(const TraceOptions& options);
// A cycle of `period_seconds` between 0.2 x base (phase 0) and 1.8 x base (half period), with a
// second, evening bump of 0.4 x base at 0.8 of the period.
std::vector<double> DiurnalTrace(const TraceOptions& options, double period_seconds);
// base with bursts of 3-6 x base lasting a few samples, arriving at random.
std::vector<double> BurstyTrace(const TraceOptions& options);

}  // namespace tandem::planner
