// The one latency model of Tandem: how long prefill takes for a prompt and how long one decode
// step takes for a batch, measured on the real engine by `tandem profile` and shared by the
// router's cost model, the disaggregation decision, the planner and the simulator.
//
// A `LatencyProfile` is the measured data (the JSON file, format in
// docs/latency-profile-format.md); a `LatencyModel` is built from it and answers queries:
//
//   - prefill seconds as a function of uncached prompt tokens, plus a cost for the cached prefix
//     the new tokens attend to (fitted from points measured with a cached prefix);
//   - decode step seconds as a function of batch size and total context tokens in the batch.
//
// Between measured points the model is piecewise linear and monotone (more work never takes less
// time); beyond them it follows a least-squares linear fit, so extrapolation grows with the slope
// the measurements show rather than flattening out.
//
//   TANDEM_ASSIGN_OR_RETURN(LatencyProfile profile, ReadLatencyProfile(env, "profile.json"));
//   TANDEM_ASSIGN_OR_RETURN(LatencyModel model, LatencyModel::Create(profile));
//   double ttft_floor = model.PrefillSeconds(/*uncached_tokens=*/900, /*cached_tokens=*/100);
//   double step = model.DecodeStepSeconds(/*batch_size=*/16, /*context_tokens=*/16 * 1024);
//   TANDEM_ASSIGN_OR_RETURN(PrefillCapacity capacity,
//                           MaxPrefillThroughput(model, {.ttft_target_seconds = 0.5,
//                                                        .uncached_tokens = 900}));
//
// Thread-safety: LatencyProfile is a plain value. LatencyModel is immutable after Create and safe
// to query from any number of threads. The free functions are stateless.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "core/env.h"

namespace tandem {

// The `format` string and the newest `version` this code reads and writes.
inline constexpr std::string_view kLatencyProfileFormat = "tandem-latency-profile";
inline constexpr int kLatencyProfileVersion = 1;

struct LatencyProfile {
  // The model the profile was measured with (its shape decides the costs).
  struct Model {
    std::string name;
    int64_t layers = 0;
    int64_t hidden_size = 0;
    int64_t attention_heads = 0;
    int64_t kv_heads = 0;
    int64_t head_dim = 0;
    int64_t vocab_size = 0;
    int64_t parameters = 0;  // 0 when unknown
  };
  // Where it was measured.
  struct Hardware {
    std::string description;  // e.g. "AMD EPYC 9454, 48 cores" or "NVIDIA H100 80GB"
    std::string device = "cpu";
    int64_t threads = 0;          // worker threads used by the engine (0 when not applicable)
    int64_t tensor_parallel = 1;  // GPUs (or processes) one instance spans
  };
  // One timed prefill: `uncached_tokens` computed on top of `cached_tokens` already in the cache.
  struct PrefillPoint {
    int64_t uncached_tokens = 0;
    int64_t cached_tokens = 0;
    double seconds = 0;
  };
  // One timed decode step of `batch_size` sequences holding `context_tokens` in total.
  struct DecodePoint {
    int64_t batch_size = 0;
    int64_t context_tokens = 0;
    double step_seconds = 0;
  };

  int version = kLatencyProfileVersion;
  Model model;
  std::string dtype;     // weights/activations, e.g. "f32", "bf16", "q8_0"
  std::string kv_dtype;  // the KV cache's element type, "f32" or "bf16"; empty = not stated
  Hardware hardware;
  std::string measured_at;  // RFC 3339 time, free text for people
  std::vector<PrefillPoint> prefill;
  std::vector<DecodePoint> decode;
};

// Checks what the model needs: a model name, at least two prefill points without a cached prefix
// at distinct token counts, at least one decode point, positive finite times, positive counts.
// The message names the field ("decode[3].step_seconds must be > 0, got -1").
absl::Status ValidateLatencyProfile(const LatencyProfile& profile);

// JSON text <-> profile. Parse validates; `source` names the text in messages (a file path).
// Unknown keys are refused so that a typo does not silently drop a measurement.
absl::StatusOr<LatencyProfile> ParseLatencyProfile(std::string_view json, std::string_view source);
std::string SerializeLatencyProfile(const LatencyProfile& profile);

absl::StatusOr<LatencyProfile> ReadLatencyProfile(Env& env, const std::string& path);
// Validates before writing; writes atomically through Env.
absl::Status WriteLatencyProfile(Env& env, const std::string& path, const LatencyProfile& profile);

// The queryable model. Copyable value.
class LatencyModel {
 public:
  static absl::StatusOr<LatencyModel> Create(const LatencyProfile& profile);

