// Measures the engine's latency profile (core/latency_profile.h): prefill time against uncached
// prompt tokens (with and without a cached prefix) and decode step time against batch size and
// context length, on the real forward pass with the real thread pool. The method is described in
// docs/latency-profile.md.
//
//   TANDEM_ASSIGN_OR_RETURN(LatencyProfile profile,
//                           MeasureLatencyProfile(model, {.threads = 2}));
//   TANDEM_RETURN_IF_ERROR(WriteLatencyProfile(Env::Default(), "profile.json", profile));
//
// Thread-safety: runs on the calling thread (plus its own pool); one at a time.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/latency_profile.h"
#include "engine/engine.h"

namespace tandem::engine {

struct ProfileOptions {
  int threads = 0;  // 0 = one per core
  int block_size = 16;
  std::optional<KvType> kv_type;   // unset = auto, as the engine resolves it
  int64_t max_batch_tokens = 512;  // prefill is timed in chunks of this size, as the engine runs it
  // Prompt lengths (uncached, no prefix) to time; capped below the context.
  std::vector<int64_t> prefill_tokens = {16, 64, 128, 256, 512, 1024};
  // (cached prefix, uncached tokens) pairs timed on top of a cached prefix.
  std::vector<std::pair<int64_t, int64_t>> prefix_points = {{512, 128}, {1024, 128}};
  std::vector<int64_t> batch_sizes = {1, 2, 4, 8, 16, 32};
  std::vector<int64_t> contexts = {128, 512, 2048};  // per sequence
  int repeats = 3;                                   // each point is the median of this many runs
  // Progress lines ("prefill 512 tokens: 0.31 s"); may be empty.
  std::function<void(const std::string&)> progress;
};

absl::StatusOr<LatencyProfile> MeasureLatencyProfile(const EngineModel& model,
                                                     const ProfileOptions& options);

// "AMD EPYC 9454, 48 cores" from /proc/cpuinfo (or "unknown CPU").
std::string CpuDescription();

}  // namespace tandem::engine
