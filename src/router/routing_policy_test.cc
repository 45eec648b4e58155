#include "router/routing_policy.h"

#include <array>
#include <map>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/routing_policy_reference.h"

namespace tandem::router {
namespace {

using ::testing::HasSubstr;

WorkerState Decode(WorkerId id, int64_t active = 0, int32_t overlap = 0) {
  return {.id = id,
          .role = WorkerRole::kDecode,
          .active_decode_blocks = active,
          .overlap_blocks = overlap};
}
WorkerState Prefill(WorkerId id, Location location = {}, int32_t queue = 0,
                    int64_t queue_tokens = 0, int32_t overlap = 0) {
  return {.id = id,
          .role = WorkerRole::kPrefill,
          .location = location,
          .prefill_queue_requests = queue,
          .prefill_queue_tokens = queue_tokens,
          .overlap_blocks = overlap};
}

RoutingDecision MustDecide(const RouteRequest& request, const std::vector<WorkerState>& workers,
                           const RoutingConfig& config, uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  auto decision = DecideRoute(request, workers, config, rng);
  EXPECT_TRUE(decision.ok()) << decision.status();
  return decision.value_or(RoutingDecision{});
}

TEST(RoutingPolicyTest, PrefixHolderWinsAtEqualLoad) {
  RoutingConfig config;
  config.disaggregation = false;
  std::vector<WorkerState> workers = {Decode(1), Decode(2, 0, 100), Decode(3), Decode(4)};
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto decision =
        MustDecide({.prompt_tokens = 2048, .max_tokens = 64}, workers, config, seed);
    EXPECT_EQ(decision.decode_worker, 2u) << "seed " << seed;
    EXPECT_EQ(decision.decode_overlap_blocks, 100);
    EXPECT_EQ(decision.uncached_tokens, 2048 - 1600);
    // (128 - 100) uncached + 0 active + (132 - 100) new blocks for prompt and 64 outputs.
    EXPECT_DOUBLE_EQ(decision.decode_cost, 28 + 32);
  }
}

TEST(RoutingPolicyTest, CostIsWeightedUncachedPlusPotentialDecodeBlocks) {
  RoutingConfig config;
  config.disaggregation = false;
  // 128 prompt blocks, no output. Holder: 1 * 28 uncached + 250 active + 28 new = 306;
  // other: 128 + 10 + 128 = 266 -> the other wins.
  std::vector<WorkerState> workers = {Decode(1, 250, 100), Decode(2, 10)};
  auto plain = MustDecide({.prompt_tokens = 2048}, workers, config);
  EXPECT_EQ(plain.decode_worker, 2u);
  EXPECT_DOUBLE_EQ(plain.decode_cost, 266);
  EXPECT_EQ(plain.decode_new_blocks, 128);
  // Weighting prefill more (2 * 28 + 250 + 28 = 334 vs 2 * 128 + 10 + 128 = 394) brings it back.
  config.overlap_weight = 2.0;
  const auto decision = MustDecide({.prompt_tokens = 2048}, workers, config);
  EXPECT_EQ(decision.decode_worker, 1u);
  EXPECT_DOUBLE_EQ(decision.decode_cost, 334);
  EXPECT_EQ(decision.decode_new_blocks, 28);
}

TEST(RoutingPolicyTest, TiesAreBrokenByTheSeededRng) {
  RoutingConfig config;
  config.disaggregation = false;
  std::vector<WorkerState> workers = {Decode(1), Decode(2), Decode(3)};
  std::map<WorkerId, int> chosen;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 300; ++i) {
    chosen[DecideRoute({.prompt_tokens = 100}, workers, config, rng)->decode_worker]++;
  }
  EXPECT_EQ(chosen.size(), 3u);
  for (const auto& [id, count] : chosen) EXPECT_GT(count, 50) << "worker " << id;
}

