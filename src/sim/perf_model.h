// Performance models for simulated GPUs: how long one engine step takes.
//
// Two sources, one interface (StepCostModel):
//   - RooflineModel: GPU presets (peak dense BF16/FP8 FLOP/s, HBM bandwidth, memory, NVLink)
//     applied to a model shape: a step takes the longer of its FLOPs at the achievable compute
//     rate and its bytes (weights once per step, KV read by attention) at the achievable memory
//     rate, plus tensor-parallel all-reduce time and a fixed per-step overhead.
//   - ProfileModel: the measured latency profile `tandem profile` writes (core/latency_profile.h),
//     the one latency model the router and planner use too.
//
//   TANDEM_ASSIGN_OR_RETURN(GpuPreset gpu, FindGpuPreset("h100-sxm"));
//   TANDEM_ASSIGN_OR_RETURN(ModelShape shape, FindModelShape("llama-3-8b"));
//   RooflineModel model(gpu, shape, {.tensor_parallel = 1});
//   double step = model.StepSeconds({.prefill_tokens = 2048, .decode_sequences = 32,
//                                    .decode_context_tokens = 32 * 1500});
//
// Thread-safety: immutable after construction.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/latency_profile.h"

namespace tandem::sim {

struct GpuPreset {
  std::string name;
  double bf16_flops = 0;  // peak dense BF16 FLOP/s
  double fp8_flops = 0;   // peak dense FP8 FLOP/s
  double hbm_bytes_per_second = 0;
  double hbm_bytes = 0;                  // memory capacity
  double nvlink_bytes_per_second = 0;    // per GPU, one direction
  double compute_efficiency = 0.6;       // achievable fraction of peak FLOP/s in large GEMMs
  double bandwidth_efficiency = 0.8;     // achievable fraction of HBM bandwidth
  double step_overhead_seconds = 0.002;  // scheduling, launch and sampling per engine step
};

absl::StatusOr<GpuPreset> FindGpuPreset(const std::string& name);
std::vector<std::string> GpuPresetNames();

struct ModelShape {
  std::string name;
  int64_t layers = 0;
  int64_t hidden = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  int64_t intermediate = 0;
  int64_t vocab = 0;

  double Parameters() const;
  // Bytes of K and V per token (all layers) at `bytes_per_element`.
  double KvBytesPerToken(double bytes_per_element = 2) const;
};

absl::StatusOr<ModelShape> FindModelShape(const std::string& name);
std::vector<std::string> ModelShapeNames();
absl::Status ValidateModelShape(const ModelShape& shape);

// What one engine step computes: a chunk of prompt tokens (on top of cached context) and one
// token for each of `decode_sequences` sequences holding `decode_context_tokens` in total.
struct StepWork {
  int64_t prefill_tokens = 0;
  int64_t prefill_context_tokens = 0;  // tokens the prefill chunk attends to before itself
  int64_t decode_sequences = 0;
  int64_t decode_context_tokens = 0;
};

class StepCostModel {
 public:
  virtual ~StepCostModel() = default;
  virtual double StepSeconds(const StepWork& work) const = 0;
  virtual double KvBytesPerToken() const = 0;
  // KV tokens one instance holds (memory left after weights).
  virtual int64_t KvCapacityTokens() const = 0;
};

struct RooflineOptions {
  int tensor_parallel = 1;
  bool fp8 = false;  // FP8 weights and compute
  double kv_bytes_per_element = 2;
  double memory_utilization = 0.9;  // fraction of HBM the engine may use
};

class RooflineModel : public StepCostModel {
 public:
  RooflineModel(GpuPreset gpu, ModelShape shape, RooflineOptions options);
  double StepSeconds(const StepWork& work) const override;
  double KvBytesPerToken() const override;
  int64_t KvCapacityTokens() const override;

  double Flops(const StepWork& work) const;
  double Bytes(const StepWork& work) const;

 private:
  GpuPreset gpu_;
  ModelShape shape_;
  RooflineOptions options_;
  // Per-step constants, computed once (StepSeconds runs for every step and routing decision).
  double parameters_ = 0;
  double dense_flops_per_token_ = 0;
  double weight_bytes_ = 0;
  double kv_bytes_per_token_ = 0;
};

// A measured profile. A mixed step costs its prefill part plus its decode part.
class ProfileModel : public StepCostModel {
 public:
  ProfileModel(LatencyModel model, double kv_bytes_per_token, int64_t kv_capacity_tokens);
  double StepSeconds(const StepWork& work) const override;
  double KvBytesPerToken() const override { return kv_bytes_per_token_; }
  int64_t KvCapacityTokens() const override { return kv_capacity_tokens_; }

 private:
  LatencyModel model_;
  double kv_bytes_per_token_;
  int64_t kv_capacity_tokens_;
};

}  // namespace tandem::sim

namespace tandem::sim {

// The latency profile `tandem profile` would measure on instances running `cost`: prefill
// times by prompt length (with and without a cached prefix) and decode step times by batch size
// and context, so the planner can plan with the same model the simulation runs on.
LatencyProfile SynthesizeProfile(const StepCostModel& cost, const std::string& model_name);

}  // namespace tandem::sim
