#include "router/worker_registry.h"

#include "router/block_hash.h"
#include "router/router_state.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::router {
namespace {

WorkerReport Report(std::string url, std::string epoch, WorkerRole role = WorkerRole::kDecode) {
  WorkerReport report;
  report.url = std::move(url);
  report.epoch = std::move(epoch);
  report.role = role;
  report.ready = true;
  return report;
}

TEST(WorkerReportTest, ParsesHeartbeatsAndInfo) {
  auto heartbeat = ParseWorkerReport(
      R"({"url": "http://10.0.0.5:8101/", "role": "prefill", "epoch": "00000000000000aa",
          "model": "m", "ready": true, "draining": false, "kv_address": "10.0.0.5:9101",
          "location": {"host": "h1", "rack": "r1"}, "capacity_blocks": 1000,
          "active_blocks": 10, "prefill_queue_requests": 2, "prefill_queue_tokens": 300})");
  ASSERT_TRUE(heartbeat.ok()) << heartbeat.status();
  EXPECT_EQ(heartbeat->url, "http://10.0.0.5:8101");
  EXPECT_EQ(heartbeat->role, WorkerRole::kPrefill);
  EXPECT_EQ(heartbeat->host, "h1");
  EXPECT_EQ(heartbeat->capacity_blocks, 1000);
  EXPECT_EQ(heartbeat->prefill_queue_requests, 2);
  // /v1/info of a static worker: no url and no ready field; grouped fields.
  auto info = ParseWorkerReport(
      R"({"role": "decode", "epoch": "00000000000000bb",
          "kv": {"address": "127.0.0.1:9", "capacity_blocks": 64, "block_size": 16}})",
      "127.0.0.1:8101");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->url, "http://127.0.0.1:8101");
  EXPECT_TRUE(info->ready);
  EXPECT_EQ(info->capacity_blocks, 64);
  EXPECT_EQ(info->block_size, 16);
  EXPECT_EQ(info->kv_address, "127.0.0.1:9");
}

TEST(WorkerReportTest, RefusesBadReportsNamingTheField) {
  EXPECT_THAT(ParseWorkerReport("[]").status().message(), testing::HasSubstr("JSON object"));
  EXPECT_THAT(ParseWorkerReport(R"({"epoch": "1"})").status().message(),
              testing::HasSubstr("'url'"));
  EXPECT_THAT(ParseWorkerReport(R"({"url": "h:1"})").status().message(),
              testing::HasSubstr("'epoch'"));
  EXPECT_THAT(
      ParseWorkerReport(R"({"url": "h:1", "epoch": "1", "role": "chef"})").status().message(),
      testing::HasSubstr("role 'chef'"));
  EXPECT_THAT(ParseWorkerReport(R"({"url": "h:1", "epoch": "1", "capacity_blocks": -5})")
                  .status()
                  .message(),
              testing::HasSubstr("capacity_blocks"));
  EXPECT_THAT(
      ParseWorkerReport(R"({"url": "h:1", "epoch": "1", "ready": "yes"})").status().message(),
      testing::HasSubstr("'ready'"));
}

TEST(WorkerRegistryTest, NewEpochIsANewIncarnation) {
  WorkerRegistry registry;
  auto first = registry.Report(Report("http://a:1", "01"), 0, false);
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->added);
  EXPECT_FALSE(first->retired.has_value());
  auto again = registry.Report(Report("http://a:1", "01"), 100, false);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->added);
  EXPECT_EQ(again->id, first->id);
  auto restarted = registry.Report(Report("http://a:1", "02"), 200, false);
  ASSERT_TRUE(restarted.ok());
  EXPECT_TRUE(restarted->added);
  ASSERT_TRUE(restarted->retired.has_value());
  EXPECT_EQ(*restarted->retired, first->id);
  EXPECT_NE(restarted->id, first->id);
  EXPECT_EQ(registry.Find(first->id), nullptr);
  EXPECT_NE(registry.Find(restarted->id), nullptr);
}