TEST(RoutingPolicyTest, DrainingNotReadyAndPrefillOnlyWorkersAreNeverChosen) {
  const uint64_t seed = 777;
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 gen(seed);
  RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 0;
  for (int round = 0; round < 2000; ++round) {
    config.temperature = round % 2 == 0 ? 0.0 : 0.7;
    std::vector<WorkerState> workers;
    const int n = 1 + static_cast<int>(gen() % 10);
    for (int i = 0; i < n; ++i) {
      WorkerState w;
      w.id = static_cast<WorkerId>(i);
      w.role = static_cast<WorkerRole>(gen() % 3);
      w.ready = gen() % 3 != 0;
      w.draining = gen() % 4 == 0;
      w.active_decode_blocks = static_cast<int64_t>(gen() % 200);
      w.overlap_blocks = static_cast<int32_t>(gen() % 70);
      w.prefill_queue_requests = static_cast<int32_t>(gen() % 12);
      workers.push_back(w);
    }
    std::mt19937_64 rng(gen());
    auto decision = DecideRoute({.prompt_tokens = 1000, .max_tokens = 10}, workers, config, rng);
    if (!decision.ok()) {
      EXPECT_EQ(decision.status().code(), absl::StatusCode::kUnavailable);
      for (const auto& w : workers) {
        EXPECT_FALSE(w.role != WorkerRole::kPrefill && w.ready && !w.draining);
      }
      continue;
    }
    const WorkerState& d = workers[decision->decode_worker];
    EXPECT_TRUE(d.ready && !d.draining && d.role != WorkerRole::kPrefill) << "round " << round;
    if (decision->disaggregated()) {
      const WorkerState& p = workers[decision->prefill_worker];
      EXPECT_TRUE(p.ready && !p.draining && p.role == WorkerRole::kPrefill) << "round " << round;
      EXPECT_LT(p.prefill_queue_requests, config.prefill_queue_limit);
    }
  }
}