  // Seconds to prefill `uncached_tokens` new tokens after a cached prefix of `cached_tokens`.
  // Monotone non-decreasing in both arguments; > 0 for uncached_tokens > 0, 0 for 0 tokens.
  double PrefillSeconds(int64_t uncached_tokens, int64_t cached_tokens = 0) const;

  // Seconds for one decode step of `batch_size` sequences with `context_tokens` in total.
  // Monotone non-decreasing in both arguments; > 0 for batch_size >= 1.
  double DecodeStepSeconds(int64_t batch_size, int64_t context_tokens) const;
  // The same with the mean context length per sequence.
  double DecodeStepSecondsMeanContext(int64_t batch_size, double mean_context_tokens) const;

  // Seconds per (uncached token x cached token) the cached prefix adds to prefill; 0 when the
  // profile has no point with a cached prefix.
  double cached_prefix_cost() const { return cached_prefix_cost_; }
  const LatencyProfile& profile() const { return profile_; }

 private:
  // A monotone piecewise-linear curve with linear extrapolation past its last point.
  struct Curve {
    std::vector<double> x;
    std::vector<double> y;
    double slope_after = 0;    // used past x.back()
    double value_at_zero = 0;  // the curve runs linearly from (0, value_at_zero) to x.front()
    double At(double at) const;
  };
  static Curve MakeCurve(std::vector<std::pair<double, double>> points, double fallback_slope);

  LatencyProfile profile_;
  Curve prefill_;
  double cached_prefix_cost_ = 0;
  // One curve over total context per measured batch size, ascending batch sizes.
  std::vector<int64_t> decode_batches_;
  std::vector<Curve> decode_rows_;
  double decode_batch_slope_ = 0;    // seconds per extra sequence, past the largest batch
  double decode_context_slope_ = 0;  // seconds per extra context token (rows with one point)
};

// Capacity of one prefill instance that keeps the mean TTFT within a target.
struct PrefillCapacityQuery {
  double ttft_target_seconds = 0;
  // The typical request: its new tokens and the cached prefix they follow.
  double uncached_tokens = 0;
  double cached_tokens = 0;
  // Observed / profiled latency; scales the profiled service time (1 = trust the profile).
  double correction = 1.0;
};
struct PrefillCapacity {
  double tokens_per_second = 0;  // uncached prompt tokens per second one instance sustains
  double utilization = 0;        // the busy fraction at that rate
  double service_seconds = 0;    // corrected prefill time of the typical request
};
// Requests arrive as a Poisson stream and one instance serves them one at a time (M/D/1): the mean
// TTFT is S + rho*S / (2*(1 - rho)) with S the service time and rho the utilization, so
// TTFT <= T holds while rho <= 2*(T - S) / (2*T - S). FailedPrecondition when S alone exceeds the
// target (no load is sustainable), InvalidArgument for a non-positive target or token count.
absl::StatusOr<PrefillCapacity> MaxPrefillThroughput(const LatencyModel& model,
                                                     const PrefillCapacityQuery& query);

// Capacity of one decode instance that keeps the inter-token latency (the step time) within a
// target.
struct DecodeCapacityQuery {
  double itl_target_seconds = 0;
  double mean_context_tokens = 0;  // per sequence
  int64_t max_batch_size = 1024;   // the engine's limit
  double correction = 1.0;         // observed / profiled step time
};
struct DecodeCapacity {
  int64_t max_concurrency = 0;   // sequences one instance decodes together within the target
  double step_seconds = 0;       // corrected step time at that batch size
  double tokens_per_second = 0;  // max_concurrency / step_seconds
};
// FailedPrecondition when even one sequence exceeds the target.
absl::StatusOr<DecodeCapacity> MaxDecodeConcurrency(const LatencyModel& model,
                                                    const DecodeCapacityQuery& query);

// The M/D/1 mean TTFT at utilization `rho` < 1 for service time `service_seconds` (+inf at
// rho >= 1). Exposed so the planner can compare observed with predicted latency.
double MeanTtftSeconds(double service_seconds, double rho);

}  // namespace tandem