TEST(WorkerRegistryTest, FailedDrainingAndExpiry) {
  WorkerRegistry registry({.heartbeat_timeout_micros = 3'000'000});
  auto a = registry.Report(Report("http://a:1", "01"), 0, false);
  WorkerReport draining = Report("http://b:1", "02");
  draining.draining = true;
  auto b = registry.Report(draining, 0, false);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(WorkerRegistry::StateOf(*registry.Find(a->id)), WorkerHealth::kReady);
  EXPECT_EQ(WorkerRegistry::StateOf(*registry.Find(b->id)), WorkerHealth::kDraining);
  EXPECT_TRUE(registry.MarkFailed(a->id));
  std::vector<WorkerInfo> infos;
  registry.FillWorkerInfo(&infos);
  ASSERT_EQ(infos.size(), 2u);
  EXPECT_FALSE(infos[0].ready);  // failed until it reports again
  EXPECT_TRUE(infos[1].draining);
  ASSERT_TRUE(registry.Report(Report("http://a:1", "01"), 2'000'000, false).ok());
  registry.FillWorkerInfo(&infos);
  EXPECT_TRUE(infos[0].ready);
  // b stopped reporting at 0; a reported at 2 s.
  EXPECT_THAT(registry.Expire(3'500'000), testing::ElementsAre(b->id));
  EXPECT_EQ(registry.size(), 1u);
  EXPECT_THAT(registry.Expire(5'100'000), testing::ElementsAre(a->id));
}

TEST(WorkerRegistryTest, BoundedNumberOfWorkers) {
  WorkerRegistry registry({.max_workers = 2});
  ASSERT_TRUE(registry.Report(Report("http://a:1", "01"), 0, false).ok());
  ASSERT_TRUE(registry.Report(Report("http://b:1", "01"), 0, false).ok());
  auto third = registry.Report(Report("http://c:1", "01"), 0, false);
  EXPECT_EQ(third.status().code(), absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace tandem::router

// RouterState: the registry and the KV router behind one lock.
namespace tandem::router {
namespace {

std::unique_ptr<RouterState> MakeState(int max_streams = 0) {
  RouterState::Options options;
  options.routing.routing.block_size = 4;
  options.max_streams_per_worker = max_streams;
  auto state = RouterState::Create(options);
  EXPECT_TRUE(state.ok());
  return *std::move(state);
}

WorkerReport Decode(std::string url, std::string epoch) {
  WorkerReport report;
  report.url = std::move(url);
  report.epoch = std::move(epoch);
  report.role = WorkerRole::kDecode;
  report.ready = true;
  return report;
}

TEST(RouterStateTest, ExcludedWorkersAndStreamLimits) {
  auto state = MakeState(/*max_streams=*/1);
  auto a = state->Report(Decode("http://a:1", "0000000000000001"), 0, false);
  auto b = state->Report(Decode("http://b:1", "0000000000000002"), 0, false);
  ASSERT_TRUE(a.ok() && b.ok());
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  const std::vector<WorkerId> exclude_a = {a->id};
  auto first = state->Route(1, prompt, 4, exclude_a);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->decode_url, "http://b:1");
  EXPECT_EQ(state->streams_on(b->id), 1);
  // b is at its limit of one stream and a is excluded: nothing can take it now.
  auto second = state->Route(2, prompt, 4, exclude_a);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kResourceExhausted);
  auto third = state->Route(3, prompt, 4, {});
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->decode_url, "http://a:1");
  state->Finished(1);
  EXPECT_EQ(state->streams_on(b->id), 0);
  state->Finished(1);  // finishing twice is harmless
  EXPECT_EQ(state->streams_on(b->id), 0);
}

TEST(RouterStateTest, ARestartDropsTheWorkersCachedBlocks) {
  auto state = MakeState();
  auto a = state->Report(Decode("http://a:1", "0000000000000001"), 0, false);
  ASSERT_TRUE(a.ok());
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  KvEvent stored{.type = KvEvent::Type::kStored,
                 .epoch = 1,
                 .event_id = 1,
                 .block_hashes = HashPromptBlocks(prompt, 4)};
  ASSERT_TRUE(state->ApplyKvEvent(a->id, stored).ok());
  auto cached = state->Route(1, prompt, 4, {});
  ASSERT_TRUE(cached.ok());
  EXPECT_EQ(cached->decision.decode_overlap_blocks, 2);
  state->Finished(1);
  // The same URL with a new epoch: a new incarnation with an empty cache.
  auto restarted = state->Report(Decode("http://a:1", "0000000000000009"), 10, false);
  ASSERT_TRUE(restarted.ok());
  ASSERT_TRUE(restarted->retired.has_value());
  EXPECT_FALSE(state->IsLive(a->id, 1));
  EXPECT_TRUE(state->IsLive(restarted->id, 9));
  auto fresh = state->Route(2, prompt, 4, {});
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->decision.decode_overlap_blocks, 0);
  // Events of the dead incarnation no longer land anywhere.
  EXPECT_EQ(*state->ApplyKvEvent(a->id, stored), ApplyOutcome::kStaleEpoch);
  // Expiry forgets the worker and its blocks.
  EXPECT_EQ(state->Expire(10 + 3'000'001).size(), 1u);
  EXPECT_FALSE(state->CanServe());
  EXPECT_EQ(state->Route(3, prompt, 4, {}).status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tandem::router
