// Simulator speed on 1,000-GPU clusters serving the chat workload (~1k prompt tokens, ~130
// output tokens, Poisson arrivals near the cluster's capacity): simulated requests per wall
// second (and per CPU second, which a busy shared core disturbs less) and events per wall
// second, against the routing policy alone over the same number of
// instances, timed in the same run three ways: the plain scan over WorkerStates the policy was
// before WorkerTable (router/routing_policy_reference.h), DecideRoute over a span (what the live
// router calls) and DecideRoute over a WorkerTable (what the simulator calls). The last bounds
// what a simulator that routes every request through the real policy can reach. "output" is a
// fingerprint of the simulation's results: the same seed gives the same one, before and after
// a change that must not alter decisions.
//
// Usage: sim_bench [--quick]
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <random>
#include <vector>

#include "router/routing_policy.h"
#include "router/routing_policy_reference.h"
#include "sim/perf_model.h"
#include "sim/simulator.h"

namespace tandem::sim {
namespace {

struct Case {
  const char* name;
  const char* model;
  int tensor_parallel;
  int prefill;  // instances
  int decode;
  int aggregated;
  double rate;
};

// CPU time of this thread: on a core shared with other work it counts only the simulator's
// share, where wall time counts the others' too.
double CpuSeconds() {
  timespec now;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

double Seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::vector<router::WorkerState> BenchWorkers(int prefill, int decode, int aggregated) {
  std::vector<router::WorkerState> workers;
  for (int i = 0; i < prefill + decode + aggregated; ++i) {
    router::WorkerState w;
    w.id = i;
    w.role = i < prefill            ? router::WorkerRole::kPrefill
             : i < prefill + decode ? router::WorkerRole::kDecode
                                    : router::WorkerRole::kBoth;
    w.location = {i / 8, i / 32};
    w.capacity_blocks = 26000;
    w.active_decode_blocks = (i * 7919) % 5000;
    w.prefill_queue_requests = i % 3;
    w.prefill_queue_tokens = (i % 3) * 1000;
    workers.push_back(w);
  }
  return workers;
}

enum class RouteForm { kPlainScan, kSpan, kTable };

// The routing policy alone, over idle-ish workers, in decisions per second.
double RoutingCallsPerSecond(RouteForm form, int prefill, int decode, int aggregated, int calls) {
  const std::vector<router::WorkerState> workers = BenchWorkers(prefill, decode, aggregated);
  router::WorkerTable table;
  for (const router::WorkerState& w : workers) table.Add(w);
  router::RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 512;
  router::LinearPrefillLatencyModel latency(0.002, 3e-5);
  config.latency_model = &latency;
  std::mt19937_64 rng(1);
  auto start = std::chrono::steady_clock::now();
  int64_t sink = 0;
  for (int i = 0; i < calls; ++i) {
    const router::RouteRequest request{1000 + i % 500, 130};
    absl::StatusOr<router::RoutingDecision> decision =
        form == RouteForm::kPlainScan
            ? router::reference::DecideRoute(request, workers, config, rng)
        : form == RouteForm::kSpan ? router::DecideRoute(request, workers, config, rng)
                                   : router::DecideRoute(request, table, {}, config, rng);
    if (decision.ok()) sink += decision->decode_worker;
  }
  double elapsed = Seconds(start);
  if (sink == 42) std::puts("");
  return calls / elapsed;
}

// FNV-1a over the results a change to the simulator's speed must leave alone.
uint32_t Fingerprint(const SimResult& r) {
  const double values[] = {static_cast<double>(r.requests),
                           static_cast<double>(r.completed),
                           static_cast<double>(r.rejected),
                           static_cast<double>(r.disaggregated),
                           static_cast<double>(r.local_prefill),
                           static_cast<double>(r.slo_met),
                           static_cast<double>(r.prefix_hit_tokens),
                           static_cast<double>(r.output_tokens),
                           static_cast<double>(r.events),
                           r.end_s,
                           r.transfer_bytes,
                           r.ttft.sum(),
                           r.tpot.sum(),
                           r.e2e.sum(),
                           r.itl.sum()};
  uint32_t hash = 2166136261u;
  for (double value : values) {
    unsigned char bytes[sizeof value];
    std::memcpy(bytes, &value, sizeof value);
    for (unsigned char byte : bytes) hash = (hash ^ byte) * 16777619u;
  }
  return hash;
}

int Main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const uint64_t requests = quick ? 50000 : 300000;
  const Case cases[] = {
      {"llama-3-8b TP1, 300 prefill + 700 decode", "llama-3-8b", 1, 300, 700, 0, 8000},
      {"llama-3-8b TP1, 1000 aggregated", "llama-3-8b", 1, 0, 0, 1000, 12000},
      {"llama-3-70b TP4, 100 prefill + 150 decode", "llama-3-70b", 4, 100, 150, 0, 900},
      {"llama-3-70b TP8, 50 prefill + 75 decode", "llama-3-70b", 8, 50, 75, 0, 700},
  };
  std::printf("%-44s %8s %11s %11s %10s %8s %11s %11s %11s %6s %6s %7s %9s\n",
              "1,000 GPUs, chat workload", "requests", "req/wall-s", "req/cpu-s", "events/s",
              "slo met", "scan/s", "span/s", "table/s", "table", "ratio", "vs scan", "output");
  for (const Case& c : cases) {
    SimConfig config;
    config.cluster = {.nodes = 125, .gpus_per_node = 8, .nodes_per_domain = 4};
    config.cluster.links.same_host = {450e9, 3e-6};
    config.cluster.links.same_rack = {50e9, 10e-6};
    config.cluster.links.cross_rack = {50e9, 10e-6};
    if (c.prefill > 0)
      config.groups.push_back({InstanceRole::kPrefill, c.prefill, c.tensor_parallel});
    if (c.decode > 0) config.groups.push_back({InstanceRole::kDecode, c.decode, c.tensor_parallel});
    if (c.aggregated > 0) {
      config.groups.push_back({InstanceRole::kBoth, c.aggregated, c.tensor_parallel, 2048});
    }
    ModelShape shape = *FindModelShape(c.model);
    config.cost = std::make_shared<RooflineModel>(
        *FindGpuPreset("h100-sxm"), shape, RooflineOptions{.tensor_parallel = c.tensor_parallel});
    config.model_layers = static_cast<int>(shape.layers);
    config.workload.arrivals.rate = c.rate;
    config.workload.input = *bench::ParseLengthSpec("lognormal:1000,0.4");
    config.workload.output = *bench::ParseLengthSpec("lognormal:130,0.4");
    config.workload.num_requests = requests;
    config.slo = {0.5, 0.03, 0};
    config.seed = 1;
    const double cpu_start = CpuSeconds();
    absl::StatusOr<SimResult> result = Simulate(config);
    const double cpu = CpuSeconds() - cpu_start;
    if (!result.ok()) {
      std::fprintf(stderr, "%s: %s\n", c.name, std::string(result.status().message()).c_str());
      return 1;
    }
    const double per_second = result->requests / result->wall_seconds;
    const int calls = quick ? 20000 : 100000;
    const double scan =
        RoutingCallsPerSecond(RouteForm::kPlainScan, c.prefill, c.decode, c.aggregated, calls);
    const double span =
        RoutingCallsPerSecond(RouteForm::kSpan, c.prefill, c.decode, c.aggregated, calls);
    const double table =
        RoutingCallsPerSecond(RouteForm::kTable, c.prefill, c.decode, c.aggregated, calls);
    std::printf(
        "%-44s %8llu %11.0f %11.0f %10.0f %7.1f%% %11.0f %11.0f %11.0f %6.2f %6.2f %7.2f  %08x\n",
        c.name, static_cast<unsigned long long>(result->requests), per_second,
        result->requests / cpu, result->events / result->wall_seconds,
        100 * result->SloAttainment(), scan, span, table, table / scan, per_second / table,
        per_second / scan, Fingerprint(*result));
  }
  std::puts(
      "scan/s, span/s, table/s: routing decisions per second alone, by the plain scan (the policy "
      "before WorkerTable), over a span (the live router) and over a WorkerTable (the "
      "simulator); table = table/s / scan/s; ratio = req/wall-s / table/s (the policy's own cost "
      "bounds it at 1); vs scan = req/wall-s / scan/s (the plain scan bounded the simulator "
      "before WorkerTable at 1).");
  return 0;
}

}  // namespace
}  // namespace tandem::sim

int main(int argc, char** argv) { return tandem::sim::Main(argc, argv); }
