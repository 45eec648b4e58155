#include "router/kv_router.h"

#include <algorithm>
#include <deque>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::router {
namespace {

using ::testing::HasSubstr;

std::vector<int32_t> RandomTokens(std::mt19937_64& rng, int n) {
  std::vector<int32_t> tokens(n);
  for (int32_t& t : tokens) t = static_cast<int32_t>(rng() % 32000);
  return tokens;
}

std::vector<WorkerInfo> DecodeWorkers(int n) {
  std::vector<WorkerInfo> workers;
  for (int i = 0; i < n; ++i) {
    workers.push_back({.id = static_cast<WorkerId>(i), .role = WorkerRole::kDecode});
  }
  return workers;
}

std::unique_ptr<KvRouter> MakeRouter(RoutingConfig config, uint64_t seed) {
  auto router = KvRouter::Create({.routing = config, .seed = seed});
  EXPECT_TRUE(router.ok()) << router.status();
  return std::move(router).value();
}

// The worker's engine reports a prompt's blocks as stored.
void ReportStored(KvRouter& router, WorkerId worker, uint64_t event_id,
                  const std::vector<int32_t>& tokens) {
  KvEvent event{.type = KvEvent::Type::kStored,
                .epoch = 1,
                .event_id = event_id,
                .block_hashes = HashPromptBlocks(tokens, router.config().block_size)};
  ASSERT_EQ(router.ApplyEvent(worker, event).value(), ApplyOutcome::kApplied);
}

TEST(KvRouterTest, RequestsSharingALongPrefixLandOnItsHolder) {
  const uint64_t seed = 11;
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  RoutingConfig config;
  config.disaggregation = false;
  auto router = MakeRouter(config, seed);
  const auto workers = DecodeWorkers(8);
  const std::vector<int32_t> system_prompt = RandomTokens(rng, 1600);  // 100 blocks
  ReportStored(*router, 5, 1, system_prompt);
  for (uint64_t id = 0; id < 50; ++id) {
    std::vector<int32_t> prompt = system_prompt;
    const auto question = RandomTokens(rng, 100);
    prompt.insert(prompt.end(), question.begin(), question.end());
    auto decision = router->Route(id, prompt, 64, workers);
    ASSERT_TRUE(decision.ok()) << decision.status();
    EXPECT_EQ(decision->decode_worker, 5u) << decision->Explain();
    EXPECT_EQ(decision->decode_overlap_blocks, 100);
    router->OnFinished(id);
  }
}

TEST(KvRouterTest, ABurstFollowsTheFirstRequestBeforeAnyKvEvent) {
  RoutingConfig config;
  config.disaggregation = false;
  auto router = MakeRouter(config, 3);
  const auto workers = DecodeWorkers(4);
  std::mt19937_64 rng(3);
  const auto shared = RandomTokens(rng, 3200);  // 200 blocks
  auto first = router->Route(1, shared, 16, workers);
  ASSERT_TRUE(first.ok());
  // The engine has not reported anything yet; the forecast knows where the prefix will be.
  for (uint64_t id = 2; id < 5; ++id) {
    auto next = router->Route(id, shared, 16, workers);
    ASSERT_TRUE(next.ok());
    EXPECT_EQ(next->decode_worker, first->decode_worker) << next->Explain();
  }
}

TEST(KvRouterTest, WithoutAffinityLoadSpreads) {
  const uint64_t seed = 2024;
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (double temperature : {0.0, 0.3}) {
    RoutingConfig config;
    config.disaggregation = false;
    config.temperature = temperature;
    auto router = MakeRouter(config, seed);
    const auto workers = DecodeWorkers(8);
    std::map<WorkerId, int> routed;
    std::map<WorkerId, int64_t> peak;
    std::deque<uint64_t> in_flight;
    for (uint64_t id = 0; id < 1000; ++id) {
      const auto prompt = RandomTokens(rng, 256 + static_cast<int>(rng() % 1024));
      auto decision = router->Route(id, prompt, 128, workers);
      ASSERT_TRUE(decision.ok()) << decision.status();
      routed[decision->decode_worker]++;
      in_flight.push_back(id);
      if (in_flight.size() > 40) {  // about 40 requests run at once
        router->OnFinished(in_flight.front());
        in_flight.pop_front();
      }
      for (const auto& w : workers) {
        peak[w.id] = std::max(peak[w.id], router->forecast().DecodeBlocks(w.id));
      }
    }
    ASSERT_EQ(routed.size(), 8u) << "temperature " << temperature;
    int most = 0, least = 1 << 30;
    for (const auto& [id, count] : routed) {
      most = std::max(most, count);
      least = std::min(least, count);
    }
    EXPECT_LE(double(most) / least, temperature == 0 ? 1.3 : 1.8)
        << "temperature " << temperature << ": " << most << " vs " << least;
    int64_t peak_most = 0, peak_least = INT64_MAX;
    for (const auto& [id, blocks] : peak) {
      peak_most = std::max(peak_most, blocks);
      peak_least = std::min(peak_least, blocks);
    }
    EXPECT_LE(double(peak_most) / peak_least, 2.0) << "temperature " << temperature;
  }
}

TEST(KvRouterTest, DisaggregationChargesThePrefillWorkerUntilItsFirstToken) {
  RoutingConfig config;
  config.local_prefill_max_uncached_tokens = 256;
  auto router = MakeRouter(config, 1);
  std::vector<WorkerInfo> workers = {{.id = 1, .role = WorkerRole::kDecode},
                                     {.id = 2, .role = WorkerRole::kPrefill}};
  std::mt19937_64 rng(1);
  auto short_prompt = router->Route(1, RandomTokens(rng, 200), 32, workers);
  ASSERT_TRUE(short_prompt.ok());
  EXPECT_EQ(short_prompt->placement, PrefillPlacement::kLocalFewUncached);
  auto long_prompt = router->Route(2, RandomTokens(rng, 1000), 32, workers);
  ASSERT_TRUE(long_prompt.ok());
  EXPECT_EQ(long_prompt->placement, PrefillPlacement::kDisaggregated);
  EXPECT_EQ(long_prompt->prefill_worker, 2u);
  EXPECT_EQ(router->forecast().PrefillRequests(2), 1);
  EXPECT_EQ(router->forecast().PrefillTokens(2), 1000);
  // (200 + 32) / 16 -> 15 blocks, (1000 + 32) / 16 -> 65 blocks.
  EXPECT_EQ(router->forecast().DecodeBlocks(1), 15 + 65);
  router->OnPrefillDone(2);
  EXPECT_EQ(router->forecast().PrefillRequests(2), 0);
  router->OnFinished(1);
  router->OnFinished(2);
  EXPECT_EQ(router->forecast().DecodeBlocks(1), 0);
}

TEST(KvRouterTest, ReportedLoadCountsWhenLargerThanTheForecast) {
  RoutingConfig config;
  config.disaggregation = false;
  auto router = MakeRouter(config, 1);
  std::vector<WorkerInfo> workers = DecodeWorkers(2);
  workers[0].reported_active_decode_blocks = 1000;  // busy with another router's work
  std::mt19937_64 rng(1);
  for (uint64_t id = 0; id < 10; ++id) {
    EXPECT_EQ(router->Route(id, RandomTokens(rng, 320), 16, workers)->decode_worker, 1u);
  }
}

TEST(KvRouterTest, ErrorsPassThroughAndLeaveNoForecast) {
  auto router = MakeRouter(RoutingConfig{}, 1);
  std::vector<WorkerInfo> workers = {{.id = 1, .role = WorkerRole::kDecode, .ready = false}};
  auto decision = router->Route(1, std::vector<int32_t>(100, 1), 16, workers);
  EXPECT_EQ(decision.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(router->forecast().InFlight(), 0u);
  workers[0].ready = true;
  ASSERT_TRUE(router->Route(1, std::vector<int32_t>(100, 1), 16, workers).ok());
  auto twice = router->Route(1, std::vector<int32_t>(100, 1), 16, workers);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kAlreadyExists);
}

TEST(KvRouterTest, CreateValidates) {
  RoutingConfig config;
  config.block_size = 0;
  auto router = KvRouter::Create({.routing = config});
  EXPECT_EQ(router.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(router.status().message(), HasSubstr("block_size"));
  auto bad_index = KvRouter::Create({.index = {.max_workers = 0}});
  EXPECT_THAT(bad_index.status().message(), HasSubstr("max_workers"));
}

}  // namespace
}  // namespace tandem::router
