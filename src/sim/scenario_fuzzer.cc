// Fuzzes scenario parsing (any text: a clear error or a valid scenario, never a crash), then
// simulates small valid scenarios with the request count capped, so the simulator itself meets
// odd-but-valid configurations (zero counts, tiny batches, failures, placement, variants).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/env.h"
#include "sim/scenario.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 1 << 16) return 0;
  tandem::FakeEnv env;
  env.SetFile("trace.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0,100,10\n0.5,50,5\n");
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<tandem::sim::Scenario> scenario =
      tandem::sim::ParseScenario(env, text, "fuzz.yaml");
  if (!scenario.ok()) return 0;
  // Keep runs short: no goodput searches, at most 200 requests, coarse sampling.
  scenario->goodput.reset();
  scenario->slo_grid.clear();
  for (tandem::sim::Variant& variant : scenario->variants) {
    tandem::sim::SimConfig& c = variant.config;
    if (c.planner.has_value() || c.timeline_interval_s < 1 || c.cluster.nodes > 256) return 0;
    if (c.workload.arrivals.rate > 0 && c.workload.arrivals.rate < 1) return 0;
    if (c.workload.num_requests == 0 || c.workload.num_requests > 200)
      c.workload.num_requests = 200;
    if (c.workload.duration_s > 1000) c.workload.duration_s = 1000;
    for (const tandem::sim::InstanceGroup& g : c.groups) {
      if (g.max_batch_tokens < 16 || g.count > 512) return 0;
    }
  }
  (void)tandem::sim::RunScenario(*scenario);
  return 0;
}
