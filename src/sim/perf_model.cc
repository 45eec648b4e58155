#include "sim/perf_model.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace tandem::sim {
namespace {

// Vendor datasheet figures (dense, without sparsity).
const GpuPreset kGpuPresets[] = {
    {"h100-sxm", 989e12, 1979e12, 3.35e12, 80e9, 450e9},
    {"h200", 989e12, 1979e12, 4.8e12, 141e9, 450e9},
    {"a100-80gb", 312e12, 0, 2.039e12, 80e9, 300e9},
    {"b200", 2250e12, 4500e12, 8.0e12, 180e9, 900e9},
};

const ModelShape kModelShapes[] = {
    {"llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256},
    {"llama-3-70b", 80, 8192, 64, 8, 128, 28672, 128256},
    {"qwen2.5-0.5b", 24, 896, 14, 2, 64, 4864, 151936},
    {"qwen2.5-7b", 28, 3584, 28, 4, 128, 18944, 152064},
};

}  // namespace

absl::StatusOr<GpuPreset> FindGpuPreset(const std::string& name) {
  std::string lower = absl::AsciiStrToLower(name);
  for (const GpuPreset& preset : kGpuPresets) {
    if (preset.name == lower) return preset;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "GPU preset '", name, "' is not known (known: ", absl::StrJoin(GpuPresetNames(), ", "), ")"));
}

std::vector<std::string> GpuPresetNames() {
  std::vector<std::string> names;
  for (const GpuPreset& preset : kGpuPresets) names.push_back(preset.name);
  return names;
}

double ModelShape::Parameters() const {
  double attention = static_cast<double>(hidden) * head_dim * (heads + 2 * kv_heads) +
                     static_cast<double>(heads) * head_dim * hidden;
  double mlp = 3.0 * hidden * intermediate;
  double embeddings = 2.0 * vocab * hidden;  // input embedding and LM head
  return layers * (attention + mlp + 2.0 * hidden) + embeddings;
}

double ModelShape::KvBytesPerToken(double bytes_per_element) const {
  return 2.0 * layers * kv_heads * head_dim * bytes_per_element;
}

absl::StatusOr<ModelShape> FindModelShape(const std::string& name) {
  std::string lower = absl::AsciiStrToLower(name);
  for (const ModelShape& shape : kModelShapes) {
    if (shape.name == lower) return shape;
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "model shape '", name, "' is not known (known: ", absl::StrJoin(ModelShapeNames(), ", "),
      "; or give explicit dimensions)"));
}

std::vector<std::string> ModelShapeNames() {
  std::vector<std::string> names;
  for (const ModelShape& shape : kModelShapes) names.push_back(shape.name);
  return names;
}

absl::Status ValidateModelShape(const ModelShape& s) {
  if (s.layers <= 0 || s.hidden <= 0 || s.heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 ||
      s.intermediate <= 0 || s.vocab <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model shape '", s.name,
        "': layers, hidden, heads, kv_heads, head_dim, intermediate and vocab must all be > 0"));
  }
  if (s.heads % s.kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("model shape '", s.name, "': heads (", s.heads,
                                                   ") must be a multiple of kv_heads (", s.kv_heads,
                                                   ")"));
  }
  return absl::OkStatus();
}

RooflineModel::RooflineModel(GpuPreset gpu, ModelShape shape, RooflineOptions options)
    : gpu_(std::move(gpu)), shape_(std::move(shape)), options_(options) {
  parameters_ = shape_.Parameters();
  // Dense layers: 2 FLOPs per parameter per token (the input embedding is a lookup).
  dense_flops_per_token_ = 2.0 * (parameters_ - static_cast<double>(shape_.vocab) * shape_.hidden);
  weight_bytes_ = parameters_ * (options_.fp8 ? 1.0 : 2.0);
  kv_bytes_per_token_ = shape_.KvBytesPerToken(options_.kv_bytes_per_element);
}

