// Unit tests of the simulator: roofline arithmetic on hand-computed cases, determinism, KV
// transfer contention, goodput search on a toy model, failures, planner and placement in the
// loop, and the bad-scenario table.
#include <cmath>
#include <string>

#include "core/env.h"
#include "core/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sim/perf_model.h"
#include "sim/placement.h"
#include "sim/scenario.h"
#include "sim/simulator.h"

namespace tandem::sim {
namespace {

using ::testing::HasSubstr;

// ---- Roofline arithmetic ----

TEST(RooflineTest, Llama3_8BShapeByHand) {
  ModelShape shape = *FindModelShape("llama-3-8b");
  // Per layer: attention 4096*128*(32+2*8) + 32*128*4096 = 41,943,040; MLP 3*4096*14336 =
  // 176,160,768; norms 2*4096. Embeddings and LM head 2*128256*4096.
  const double per_layer = 41943040.0 + 176160768.0 + 8192.0;
  EXPECT_DOUBLE_EQ(shape.Parameters(), 32 * per_layer + 2.0 * 128256 * 4096);
  EXPECT_NEAR(shape.Parameters(), 8.03e9, 0.01e9);
  EXPECT_DOUBLE_EQ(shape.KvBytesPerToken(), 2.0 * 32 * 8 * 128 * 2);  // 131072
}

TEST(RooflineTest, DecodeIsMemoryBoundPrefillComputeBound) {
  GpuPreset gpu = *FindGpuPreset("h100-sxm");
  ModelShape shape = *FindModelShape("llama-3-8b");
  RooflineModel model(gpu, shape, {});
  const double params = shape.Parameters();
  // One sequence, 1000 tokens of context: weights once plus 1001 tokens of KV, at 80% of HBM.
  StepWork decode{.decode_sequences = 1, .decode_context_tokens = 1000};
  const double bytes = 2 * params + 131072.0 * 1001;
  EXPECT_DOUBLE_EQ(model.Bytes(decode), bytes);
  EXPECT_NEAR(model.StepSeconds(decode), bytes / (3.35e12 * 0.8) + 0.002, 1e-12);
  // 2048 prompt tokens from scratch: 2 FLOPs per non-embedding parameter per token plus
  // attention 4 * layers * heads * head_dim per (query, key) pair, 2048 * 1024.5 pairs.
  StepWork prefill{.prefill_tokens = 2048};
  const double flops = 2 * (params - 128256.0 * 4096) * 2048 + 4.0 * 32 * 4096 * 2048 * 1024.5;
  EXPECT_NEAR(model.Flops(prefill), flops, flops * 1e-12);
  EXPECT_NEAR(model.StepSeconds(prefill), flops / (989e12 * 0.6) + 0.002, 1e-12);
  EXPECT_GT(flops / (989e12 * 0.6), model.Bytes(prefill) / (3.35e12 * 0.8));
}

TEST(RooflineTest, KvCapacityAndTensorParallel) {
  GpuPreset gpu = *FindGpuPreset("h100-sxm");
  ModelShape shape = *FindModelShape("llama-3-8b");
  RooflineModel one(gpu, shape, {});
  EXPECT_EQ(one.KvCapacityTokens(),
            static_cast<int64_t>((80e9 * 0.9 - 2 * shape.Parameters()) / 131072));
  // 70B in BF16 (141 GB) does not fit one 80 GB GPU; it fits four.
  ModelShape big = *FindModelShape("llama-3-70b");
  EXPECT_EQ(RooflineModel(gpu, big, {}).KvCapacityTokens(), 0);
  EXPECT_GT(RooflineModel(gpu, big, {.tensor_parallel = 4}).KvCapacityTokens(), 100000);
  // TP halves the compute time of a compute-bound step (plus all-reduce time).
  RooflineModel two(gpu, shape, {.tensor_parallel = 2});
  StepWork prefill{.prefill_tokens = 4096};
  EXPECT_LT(two.StepSeconds(prefill), 0.6 * one.StepSeconds(prefill));
}

TEST(RooflineTest, PresetsAndErrors) {
  for (const char* name : {"h100-sxm", "h200", "a100-80gb", "b200"}) {
    EXPECT_TRUE(FindGpuPreset(name).ok()) << name;
  }
  absl::StatusOr<GpuPreset> missing = FindGpuPreset("h900");
  ASSERT_FALSE(missing.ok());
  EXPECT_THAT(missing.status().message(), HasSubstr("h100-sxm"));
  EXPECT_FALSE(ValidateModelShape({.name = "x",
                                   .layers = 2,
                                   .hidden = 8,
                                   .heads = 3,
                                   .kv_heads = 2,
                                   .head_dim = 4,
                                   .intermediate = 8,
                                   .vocab = 8})
                   .ok());
}

TEST(RooflineTest, SynthesizedProfileMatchesTheModel) {
  RooflineModel model(*FindGpuPreset("h100-sxm"), *FindModelShape("llama-3-8b"), {});
  absl::StatusOr<LatencyModel> latency = LatencyModel::Create(SynthesizeProfile(model, "8b"));
  ASSERT_TRUE(latency.ok()) << latency.status();
  EXPECT_NEAR(latency->PrefillSeconds(2048), model.StepSeconds({.prefill_tokens = 2048}), 1e-9);
  EXPECT_NEAR(latency->DecodeStepSeconds(64, 64 * 1024),
              model.StepSeconds({.decode_sequences = 64, .decode_context_tokens = 64 * 1024}),
              1e-9);
}

// ---- Scenarios ----

constexpr char kChat[] = R"(
name: chat
seed: 7
cluster: {nodes: 2, gpus_per_node: 4, nodes_per_domain: 2}
gpu: h100-sxm
model: llama-3-8b
instances:
  - {role: prefill, count: 3}
  - {role: decode, count: 5}
workload: {rate: 60, input: "lognormal:1024,0.5", output: "lognormal:130,0.5", requests: 3000,
           prefix_groups: 8, prefix_tokens: 256}
slo: {ttft_ms: 300, tpot_ms: 40}
variants:
  - name: disaggregated
  - name: aggregated
    set: {instances: [{role: aggregated, count: 8}]}
)";

absl::StatusOr<ScenarioOutcome> RunText(const std::string& text, Env* env = nullptr) {
  FakeEnv fake;
  TANDEM_ASSIGN_OR_RETURN(Scenario scenario,
                          ParseScenario(env != nullptr ? *env : fake, text, "test.yaml"));
  return RunScenario(scenario);
}

void ExpectConservation(const SimResult& r) {
  EXPECT_EQ(r.completed + r.rejected + r.failed, r.requests);
  EXPECT_EQ(r.unfinished, 0u);
}

TEST(SimulatorTest, SameSeedSameBytes) {
  absl::StatusOr<ScenarioOutcome> a = RunText(kChat);
  absl::StatusOr<ScenarioOutcome> b = RunText(kChat);
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_TRUE(b.ok()) << b.status();
  const std::string json = OutcomeToJson(*a, false);
  EXPECT_EQ(json, OutcomeToJson(*b, false));
  EXPECT_EQ(OutcomeToSvg(*a), OutcomeToSvg(*b));
  std::string other = kChat;
  other.replace(other.find("seed: 7"), 7, "seed: 8");
  absl::StatusOr<ScenarioOutcome> c = RunText(other);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_NE(json, OutcomeToJson(*c, false)) << "the seed must change the workload";
  for (const VariantOutcome& v : a->variants) {
    SCOPED_TRACE(v.name);
    EXPECT_EQ(v.result.requests, 3000u);
    ExpectConservation(v.result);
    EXPECT_GT(v.result.prefix_hit_tokens, 0u);
  }
  EXPECT_GT(a->variants[0].result.disaggregated, 0u);
  EXPECT_EQ(a->variants[1].result.disaggregated, 0u);
}

// A step model for hand-checkable timing: every step takes `step` seconds whatever it holds.
class ConstantStep : public StepCostModel {
 public:
  explicit ConstantStep(double step) : step_(step) {}
  double StepSeconds(const StepWork&) const override { return step_; }
  double KvBytesPerToken() const override { return 1e6; }  // 1 MB per token
  int64_t KvCapacityTokens() const override { return 1 << 24; }

