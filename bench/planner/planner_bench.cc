// Costs of the planner's pure core, measured against a baseline timed in the same run: evaluating
// an inline linear latency formula (what a caller would write without the shared model). The
// router's cost model queries LatencyModel per request, so its cost matters most; the planner
// decides once per interval, so its cost only needs to be negligible next to that interval.
//
// Usage: planner_bench [--quick]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "core/latency_profile.h"
#include "planner/planner.h"
#include "planner/predictor.h"

namespace {

using Clock = std::chrono::steady_clock;

volatile double sink = 0;

// Nanoseconds per call of `body(i)`, best of `rounds` rounds of `iterations` calls.
double TimeNs(int iterations, int rounds, const std::function<double(int)>& body) {
  double best = 1e300;
  for (int round = 0; round < rounds; ++round) {
    auto start = Clock::now();
    double accumulated = 0;
    for (int i = 0; i < iterations; ++i) accumulated += body(i);
    auto elapsed = std::chrono::duration<double, std::nano>(Clock::now() - start).count();
    sink = sink + accumulated;
    best = std::min(best, elapsed / iterations);
  }
  return best;
}

tandem::LatencyModel ExampleModel() {
  tandem::LatencyProfile profile;
  profile.model.name = "bench-8b";
  profile.dtype = "bf16";
  profile.hardware.description = "synthetic";
  for (int64_t tokens : {128, 256, 512, 1024, 2048, 4096, 8192}) {
    profile.prefill.push_back({tokens, 0, 0.01 + 7.8125e-5 * tokens + 2e-9 * tokens * tokens});
  }
  profile.prefill.push_back({1024, 2048, 0.1});
  for (int64_t batch : {1, 2, 4, 8, 16, 32, 64, 128}) {
    for (int64_t per_sequence : {256, 1024, 4096, 16384}) {
      int64_t context = batch * per_sequence;
      profile.decode.push_back({batch, context, 0.015 + 5e-4 * batch + 2.5e-7 * context});
    }
  }
  return *tandem::LatencyModel::Create(profile);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int iterations = quick ? 20000 : 200000;
  const int rounds = quick ? 3 : 7;
  tandem::LatencyModel model = ExampleModel();
  std::vector<int64_t> tokens(4096), batches(4096);
  std::mt19937_64 rng(1);
  for (size_t i = 0; i < tokens.size(); ++i) {
    tokens[i] = 1 + rng() % 12000;
    batches[i] = 1 + rng() % 200;
  }
  auto at = [](const std::vector<int64_t>& v, int i) { return v[i & 4095]; };

  const double baseline = TimeNs(iterations, rounds, [&](int i) {
    return 0.015 + 5e-4 * at(batches, i) + 2.5e-7 * at(tokens, i) * 4;
  });
  struct Row {
    std::string name;
    double ns;
  };
  std::vector<Row> rows;
  rows.push_back({"LatencyModel::PrefillSeconds", TimeNs(iterations, rounds, [&](int i) {
                    return model.PrefillSeconds(at(tokens, i), at(tokens, i + 7) / 4);
                  })});
  rows.push_back({"LatencyModel::DecodeStepSeconds", TimeNs(iterations, rounds, [&](int i) {
                    return model.DecodeStepSeconds(at(batches, i), at(tokens, i) * 4);
                  })});
  rows.push_back({"MaxDecodeConcurrency (bisection)", TimeNs(iterations / 20, rounds, [&](int i) {
                    auto capacity = tandem::MaxDecodeConcurrency(
                        model, {.itl_target_seconds = 0.04,
                                .mean_context_tokens = static_cast<double>(at(tokens, i))});
                    return capacity.ok() ? capacity->tokens_per_second : 0.0;
                  })});
  rows.push_back({"MaxPrefillThroughput", TimeNs(iterations, rounds, [&](int i) {
                    auto capacity = tandem::MaxPrefillThroughput(
                        model, {.ttft_target_seconds = 2.0,
                                .uncached_tokens = static_cast<double>(at(tokens, i))});
                    return capacity.ok() ? capacity->tokens_per_second : 0.0;
                  })});

  for (auto kind :
       {tandem::planner::PredictorKind::kLastValue, tandem::planner::PredictorKind::kHoltWinters,
        tandem::planner::PredictorKind::kKalman}) {
    auto predictor = *tandem::planner::MakePredictor(
        {.kind = kind, .season_period_seconds = 86400, .interval_seconds = 60});
    double t = 0;
    rows.push_back({std::string("predictor ") +
                        std::string(tandem::planner::PredictorKindName(kind)) + " Observe+Predict",
                    TimeNs(iterations, rounds, [&](int i) {
                      predictor->Observe(t += 60, 1000 + at(tokens, i));
                      return predictor->Predict(120);
                    })});
  }

  tandem::planner::PlannerConfig config;
  config.mode = tandem::planner::PlannerMode::kThroughput;
  config.profile_path = "bench";
  config.ttft_target_seconds = 0.4;
  config.itl_target_seconds = 0.04;
  config.bounds.prefill = {.min_instances = 1, .max_instances = 64, .gpus_per_instance = 2};
  config.bounds.decode = {.min_instances = 1, .max_instances = 64, .gpus_per_instance = 4};
  config.bounds.gpu_budget = 128;
  config.bounds.min_ratio = 0.25;
  config.bounds.max_ratio = 4;
  auto planner = *tandem::planner::Planner::Create(config, model);
  double now = 0;
  rows.push_back(
      {"Planner::Decide (throughput, budget-bound)", TimeNs(iterations / 20, rounds, [&](int i) {
         tandem::planner::Observation o;
         o.time_seconds = now += 10;
         o.prefill_instances = 4;
         o.decode_instances = 4;
         o.prompt_tokens_per_second = 20000 + 50 * at(batches, i);
         o.mean_prompt_tokens = 1500;
         o.prefix_hit_rate = 0.3;
         o.output_tokens_per_second = 2000 + 10 * at(batches, i);
         o.mean_context_tokens = 2000;
         o.active_sequences = 60;
         o.itl_seconds = 0.03;
         o.ttft_seconds = 0.2;
         return static_cast<double>(planner.Decide(o).gpus);
       })});

  std::printf("planner bench (%s): baseline = inline linear latency formula, %.2f ns/call\n",
              quick ? "quick" : "full", baseline);
  std::printf("  %-45s %12s %14s\n", "operation", "ns/call", "x baseline");
  for (const Row& row : rows) {
    std::printf("  %-45s %12.1f %14.1f\n", row.name.c_str(), row.ns, row.ns / baseline);
  }
  return 0;
}