TEST(RoutingPolicyTest, NoDecodeWorkerIsUnavailableAndFullOnesAreExhausted) {
  RoutingConfig config;
  std::mt19937_64 rng(1);
  WorkerState draining = Decode(1);
  draining.draining = true;
  WorkerState not_ready = Decode(2);
  not_ready.ready = false;
  std::vector<WorkerState> workers = {draining, not_ready, Prefill(3)};
  auto none = DecideRoute({.prompt_tokens = 10}, workers, config, rng);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(none.status().message(), HasSubstr("no decode worker"));

  WorkerState full = Decode(4, 95);
  full.capacity_blocks = 100;
  // 160 prompt tokens + min(64, 256) output = 224 tokens = 14 blocks; 95 + 14 > 100.
  std::vector<WorkerState> only_full = {full};
  auto exhausted = DecideRoute({.prompt_tokens = 160, .max_tokens = 64}, only_full, config, rng);
  EXPECT_EQ(exhausted.status().code(), absl::StatusCode::kResourceExhausted);
  // Blocks it already caches need no room.
  only_full[0].overlap_blocks = 10;
  EXPECT_TRUE(DecideRoute({.prompt_tokens = 160, .max_tokens = 64}, only_full, config, rng).ok());

  std::vector<WorkerState> one = {Decode(1)};
  auto negative = DecideRoute({.prompt_tokens = -1}, one, config, rng);
  EXPECT_EQ(negative.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RoutingPolicyTest, ConditionalDisaggregationFollowsItsThresholds) {
  RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 512;
  config.prefill_queue_limit = 4;
  std::vector<WorkerState> workers = {Decode(1), Prefill(2), Prefill(3)};

  // At the threshold: local. One token more: disaggregated.
  auto at = MustDecide({.prompt_tokens = 512}, workers, config);
  EXPECT_EQ(at.placement, PrefillPlacement::kLocalFewUncached);
  auto above = MustDecide({.prompt_tokens = 513}, workers, config);
  EXPECT_EQ(above.placement, PrefillPlacement::kDisaggregated);

  // What counts is the part the decode worker lacks: a long prompt it mostly caches is local.
  workers[0].overlap_blocks = 120;  // 1920 of 2048 tokens cached
  auto cached = MustDecide({.prompt_tokens = 2048}, workers, config);
  EXPECT_EQ(cached.uncached_tokens, 128);
  EXPECT_EQ(cached.placement, PrefillPlacement::kLocalFewUncached);
  workers[0].overlap_blocks = 0;

  // Saturated pool: every prefill queue at the limit.
  workers[1].prefill_queue_requests = 4;
  workers[2].prefill_queue_requests = 9;
  EXPECT_EQ(MustDecide({.prompt_tokens = 4096}, workers, config).placement,
            PrefillPlacement::kLocalPoolSaturated);
  // One below the limit is enough, and it is the one chosen.
  workers[2].prefill_queue_requests = 3;
  auto one_free = MustDecide({.prompt_tokens = 4096}, workers, config);
  EXPECT_EQ(one_free.placement, PrefillPlacement::kDisaggregated);
  EXPECT_EQ(one_free.prefill_worker, 3u);

  // No ready prefill worker, or disaggregation off.
  workers[1].ready = false;
  workers[2].draining = true;
  EXPECT_EQ(MustDecide({.prompt_tokens = 4096}, workers, config).placement,
            PrefillPlacement::kLocalNoPrefillWorker);
  config.disaggregation = false;
  EXPECT_EQ(MustDecide({.prompt_tokens = 4096}, {Decode(1), Prefill(2)}, config).placement,
            PrefillPlacement::kLocalDisabled);
}

TEST(RoutingPolicyTest, PrefillChoiceWeighsTopologyQueueAndOverlapInBlocks) {
  RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 0;
  const Location decode_at{.host = 1, .rack = 1};
  const Location same_host{.host = 1, .rack = 1};
  const Location same_rack{.host = 2, .rack = 1};
  const Location far{.host = 3, .rack = 2};
  WorkerState decode = Decode(1);
  decode.location = decode_at;

  // Equal otherwise: the nearest link wins.
  auto near =
      MustDecide({.prompt_tokens = 4096},
                 {decode, Prefill(2, far), Prefill(3, same_rack), Prefill(4, same_host)}, config);
  EXPECT_EQ(near.prefill_worker, 4u);
  EXPECT_EQ(near.link, LinkDistance::kSameHost);
  EXPECT_EQ(near.transfer_bytes, 4096 * config.kv_bytes_per_token);
  // 256 blocks: cost 256 + 0.1 * 1 * 256 = 281.6
  EXPECT_DOUBLE_EQ(near.prefill_cost, 256 + 0.1 * 256);
  EXPECT_FALSE(near.prefill_cost_in_seconds);

  // Cross rack costs 0.1 * 8 * 256 = 204.8 blocks more; a same-host queue of 300 blocks more
  // than that sends the job across racks.
  auto queued = MustDecide({.prompt_tokens = 4096},
                           {decode, Prefill(2, far), Prefill(4, same_host, 1, 300 * 16)}, config);
  EXPECT_EQ(queued.prefill_worker, 2u);
  EXPECT_EQ(queued.link, LinkDistance::kCrossRack);

  // A far prefill worker caching most of the prompt beats computing it all nearby.
  auto overlap = MustDecide({.prompt_tokens = 4096},
                            {decode, Prefill(2, far, 0, 0, 250), Prefill(4, same_host)}, config);
  EXPECT_EQ(overlap.prefill_worker, 2u);
  EXPECT_EQ(overlap.prefill_overlap_blocks, 250);
}

TEST(RoutingPolicyTest, WithALatencyModelPrefillCostsAreSeconds) {
  // 100 µs per token, no fixed part: 4096 tokens = 0.4096 s of prefill.
  LinearPrefillLatencyModel model(0, 100e-6);
  RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 0;
  config.latency_model = &model;
  config.kv_bytes_per_token = 100000;  // 4096 tokens = 409.6 MB
  config.links.same_host = {100e9, 0};
  config.links.same_rack = {10e9, 0};
  config.links.cross_rack = {1e9, 0};
  WorkerState decode = Decode(1);
  decode.location = {.host = 1, .rack = 1};
  const Location same_host{.host = 1, .rack = 1};
  const Location far{.host = 3, .rack = 2};

  auto decision = MustDecide({.prompt_tokens = 4096}, {decode, Prefill(2, same_host)}, config);
  EXPECT_TRUE(decision.prefill_cost_in_seconds);
  EXPECT_NEAR(decision.transfer_seconds, 409.6e6 / 100e9, 1e-12);
  EXPECT_NEAR(decision.prefill_cost, 0.4096 + 409.6e6 / 100e9, 1e-9);

  // Across racks the transfer takes 0.41 s; a same-host queue of 0.3 s is still cheaper...
  auto cheap_queue = MustDecide({.prompt_tokens = 4096},
                                {decode, Prefill(2, far), Prefill(3, same_host, 1, 3000)}, config);
  EXPECT_EQ(cheap_queue.prefill_worker, 3u);
  // ...a 0.5 s queue is not.
  auto long_queue = MustDecide({.prompt_tokens = 4096},
                               {decode, Prefill(2, far), Prefill(3, same_host, 1, 5000)}, config);
  EXPECT_EQ(long_queue.prefill_worker, 2u);
  EXPECT_THAT(long_queue.Explain(), HasSubstr("cross_rack"));
}

// The prefill worker fills the blocks the decode worker reserved: the transfer moves the decode
// worker's KV bytes per token when its state gives them, else the config's.
TEST(RoutingPolicyTest, TransferBytesAreTheDecodeWorkersKvBytesPerToken) {
  LinearPrefillLatencyModel model(0, 100e-6);
  RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 0;
  config.latency_model = &model;
  config.kv_bytes_per_token = 100000;
  config.links.same_host = {100e9, 0};
  config.links.same_rack = {10e9, 0};
  config.links.cross_rack = {1e9, 0};
  WorkerState decode = Decode(1);
  decode.location = {.host = 1, .rack = 1};
  WorkerState far = Prefill(2, {.host = 3, .rack = 2});
  far.kv_bytes_per_token = 1'000'000;  // a prefill worker's own figure is not the transfer's
  std::vector<WorkerState> workers = {decode, far, Prefill(3, decode.location, 1, 3000)};

  // The config's 100 KB per token: 0.41 s across racks loses to a 0.3 s queue on the same host.
  auto heavy = MustDecide({.prompt_tokens = 4096}, workers, config);
  EXPECT_EQ(heavy.prefill_worker, 3u);
  EXPECT_EQ(heavy.transfer_bytes, int64_t{4096} * 100000);

  // A decode worker whose KV takes a tenth of that: 0.041 s across racks wins.
  workers[0].kv_bytes_per_token = 10000;
  auto light = MustDecide({.prompt_tokens = 4096}, workers, config);
  EXPECT_EQ(light.prefill_worker, 2u);
  EXPECT_EQ(light.transfer_bytes, int64_t{4096} * 10000);
  EXPECT_NEAR(light.transfer_seconds, 40.96e6 / 1e9, 1e-12);
  std::mt19937_64 rng(1);
  auto oracle = reference::DecideRoute({.prompt_tokens = 4096}, workers, config, rng);
  ASSERT_TRUE(oracle.ok());
  EXPECT_EQ(oracle->prefill_worker, 2u);
  EXPECT_EQ(oracle->transfer_bytes, light.transfer_bytes);
}

TEST(RoutingPolicyTest, SoftmaxIsDeterministicForASeedAndFavoursLowCost) {
  RoutingConfig config;
  config.disaggregation = false;
  config.temperature = 0.5;
  std::vector<WorkerState> workers = {Decode(1, 0), Decode(2, 50), Decode(3, 100), Decode(4, 100)};
  auto run = [&](uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<WorkerId> chosen;
    for (int i = 0; i < 400; ++i) {
      auto decision = DecideRoute({.prompt_tokens = 64}, workers, config, rng);
      EXPECT_TRUE(decision->sampled);
      chosen.push_back(decision->decode_worker);
    }
    return chosen;
  };
  const auto first = run(42);
  EXPECT_EQ(first, run(42));
  EXPECT_NE(first, run(43));
  std::map<WorkerId, int> counts;
  for (WorkerId id : first) counts[id]++;
  // p ~ exp(-c / 0.5) for normalised c = 0, 0.5, 1, 1: 0.53, 0.20, 0.072, 0.072.
  EXPECT_GT(counts[1], counts[2]);
  EXPECT_GT(counts[2], counts[3]);
  EXPECT_GT(counts[3] + counts[4], 0);  // sampling, not argmin
}

TEST(RoutingPolicyTest, ConfigIsValidatedByField) {
  struct Case {
    void (*mutate)(RoutingConfig&);
    const char* field;
  };
  const Case cases[] = {
      {[](RoutingConfig& c) { c.block_size = 0; }, "block_size"},
      {[](RoutingConfig& c) { c.overlap_weight = -1; }, "overlap_weight"},
      {[](RoutingConfig& c) { c.temperature = -0.1; }, "temperature"},
      {[](RoutingConfig& c) { c.local_prefill_max_uncached_tokens = -1; },
       "local_prefill_max_uncached_tokens"},
      {[](RoutingConfig& c) { c.prefill_queue_limit = 0; }, "prefill_queue_limit"},
      {[](RoutingConfig& c) { c.prefill_queue_weight = -1; }, "prefill_queue_weight"},
      {[](RoutingConfig& c) { c.transfer_weight = -1; }, "transfer_weight"},
      {[](RoutingConfig& c) { c.kv_bytes_per_token = 0; }, "kv_bytes_per_token"},
      {[](RoutingConfig& c) { c.kv_bytes_per_token = kMaxKvBytesPerToken + 1; },
       "kv_bytes_per_token"},
      {[](RoutingConfig& c) { c.forecast_output_tokens = -1; }, "forecast_output_tokens"},
      {[](RoutingConfig& c) { c.links.cross_rack.bytes_per_second = 0; }, "cross_rack"},
  };
  EXPECT_TRUE(ValidateRoutingConfig(RoutingConfig{}).ok());
  for (const Case& c : cases) {
    RoutingConfig config;
    c.mutate(config);
    absl::Status status = ValidateRoutingConfig(config);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << c.field;
    EXPECT_THAT(status.message(), HasSubstr(c.field));
  }
}

TEST(RoutingPolicyTest, ExplainNamesTheChoices) {
  RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 0;
  auto decision = MustDecide({.prompt_tokens = 1000}, {Decode(7), Prefill(9)}, config);
  const std::string text = decision.Explain();
  EXPECT_THAT(text, HasSubstr("decode=7"));
  EXPECT_THAT(text, HasSubstr("prefill disaggregated on prefill=9"));
  config.disaggregation = false;
  EXPECT_THAT(MustDecide({.prompt_tokens = 1000}, {Decode(7)}, config).Explain(),
              HasSubstr("local:disaggregation_off"));
}

// The worked example of docs/routing.md, number for number.
TEST(RoutingPolicyTest, WorkedExampleFromTheDocs) {
  RoutingConfig config;  // defaults: block 16, weights 1, threshold 512, queue limit 8
  const Location host_a{.host = 0, .rack = 0}, host_b{.host = 1, .rack = 0},
      host_c{.host = 2, .rack = 1};
  std::vector<WorkerState> workers = {
      {.id = 1,
       .role = WorkerRole::kDecode,
       .location = host_b,
       .active_decode_blocks = 900,
       .overlap_blocks = 150},
      {.id = 2, .role = WorkerRole::kDecode, .location = host_a, .active_decode_blocks = 300},
      {.id = 3,
       .role = WorkerRole::kDecode,
       .location = host_c,
       .active_decode_blocks = 500,
       .overlap_blocks = 20},
      {.id = 11,
       .role = WorkerRole::kPrefill,
       .location = host_a,
       .prefill_queue_requests = 2,
       .prefill_queue_tokens = 1200},
      {.id = 12, .role = WorkerRole::kPrefill, .location = host_c, .overlap_blocks = 150},
      {.id = 13, .role = WorkerRole::kPrefill, .location = host_b, .prefill_queue_requests = 9},
  };
  const RouteRequest request{.prompt_tokens = 3000, .max_tokens = 200};
  auto blocks = MustDecide(request, workers, config);
  EXPECT_EQ(blocks.decode_worker, 2u);
  EXPECT_DOUBLE_EQ(blocks.decode_cost, 688);
  EXPECT_EQ(blocks.uncached_tokens, 3000);
  EXPECT_EQ(blocks.placement, PrefillPlacement::kDisaggregated);
  EXPECT_EQ(blocks.eligible_prefill_workers, 2);  // 13 is saturated
  EXPECT_EQ(blocks.prefill_worker, 12u);
  EXPECT_DOUBLE_EQ(blocks.prefill_cost, 38 + 0.1 * 8 * 188);

  LinearPrefillLatencyModel model(0.01, 1e-4);
  config.latency_model = &model;
  auto seconds = MustDecide(request, workers, config);
  EXPECT_EQ(seconds.prefill_worker, 12u);
  EXPECT_NEAR(seconds.prefill_cost, 0.07 + 50e-6 + 393216000 / 6.25e9, 1e-9);
  EXPECT_NEAR(seconds.transfer_seconds, 0.06296456, 1e-8);
  // Worker 11 would have cost 0.31 + 0.13 + 0.00786932 = 0.44786932 s.
  workers[4].ready = false;
  EXPECT_NEAR(MustDecide(request, workers, config).prefill_cost, 0.44786932, 1e-8);
}

void ExpectSameDecision(const absl::StatusOr<RoutingDecision>& got,
                        const absl::StatusOr<RoutingDecision>& want) {
  ASSERT_EQ(got.status(), want.status());
  if (!want.ok()) return;
  EXPECT_EQ(got->decode_worker, want->decode_worker);
  EXPECT_EQ(got->decode_cost, want->decode_cost);
  EXPECT_EQ(got->decode_overlap_blocks, want->decode_overlap_blocks);
  EXPECT_EQ(got->decode_new_blocks, want->decode_new_blocks);
  EXPECT_EQ(got->uncached_tokens, want->uncached_tokens);
  EXPECT_EQ(got->eligible_decode_workers, want->eligible_decode_workers);
  EXPECT_EQ(got->sampled, want->sampled);
  EXPECT_EQ(got->placement, want->placement);
  EXPECT_EQ(got->prefill_worker, want->prefill_worker);
  EXPECT_EQ(got->prefill_cost, want->prefill_cost);
  EXPECT_EQ(got->prefill_cost_in_seconds, want->prefill_cost_in_seconds);
  EXPECT_EQ(got->prefill_overlap_blocks, want->prefill_overlap_blocks);
  EXPECT_EQ(got->transfer_bytes, want->transfer_bytes);
  EXPECT_EQ(got->transfer_seconds, want->transfer_seconds);
  EXPECT_EQ(got->link, want->link);
  EXPECT_EQ(got->eligible_prefill_workers, want->eligible_prefill_workers);
}

// The table (kept up to date by Set, overlaps given per request, queue costs remembered across
// decisions) and the span form decide exactly as the plain scan: same worker, costs, counts and
// placement, and the same draws from the RNG. Small value ranges make ties, full workers and
// saturated queues common.
TEST(RoutingPolicyTest, WorkerTableDecidesExactlyAsThePlainScan) {
  LinearPrefillLatencyModel model(0.002, 3e-5, 1e-9);
  LinearPrefillLatencyModel other_model(0.001, 5e-5);
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    SCOPED_TRACE(testing::Message() << "seed " << seed);
    std::mt19937_64 gen(seed);
    auto pick = [&](int64_t n) { return static_cast<int64_t>(gen() % static_cast<uint64_t>(n)); };
    RoutingConfig config;
    config.block_size = 1 + static_cast<int>(pick(32));
    config.overlap_weight = std::array{0.0, 0.5, 1.0, 2.0}[pick(4)];
    config.disaggregation = pick(8) != 0;
    config.local_prefill_max_uncached_tokens = std::array{0, 0, 64, 512}[pick(4)];
    config.prefill_queue_limit = 1 + static_cast<int32_t>(pick(4));
    config.prefill_queue_weight = std::array{0.0, 1.0, 0.3}[pick(3)];
    config.transfer_weight = std::array{0.0, 0.1, 1.0}[pick(3)];
    config.forecast_output_tokens = pick(300);
    config.kv_bytes_per_token = std::array<int64_t, 2>{131072, 4096}[pick(2)];
    config.latency_model = pick(2) == 0 ? &model : nullptr;
    auto random_worker = [&] {
      WorkerState w;
      w.id = static_cast<WorkerId>(pick(12));  // repeats: two roles of one process
      w.role = static_cast<WorkerRole>(pick(3));
      w.ready = pick(6) != 0;
      w.draining = pick(8) == 0;
      w.location = {static_cast<int32_t>(pick(4)) - 1, static_cast<int32_t>(pick(3)) - 1};
      w.active_decode_blocks = pick(4) == 0 ? pick(2000) : pick(4);
      w.capacity_blocks = pick(3) == 0 ? 0 : 1 + pick(300);
      w.prefill_queue_requests = static_cast<int32_t>(pick(6));
      w.prefill_queue_tokens = pick(3) == 0 ? 0 : 16 * pick(4) - 8;
      w.kv_bytes_per_token = std::array<int64_t, 4>{0, 0, 12288, 131072}[pick(4)];
      return w;
    };
    WorkerTable table;
    const int initial = static_cast<int>(pick(40));
    for (int i = 0; i < initial; ++i) table.Add(random_worker());
    std::mt19937_64 rng_scan(seed), rng_table(seed), rng_span(seed);
    for (int round = 0; round < 100; ++round) {
      SCOPED_TRACE(testing::Message() << "round " << round);
      config.temperature = pick(5) == 0 ? std::array{0.1, 1.0}[pick(2)] : 0.0;
      if (pick(10) == 0) {
        // What the table's remembered queue costs depend on.
        config.block_size = 1 + static_cast<int>(pick(32));
        config.prefill_queue_weight = std::array{0.0, 1.0, 0.3}[pick(3)];
        config.latency_model =
            std::array<const PrefillLatencyModel*, 3>{&model, &other_model, nullptr}[pick(3)];
      }
      // Change a few workers (a role change moves one between the decode and prefill columns).
      for (int64_t n = pick(4); n > 0; --n) {
        if (table.size() == 0 || pick(5) == 0) {
          table.Add(random_worker());
        } else {
          table.Set(static_cast<uint32_t>(pick(table.size())), random_worker());
        }
      }
      if (table.size() == 0) continue;
      const RouteRequest request{.prompt_tokens = pick(10) == 0 ? -1 : pick(2000),
                                 .max_tokens = pick(400)};
      std::vector<WorkerState> workers;
      for (uint32_t i = 0; i < table.size(); ++i) workers.push_back(table.Get(i));
      std::vector<WorkerOverlap> overlaps;
      for (int64_t n = pick(6); n > 0; --n) {
        const uint32_t worker = static_cast<uint32_t>(pick(table.size()));
        const int32_t blocks = static_cast<int32_t>(pick(140)) - 10;
        overlaps.push_back({worker, blocks});
        workers[worker].overlap_blocks = blocks;  // a worker named twice counts its last
      }
      const auto want = reference::DecideRoute(request, workers, config, rng_scan);
      ExpectSameDecision(DecideRoute(request, table, overlaps, config, rng_table), want);
      ExpectSameDecision(DecideRoute(request, workers, config, rng_span), want);
      ASSERT_TRUE(rng_table == rng_scan);
      ASSERT_TRUE(rng_span == rng_scan);
    }
  }
}

TEST(RoutingPolicyTest, WorkerTableRejectsAnOverlapOutsideIt) {
  WorkerTable table;
  table.Add(Decode(1));
  std::mt19937_64 rng(1);
  const WorkerOverlap outside[] = {{.worker = 1, .blocks = 4}};
  auto decision = DecideRoute({.prompt_tokens = 100}, table, outside, RoutingConfig{}, rng);
  EXPECT_EQ(decision.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tandem::router