 private:
  double step_;
};

SimConfig TwoNodeConfig(double link_bytes_per_second) {
  SimConfig c;
  c.cluster.nodes = 2;
  c.cluster.gpus_per_node = 1;
  c.cluster.nodes_per_domain = 1;
  c.cluster.links.same_host = {1e12, 0};
  c.cluster.links.same_rack = {1e12, 0};
  c.cluster.links.cross_rack = {link_bytes_per_second, 0};
  c.groups = {{.role = InstanceRole::kPrefill, .count = 1, .max_batch_tokens = 100000},
              {.role = InstanceRole::kDecode, .count = 1}};
  c.instance_nodes = {0, 1};
  c.cost = std::make_shared<ConstantStep>(0.01);
  c.model_layers = 1;
  c.routing.local_prefill_max_uncached_tokens = 0;
  c.workload.arrivals.rate = 0;  // all at time 0
  c.workload.input = {bench::LengthSpec::Kind::kFixed, 1000};
  c.workload.output = {bench::LengthSpec::Kind::kFixed, 2};
  c.workload.num_requests = 4;
  return c;
}

TEST(SimulatorTest, TransfersQueueOnTheNodeNics) {
  // Four 1000-token prompts prefilled together in one 10 ms step, then four 1 GB transfers over
  // a 1 GB/s link that started with the prefill: they leave one after another through the
  // prefill node's NIC, so first tokens arrive at 1, 2, 3 and 4 s (+ 10 ms).
  absl::StatusOr<SimResult> slow = Simulate(TwoNodeConfig(1e9));
  ASSERT_TRUE(slow.ok()) << slow.status();
  ExpectConservation(*slow);
  EXPECT_EQ(slow->disaggregated, 4u);
  EXPECT_NEAR(slow->ttft.min(), 1.0, 0.02);
  EXPECT_NEAR(slow->ttft.max(), 4.0, 0.05);
  EXPECT_NEAR(slow->ttft.mean(), 2.5, 0.05);
  EXPECT_NEAR(slow->transfer_bytes, 4e9, 1);
  // On a 100x faster link the queue all but vanishes.
  absl::StatusOr<SimResult> fast = Simulate(TwoNodeConfig(100e9));
  ASSERT_TRUE(fast.ok());
  EXPECT_LT(fast->ttft.max(), 0.06);
  // Same node: NVLink, no NIC queue.
  SimConfig same = TwoNodeConfig(1e9);
  same.cluster.gpus_per_node = 2;
  same.instance_nodes = {0, 0};
  absl::StatusOr<SimResult> local = Simulate(same);
  ASSERT_TRUE(local.ok());
  EXPECT_LT(local->ttft.max(), 0.03);
}

TEST(SimulatorTest, GoodputOfAToyModel) {
  // One aggregated instance, one request per 10 ms step (batch of one, one-token prompts and
  // answers): it serves at most 100 requests/s; with a 100 ms TTFT target the M/D/1 queue keeps
  // 90% of requests within target up to roughly 80-90 requests/s.
  SimConfig c;
  c.cluster = {.nodes = 1, .gpus_per_node = 1, .nodes_per_domain = 1};
  c.groups = {
      {.role = InstanceRole::kBoth, .count = 1, .max_batch_tokens = 1, .max_batch_sequences = 1}};
  c.cost = std::make_shared<ConstantStep>(0.01);
  c.workload.arrivals.rate = 10;
  c.workload.input = {bench::LengthSpec::Kind::kFixed, 1};
  c.workload.output = {bench::LengthSpec::Kind::kFixed, 1};
  c.workload.num_requests = 4000;
  c.slo.ttft_s = 0.1;
  c.seed = 11;
  absl::StatusOr<GoodputResult> g = FindGoodput(c, {.low = 1, .high = 1000, .iterations = 14});
  ASSERT_TRUE(g.ok()) << g.status();
  EXPECT_GT(g->rate, 60);
  EXPECT_LT(g->rate, 100);
  EXPECT_FALSE(g->at_upper_bound);
  // Every probe at or below the answer met the target; the search only narrowed.
  for (const auto& [rate, attainment] : g->probes) {
    if (rate <= g->rate) {
      EXPECT_GE(attainment, 0.9) << rate;
    }
    if (rate > 110) {
      EXPECT_LT(attainment, 0.9) << rate;
    }
  }
  c.slo.ttft_s = 0.001;  // shorter than one step: nothing meets it
  absl::StatusOr<GoodputResult> none = FindGoodput(c, {.low = 1, .high = 1000});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->rate, 0);
}

