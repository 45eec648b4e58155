#include "planner/predictor.h"

#include <cstdio>
#include <map>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::planner {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kSeed = 424242;
constexpr double kInterval = 300;  // one sample every 5 minutes
constexpr double kDay = 86400;     // the diurnal period
constexpr int kSamples = 4 * 288;  // four days
constexpr int kHorizon = 2;        // forecast 10 minutes ahead
constexpr int kWarmup = 288;       // every predictor is scored from day 2 on

PredictorOptions Options(PredictorKind kind) {
  return {.kind = kind,
          .alpha = kind == PredictorKind::kEwma ? 0.5 : 0.3,
          .beta = 0.01,
          .gamma = 0.3,
          .season_period_seconds = kDay,
          .interval_seconds = kInterval};
}

// MAPE of every predictor on every synthetic trace, printed as a table (the figures quoted in
// docs/planner.md come from this output).
std::map<std::string, std::map<std::string, double>> BacktestAll() {
  TraceOptions trace{.samples = kSamples,
                     .interval_seconds = kInterval,
                     .base = 1000,
                     .noise = 0.05,
                     .seed = kSeed};
  std::map<std::string, std::vector<double>> traces = {{"step", StepTrace(trace)},
                                                       {"ramp", RampTrace(trace)},
                                                       {"diurnal", DiurnalTrace(trace, kDay)},
                                                       {"bursty", BurstyTrace(trace)}};
  std::map<std::string, std::map<std::string, double>> mape;
  std::printf("backtest (seed %llu, %d samples every %.0f s, horizon %d steps), MAPE %%:\n",
              static_cast<unsigned long long>(kSeed), kSamples, kInterval, kHorizon);
  std::printf("  %-10s %10s %10s %10s %10s\n", "trace", "last_value", "ewma", "holt_winters",
              "kalman");
  for (const auto& [name, values] : traces) {
    std::printf("  %-10s", name.c_str());
    for (PredictorKind kind : {PredictorKind::kLastValue, PredictorKind::kEwma,
                               PredictorKind::kHoltWinters, PredictorKind::kKalman}) {
      absl::StatusOr<BacktestResult> result =
          Backtest(Options(kind), values, kInterval, kHorizon, kWarmup);
      EXPECT_TRUE(result.ok()) << result.status();
      if (!result.ok()) continue;
      EXPECT_GT(result->scored, kSamples - kWarmup - kHorizon - 1);
      mape[name][result->predictor] = result->mape_percent;
      std::printf(" %10.2f", result->mape_percent);
    }
    std::printf("\n");
  }
  return mape;
}

TEST(PredictorBacktestTest, SeasonalPredictorBeatsLastValueOnDiurnalLoad) {
  SCOPED_TRACE(::testing::Message() << "seed " << kSeed);
  auto mape = BacktestAll();
  EXPECT_LT(mape["diurnal"]["holt_winters"], mape["diurnal"]["last_value"]);
  // A trend model gets ahead of a ramp; last value always lags it.
  EXPECT_LT(mape["ramp"]["kalman"], mape["ramp"]["last_value"]);
  // Every predictor stays sane on every trace.
  for (const auto& [trace, by_predictor] : mape) {
    for (const auto& [predictor, value] : by_predictor) {
      EXPECT_LT(value, 100) << predictor << " on " << trace;
    }
  }
}

TEST(PredictorTest, EachPredictorFollowsItsDefinition) {
  auto make = [](PredictorOptions options) {
    auto predictor = MakePredictor(options);
    EXPECT_TRUE(predictor.ok()) << predictor.status();
    return std::move(*predictor);
  };
  auto last = make({.kind = PredictorKind::kLastValue});
  EXPECT_EQ(last->Predict(10), 0);
  last->Observe(0, 5);
  last->Observe(1, 7);
  EXPECT_EQ(last->Predict(10), 7);

  // EWMA with alpha 0.5: 4, then 0.5*8 + 0.5*4 = 6, then 0.5*0 + 0.5*6 = 3.
  auto ewma = make({.kind = PredictorKind::kEwma, .alpha = 0.5});
  ewma->Observe(0, 4);
  ewma->Observe(1, 8);
  EXPECT_DOUBLE_EQ(ewma->Predict(1), 6);
  ewma->Observe(2, 0);
  EXPECT_DOUBLE_EQ(ewma->Predict(1), 3);

  // Kalman on an exact line 10 + 2t learns the slope: the forecast 5 steps out is close to
  // 10 + 2 * (99 + 5) = 218.
  auto kalman = make({.kind = PredictorKind::kKalman, .interval_seconds = 1});
  for (int t = 0; t < 100; ++t) kalman->Observe(t, 10 + 2 * t);
  EXPECT_NEAR(kalman->Predict(5), 218, 1.0);

  // Holt-Winters on an exact repeating pattern (period 4 samples) forecasts the pattern.
  auto seasonal = make(
      {.kind = PredictorKind::kHoltWinters, .season_period_seconds = 4, .interval_seconds = 1});
  const double pattern[] = {10, 20, 30, 20};
  for (int t = 0; t < 40; ++t) seasonal->Observe(t, pattern[t % 4]);
  // Next samples are t = 40 (10), 41 (20), 42 (30).
  EXPECT_NEAR(seasonal->Predict(1), 10, 1e-6);
  EXPECT_NEAR(seasonal->Predict(3), 30, 1e-6);

  // Forecasts never go negative, even on a falling trend.
  auto falling = make({.kind = PredictorKind::kKalman, .interval_seconds = 1});
  for (int t = 0; t < 20; ++t) falling->Observe(t, 100 - 5 * t);
  EXPECT_EQ(falling->Predict(100), 0);
}

TEST(PredictorTest, RefusesBadOptions) {
  EXPECT_THAT(MakePredictor({.kind = PredictorKind::kEwma, .alpha = 0}).status().message(),
              HasSubstr("alpha must be in (0, 1]"));
  EXPECT_THAT(MakePredictor({.kind = PredictorKind::kHoltWinters, .interval_seconds = 10})
                  .status()
                  .message(),
              HasSubstr("season_period_s > 0"));
  EXPECT_THAT(MakePredictor({.kind = PredictorKind::kHoltWinters,
                             .season_period_seconds = 10,
                             .interval_seconds = 10})
                  .status()
                  .message(),
              HasSubstr("at least 2 evaluation intervals"));
  EXPECT_THAT(ParsePredictorKind("arima").status().message(),
              HasSubstr("unknown predictor 'arima' (expected last_value, ewma, holt_winters or "
                        "kalman)"));
  EXPECT_FALSE(Backtest(Options(PredictorKind::kEwma), {1, 2}, kInterval, 5, 0).ok());
}

TEST(TraceTest, TracesAreDeterministicAndShaped) {
  TraceOptions options{.samples = 288, .interval_seconds = 300, .base = 100, .noise = 0, .seed = 7};
  std::vector<double> diurnal = DiurnalTrace(options, kDay);
  EXPECT_NEAR(diurnal[0], 20, 1e-9);     // midnight trough: 0.2 x base
  EXPECT_NEAR(diurnal[144], 180, 1e-6);  // noon peak: 1.8 x base
  std::vector<double> step = StepTrace(options);
  EXPECT_EQ(step[10], 100);
  EXPECT_EQ(step[200], 300);
  options.noise = 0.1;
  EXPECT_EQ(BurstyTrace(options), BurstyTrace(options));
  std::vector<double> bursty = BurstyTrace(options);
  EXPECT_GT(*std::max_element(bursty.begin(), bursty.end()), 250);
}

}  // namespace
}  // namespace tandem::planner
