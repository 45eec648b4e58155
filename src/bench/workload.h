// Workloads: when requests arrive and how long their prompts and answers are.
//
// Shared by `tandem bench` (which sends them to a server) and the simulator (which replays them
// on a modeled cluster), so both see the same requests for the same seed.
//
//   WorkloadSpec spec;
//   spec.arrivals.rate = 20;                                  // requests/s, Poisson
//   spec.input = *ParseLengthSpec("lognormal:1024,0.6");
//   spec.output = *ParseLengthSpec("128");
//   spec.num_requests = 1000;
//   WorkloadGenerator generator(spec, /*seed=*/1);
//   while (std::optional<RequestSpec> r = generator.Next()) { ... }
//
// Thread-safety: a generator is used by one thread; specs are plain data.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/random.h"

namespace tandem::bench {

// A distribution of token counts, written "N" (fixed), "uniform:LOW,HIGH",
// "normal:MEAN,STDDEV" or "lognormal:MEDIAN,SIGMA" (sigma of the natural log). Samples are
// clamped to [min, max].
struct LengthSpec {
  enum class Kind { kFixed, kUniform, kNormal, kLogNormal };
  Kind kind = Kind::kFixed;
  double a = 128;
  double b = 0;
  int64_t min = 1;
  int64_t max = 1 << 20;

  int64_t Sample(Random& rng) const;
  double Mean() const;  // before clamping
  std::string ToString() const;
};
absl::StatusOr<LengthSpec> ParseLengthSpec(const std::string& text);

// A multiplier on the base arrival rate over time, written as a ';'-separated list of
//   "diurnal:PERIOD_S,LOW,HIGH"   a sine between LOW and HIGH with the given period (peak at
//                                 a quarter period),
//   "burst:START_S,DURATION_S,FACTOR"  FACTOR times the rate for DURATION_S from START_S,
//   "ramp:START_S,END_S,FROM,TO"  linear change of the multiplier between two times,
// whose effects multiply. Empty means constant 1.
struct RateCurve {
  struct Component {
    enum class Kind { kDiurnal, kBurst, kRamp };
    Kind kind;
    double p[4];
  };
  std::vector<Component> components;

  double Multiplier(double time_s) const;
  double MaxMultiplier() const;
};
absl::StatusOr<RateCurve> ParseRateCurve(const std::string& text);

struct ArrivalSpec {
  double rate = 0;        // requests/s; 0 or infinity: every request at time 0
  double burstiness = 1;  // gamma shape of inter-arrival gaps: 1 = Poisson, < 1 burstier
  RateCurve curve;
};

struct RequestSpec {
  uint64_t index = 0;
  double arrival_s = 0;
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  int32_t prefix_group = -1;  // requests of one group share their first prefix_tokens tokens
  int64_t prefix_tokens = 0;
};

struct WorkloadSpec {
  ArrivalSpec arrivals;
  LengthSpec input{LengthSpec::Kind::kFixed, 1024};
  LengthSpec output{LengthSpec::Kind::kFixed, 128};
  uint64_t num_requests = 100;  // 0: until duration_s
  double duration_s = 0;        // 0: until num_requests
  int32_t prefix_groups = 0;    // 0: no shared prefixes
  int64_t prefix_tokens = 0;    // shared tokens per group (capped at the request's input)
  std::string trace_path;       // when set: arrivals and lengths come from this CSV
  double trace_time_scale = 1;  // > 1 slows the trace down, < 1 speeds it up
};

absl::Status ValidateWorkload(const WorkloadSpec& spec);

// Reads a CSV trace with a header naming the columns: arrival time in seconds
// (`timestamp`, `arrived_at` or `time`), input tokens (`input_tokens`, `num_prefill_tokens`,
// `prompt_tokens`) and output tokens (`output_tokens`, `num_decode_tokens`,
// `completion_tokens`). Errors name the file and line.
absl::StatusOr<std::vector<RequestSpec>> LoadTrace(const std::string& path,
                                                   double time_scale = 1.0);
absl::StatusOr<std::vector<RequestSpec>> ParseTrace(const std::string& text,
                                                    const std::string& name,
                                                    double time_scale = 1.0);

class WorkloadGenerator {
 public:
  // `trace` is required when spec.trace_path is set (load it with LoadTrace).
  WorkloadGenerator(WorkloadSpec spec, uint64_t seed, std::vector<RequestSpec> trace = {});

  // The next request in arrival order, or nullopt when the workload is exhausted.
  std::optional<RequestSpec> Next();

 private:
  double NextArrival();

  WorkloadSpec spec_;
  Random rng_;
  std::vector<RequestSpec> trace_;
  uint64_t emitted_ = 0;
  double clock_s_ = 0;
};

}  // namespace tandem::bench