TEST(SimulatorTest, NodeFailureMigratesRequests) {
  std::string text = kChat;
  text += "failures: [{node: 1, time_s: 20}]\n";
  absl::StatusOr<ScenarioOutcome> out = RunText(text);
  ASSERT_TRUE(out.ok()) << out.status();
  for (const VariantOutcome& v : out->variants) {
    SCOPED_TRACE(v.name);
    ExpectConservation(v.result);
    EXPECT_GT(v.result.migrated, 0u);
    EXPECT_GT(v.result.completed, 2500u);
  }
}

TEST(SimulatorTest, TopologyAwarePairingBeatsBlindOnSlowLinks) {
  constexpr char kText[] = R"(
seed: 3
cluster: {nodes: 4, gpus_per_node: 8, nodes_per_domain: 1,
          links: {same_node: nvlink, same_domain: nvlink, cross_domain: 25gbe}}
gpu: h100-sxm
model: llama-3-8b
instances: [{role: prefill, count: 8}, {role: decode, count: 24}]
workload: {rate: 30, input: "lognormal:4096,0.3", output: "100", requests: 1500}
variants:
  - {name: aware}
  - {name: blind, set: {routing: {topology_aware: false}}}
)";
  absl::StatusOr<ScenarioOutcome> out = RunText(kText);
  ASSERT_TRUE(out.ok()) << out.status();
  const SimResult& aware = out->variants[0].result;
  const SimResult& blind = out->variants[1].result;
  ExpectConservation(aware);
  ExpectConservation(blind);
  EXPECT_LT(aware.ttft.Percentile(50) * 2, blind.ttft.Percentile(50));
  EXPECT_LT(aware.transfer.mean(), blind.transfer.mean());
}