double RooflineModel::Flops(const StepWork& w) const {
  double tokens = static_cast<double>(w.prefill_tokens + w.decode_sequences);
  double dense = dense_flops_per_token_ * tokens;
  // Attention: QK^T and AV, 2 FLOPs per multiply-add, per head dimension, per attended token.
  double attention_width = static_cast<double>(shape_.heads) * shape_.head_dim;
  double prefill_pairs = static_cast<double>(w.prefill_tokens) *
                         (w.prefill_context_tokens + (w.prefill_tokens + 1) / 2.0);
  double decode_pairs = static_cast<double>(w.decode_context_tokens);
  double attention = 4.0 * shape_.layers * attention_width * (prefill_pairs + decode_pairs);
  return dense + attention;
}

double RooflineModel::Bytes(const StepWork& w) const {
  double weight_bytes = weight_bytes_;
  double kv =
      kv_bytes_per_token_ * static_cast<double>(w.decode_context_tokens + w.prefill_context_tokens +
                                                w.prefill_tokens + w.decode_sequences);
  return weight_bytes + kv;
}

double RooflineModel::StepSeconds(const StepWork& w) const {
  if (w.prefill_tokens <= 0 && w.decode_sequences <= 0) return 0;
  double tp = options_.tensor_parallel;
  double peak = (options_.fp8 && gpu_.fp8_flops > 0 ? gpu_.fp8_flops : gpu_.bf16_flops);
  double compute = Flops(w) / (peak * gpu_.compute_efficiency * tp);
  double memory = Bytes(w) / (gpu_.hbm_bytes_per_second * gpu_.bandwidth_efficiency * tp);
  double communication = 0;
  if (options_.tensor_parallel > 1) {
    // Two all-reduces of the activations per layer; a ring moves 2 (tp - 1) / tp of the data.
    double tokens = static_cast<double>(w.prefill_tokens + w.decode_sequences);
    double bytes = 2.0 * shape_.layers * tokens * shape_.hidden * 2.0 * 2.0 * (tp - 1) / tp;
    communication = bytes / gpu_.nvlink_bytes_per_second;
  }
  return std::max(compute, memory) + communication + gpu_.step_overhead_seconds;
}

double RooflineModel::KvBytesPerToken() const { return kv_bytes_per_token_; }

int64_t RooflineModel::KvCapacityTokens() const {
  double memory = gpu_.hbm_bytes * options_.memory_utilization * options_.tensor_parallel;
  double free = memory - weight_bytes_;
  if (free <= 0) return 0;
  return static_cast<int64_t>(free / KvBytesPerToken());
}

ProfileModel::ProfileModel(LatencyModel model, double kv_bytes_per_token,
                           int64_t kv_capacity_tokens)
    : model_(std::move(model)),
      kv_bytes_per_token_(kv_bytes_per_token),
      kv_capacity_tokens_(kv_capacity_tokens) {}

double ProfileModel::StepSeconds(const StepWork& w) const {
  double seconds = 0;
  if (w.prefill_tokens > 0)
    seconds += model_.PrefillSeconds(w.prefill_tokens, w.prefill_context_tokens);
  if (w.decode_sequences > 0) {
    seconds += model_.DecodeStepSeconds(w.decode_sequences, w.decode_context_tokens);
  }
  return seconds;
}

}  // namespace tandem::sim

namespace tandem::sim {

LatencyProfile SynthesizeProfile(const StepCostModel& cost, const std::string& model_name) {
  LatencyProfile profile;
  profile.model.name = model_name.empty() ? "simulated" : model_name;
  profile.dtype = "simulated";
  profile.hardware.description = "simulated instance";
  profile.hardware.device = "simulated";
  for (int64_t tokens : {64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768}) {
    profile.prefill.push_back({tokens, 0, cost.StepSeconds({.prefill_tokens = tokens})});
  }
  for (int64_t cached : {1024, 4096}) {
    profile.prefill.push_back(
        {1024, cached,
         cost.StepSeconds({.prefill_tokens = 1024, .prefill_context_tokens = cached})});
  }
  for (int64_t batch : {1, 2, 4, 8, 16, 32, 64, 128, 256, 512}) {
    for (int64_t context : {256, 1024, 4096, 16384}) {
      profile.decode.push_back({batch, batch * context,
                                cost.StepSeconds({.decode_sequences = batch,
                                                  .decode_context_tokens = batch * context})});
    }
  }
  return profile;
}

}  // namespace tandem::sim