TEST(SimulatorTest, PlannerScalesWithADiurnalLoad) {
  constexpr char kText[] = R"(
seed: 5
cluster: {nodes: 4, gpus_per_node: 8, nodes_per_domain: 2}
gpu: h100-sxm
model: llama-3-8b
instances: [{role: prefill, count: 1}, {role: decode, count: 1}]
workload: {rate: 40, rate_curve: "diurnal:600,0.1,1.0", input: "lognormal:2048,0.4",
           output: "lognormal:200,0.4", duration_s: 600, requests: 0}
slo: {ttft_ms: 500, tpot_ms: 50}
planner:
  mode: throughput
  interval_s: 10
  pod_start_delay_s: 30
  targets: {ttft_ms: 400, itl_ms: 40}
  prefill: {min: 1, max: 12}
  decode: {min: 1, max: 12}
  scale_out: {cooldown_s: 10}
  scale_in: {cooldown_s: 60, stable_intervals: 2}
)";
  absl::StatusOr<ScenarioOutcome> out = RunText(kText);
  ASSERT_TRUE(out.ok()) << out.status();
  const SimResult& r = out->variants[0].result;
  ExpectConservation(r);
  EXPECT_GT(r.planner_decisions, 50);
  EXPECT_GT(r.scale_outs, 0);
  EXPECT_GT(r.scale_ins, 0);
  int most = 0;
  for (const TimelinePoint& t : r.timeline) most = std::max(most, t.gpus_allocated);
  EXPECT_GT(most, 2);
  EXPECT_LT(r.gpu_hours, most * r.end_s / 3600);  // fewer GPU-hours than holding the peak
}

TEST(PlacementTest, PodByPodStrandsGpusGangDoesNot) {
  ClusterSpec cluster{.nodes = 8, .gpus_per_node = 8, .nodes_per_domain = 4};
  std::vector<InstanceGroup> groups = {
      {.role = InstanceRole::kPrefill, .count = 2, .tensor_parallel = 8},
      {.role = InstanceRole::kDecode, .count = 2, .tensor_parallel = 8}};
  PlacementSpec spec{
      .pods_per_instance = 2, .background_fraction = 0.3, .competing_deployments = 2};
  spec.policy = PlacementPolicy::kGang;
  absl::StatusOr<PlacementOutcome> gang = PlaceInstances(cluster, groups, spec, 1);
  ASSERT_TRUE(gang.ok()) << gang.status();
  spec.policy = PlacementPolicy::kPodByPod;
  absl::StatusOr<PlacementOutcome> pods = PlaceInstances(cluster, groups, spec, 1);
  ASSERT_TRUE(pods.ok()) << pods.status();
  EXPECT_EQ(gang->gpus_background, pods->gpus_background);
  EXPECT_EQ(gang->instances_partial, 0);
  EXPECT_EQ(gang->gpus_stranded, 0);
  EXPECT_GE(gang->deployments_serving, 1);
  EXPECT_TRUE(gang->serving);
  EXPECT_GT(pods->gpus_stranded, 0);
  EXPECT_LE(pods->deployments_serving, gang->deployments_serving);
  EXPECT_EQ(static_cast<int>(gang->instance_nodes.size()), 4);
}

TEST(ScenarioTest, MeasuredProfileIsThePerformanceModel) {
  // A profile with 10 ms + 0.1 ms per prompt token and 20 ms decode steps; one request at a
  // time, so TTFT is the prefill time of its prompt and every inter-token gap one step.
  LatencyProfile profile;
  profile.model = {.name = "tiny",
                   .layers = 2,
                   .hidden_size = 64,
                   .attention_heads = 4,
                   .kv_heads = 2,
                   .head_dim = 16,
                   .vocab_size = 100};
  profile.dtype = "f32";
  profile.prefill = {{100, 0, 0.02}, {1000, 0, 0.11}};
  profile.decode = {{1, 100, 0.02}, {1, 1000, 0.02}, {8, 800, 0.02}};
  FakeEnv env;
  env.SetFile("dir/profile.json", SerializeLatencyProfile(profile));
  constexpr char kText[] = R"(
cluster: {nodes: 1, gpus_per_node: 2}
profile: {path: profile.json, kv_bytes_per_element: 4, kv_capacity_tokens: 100000}
instances: [{role: prefill, count: 1}, {role: decode, count: 1}]
routing: {local_prefill_max_uncached_tokens: 0}
workload: {rate: 0.5, input: "500", output: "10", requests: 50}
)";
  absl::StatusOr<Scenario> scenario = ParseScenario(env, kText, "dir/fidelity.yaml");
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  absl::StatusOr<ScenarioOutcome> out = RunScenario(*scenario);
  ASSERT_TRUE(out.ok()) << out.status();
  const SimResult& r = out->variants[0].result;
  ExpectConservation(r);
  EXPECT_EQ(r.disaggregated, 50u);
  EXPECT_NEAR(r.ttft.Percentile(50), 0.06, 0.002);  // interpolated: 0.02 + 400 * 0.0001
  EXPECT_NEAR(r.itl.Percentile(50), 0.02, 0.0005);
}

TEST(ScenarioTest, ServingOverheadsAddToFirstTokenAndSteps) {
  // The same light load with the serving path's costs: 15 ms more to the first token, 1 ms more
  // per decoded token, 9 ms from the first token to joining the decode batch (spread over the
  // 9 gaps of TPOT; the ITL digest holds step times).
  LatencyProfile profile;
  profile.model = {.name = "tiny", .layers = 2, .kv_heads = 2, .head_dim = 16};
  profile.dtype = "f32";
  profile.prefill = {{100, 0, 0.02}, {1000, 0, 0.11}};
  profile.decode = {{1, 100, 0.02}, {1, 1000, 0.02}, {8, 800, 0.02}};
  FakeEnv env;
  env.SetFile("dir/profile.json", SerializeLatencyProfile(profile));
  constexpr char kText[] = R"(
cluster: {nodes: 1, gpus_per_node: 2}
profile: {path: profile.json, kv_bytes_per_element: 4, kv_capacity_tokens: 100000}
instances: [{role: prefill, count: 1}, {role: decode, count: 1}]
routing: {local_prefill_max_uncached_tokens: 0}
workload: {rate: 0.5, input: "500", output: "10", requests: 50}
serving: {first_token_overhead_ms: 15, token_overhead_ms: 1, remote_join_ms: 9}
)";
  absl::StatusOr<Scenario> scenario = ParseScenario(env, kText, "dir/fidelity.yaml");
  ASSERT_TRUE(scenario.ok()) << scenario.status();
  absl::StatusOr<ScenarioOutcome> out = RunScenario(*scenario);
  ASSERT_TRUE(out.ok()) << out.status();
  const SimResult& r = out->variants[0].result;
  ExpectConservation(r);
  EXPECT_NEAR(r.ttft.Percentile(50), 0.075, 0.002);
  EXPECT_NEAR(r.itl.Percentile(50), 0.021, 0.0005);
  EXPECT_NEAR(r.tpot.Percentile(50), 0.022, 0.0005);
  EXPECT_NEAR(r.e2e.Percentile(50), 0.075 + 0.009 + 9 * 0.021, 0.004);

  std::string bad = kText;
  bad.replace(bad.find("first_token_overhead_ms: 15"), 27, "first_token_overhead_ms: -1");
  absl::StatusOr<Scenario> refused = ParseScenario(env, bad, "dir/fidelity.yaml");
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("serving.first_token_overhead_ms"), std::string::npos)
      << refused.status();
}

// ---- Bad input ----

struct BadCase {
  const char* name;
  std::string text;
  std::vector<std::string> expected;  // substrings of the message
};

TEST(ScenarioTest, BadScenariosNameTheFieldOrLine) {
  const std::string base = R"(cluster: {nodes: 2, gpus_per_node: 8}
gpu: h100-sxm
model: llama-3-8b
instances: [{role: aggregated, count: 4}]
workload: {rate: 10, requests: 10}
)";
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string text = base;
    text.replace(text.find(from), from.size(), to);
    return text;
  };
  const std::vector<BadCase> cases = {
      {"unknown gpu",
       replace("gpu: h100-sxm", "gpu: h900"),
       {"test.yaml:2", "gpu", "h900", "h100-sxm"}},
      {"unknown model",
       replace("model: llama-3-8b", "model: gpt-5"),
       {"test.yaml:3", "model", "gpt-5"}},
      {"negative rate",
       replace("rate: 10", "rate: -5"),
       {"test.yaml:5", "workload.rate", "negative"}},
      {"bad length",
       replace("requests: 10", "requests: 10, input: \"zipf:3\""),
       {"workload.input"}},
      {"too many gpus",
       replace("count: 4", "count: 40"),
       {"test.yaml:4", "instances", "40 GPUs", "16"}},
      {"tp too big", replace("count: 4", "count: 1, tensor_parallel: 16"), {"instances", "16"}},
      {"weights do not fit",
       replace("model: llama-3-8b", "model: llama-3-70b"),
       {"instances.tensor_parallel", "llama-3-70b"}},
      {"unknown key", base + "sead: 3\n", {"test.yaml:6", "sead", "unknown key"}},
      {"bad role", replace("role: aggregated", "role: router"), {"instances[0].role", "router"}},
      {"bad link",
       replace("gpus_per_node: 8}", "gpus_per_node: 8, links: {cross_domain: 3gbe}}"),
       {"cluster.links.cross_domain", "3gbe", "25gbe"}},
      {"failure outside",
       base + "failures: [{node: 9, time_s: 1}]\n",
       {"test.yaml:6", "failures[0].node", "outside"}},
      {"not a number", replace("rate: 10", "rate: fast"), {"workload.rate", "fast", "number"}},
      {"missing trace",
       replace("rate: 10", "trace: no/such.csv"),
       {"workload.trace", "no/such.csv", "not found"}},
      {"malformed trace",
       replace("rate: 10", "trace: bad.csv"),
       {"workload.trace", "bad.csv:3", "integers"}},
      {"bad placement", base + "placement: {policy: lottery}\n", {"placement.policy", "lottery"}},
      {"variant override", base + "variants: [{name: x, set: {gpu: tpu}}]\n", {"gpu", "tpu"}},
      {"bad yaml", "cluster: {nodes: [\n", {"test.yaml", "YAML"}},
      {"fp8 on a100",
       replace("gpu: h100-sxm", "gpu: a100-80gb\nprecision: fp8"),
       {"precision", "FP8"}},
      {"planner without roles",
       base + "planner: {mode: load, targets: {ttft_ms: 100, itl_ms: 10}}\n",
       {"planner", "prefill and decode"}},
  };
  FakeEnv env;
  env.SetFile("bad.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n0.5,ten,5\n");
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<Scenario> scenario = ParseScenario(env, c.text, "test.yaml");
    absl::Status status = scenario.status();
    if (scenario.ok()) status = RunScenario(*scenario).status();
    ASSERT_FALSE(status.ok());
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    for (const std::string& piece : c.expected) {
      EXPECT_THAT(std::string(status.message()), HasSubstr(piece));
    }
  }
  absl::StatusOr<Scenario> good = ParseScenario(env, base, "test.yaml");
  EXPECT_TRUE(good.ok()) << good.status();
}

}  // namespace
}  // namespace tandem::sim
