#include "router/worker_registry.h"

#include "absl/strings/str_cat.h"
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
  // A /v1/info without url or ready fields (the router knows the url it polled; a worker
  // that does not say is taken as ready; workers send ready since they load models
  // asynchronously); grouped fields.
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

// A worker's /v1/info as the worker writes it (src/worker/worker.cc HandleInfo), with `kv`.
std::string InfoWithKv(const std::string& kv, const std::string& epoch = "00000000000000bb") {
  return absl::StrCat(R"({"role": "decode", "epoch": ")", epoch, R"(", "ready": true, "kv": )", kv,
                      "}");
}

TEST(WorkerReportTest, ReadsTheKvBytesPerTokenOfInfo) {
  // qwen2.5-0.5b with a BF16 cache: 24 layers * 2 (K, V) * 2 kv heads * 64 dims * 2 bytes.
  auto info = ParseWorkerReport(InfoWithKv(R"({"block_size": 16, "num_layers": 24, "dtype": "bf16",
                     "layer_block_bytes": 8192, "block_bytes": 196608})"),
                                "127.0.0.1:8101");
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->kv_bytes_per_token, 12288);
  EXPECT_EQ(info->kv_layout_error, "");
  // A heartbeat carries no layout: nothing to say, nothing wrong.
  auto heartbeat = ParseWorkerReport(R"({"url": "h:1", "epoch": "01", "block_size": 16})");
  ASSERT_TRUE(heartbeat.ok()) << heartbeat.status();
  EXPECT_EQ(heartbeat->kv_bytes_per_token, 0);
  EXPECT_EQ(heartbeat->kv_layout_error, "");
}

TEST(WorkerReportTest, AnUnusableKvLayoutIsLeftOutNamingTheField) {
  const struct {
    std::string kv;
    std::string error;
  } cases[] = {
      {"7", "'kv' is 7, not an object"},
      {R"({"block_size": 16})", "'kv' has no 'block_bytes'"},
      {R"({"block_bytes": 196608})", "'kv' has no 'block_size'"},
      {R"({"block_size": 0, "block_bytes": 196608})", "kv.block_size is 0"},
      {R"({"block_size": 16, "block_bytes": 0})", "kv.block_bytes is 0"},
      {R"({"block_size": 16, "block_bytes": -196608})", "kv.block_bytes is -196608"},
      {R"({"block_size": 16, "block_bytes": "196608"})", R"(kv.block_bytes is "196608", not)"},
      {R"({"block_size": 16, "block_bytes": 196608.5})", "kv.block_bytes is 196608.5, not"},
      {R"({"block_size": 16, "block_bytes": 18446744073709551615})",
       "kv.block_bytes is 18446744073709551615, expected a positive integer"},
      {R"({"block_size": 16, "block_bytes": 196600})", "not a whole number of bytes per token"},
      {R"({"block_size": 1, "block_bytes": 1099511627776})", "more than the router accepts"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.kv);
    auto info = ParseWorkerReport(InfoWithKv(c.kv), "127.0.0.1:8101");
    // The report itself stands: the worker is still registered and routed to.
    ASSERT_TRUE(info.ok()) << info.status();
    EXPECT_EQ(info->kv_bytes_per_token, 0);
    EXPECT_THAT(info->kv_layout_error, testing::HasSubstr(c.error));
  }
  // A block size that is no count at all makes the whole report unreadable, as before.
  EXPECT_THAT(ParseWorkerReport(InfoWithKv(R"({"block_size": -16, "block_bytes": 196608})"),
                                "127.0.0.1:8101")
                  .status()
                  .message(),
              testing::HasSubstr("block_size"));
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

WorkerReport InfoOf(std::string url, std::string epoch, int64_t kv_bytes_per_token,
                    std::string error = "") {
  WorkerReport info = Report(std::move(url), std::move(epoch));
  info.kv_bytes_per_token = kv_bytes_per_token;
  info.kv_layout_error = std::move(error);
  return info;
}

TEST(WorkerRegistryTest, LearnsTheKvLayoutOfEachIncarnation) {
  WorkerRegistry registry;
  auto a = registry.Report(Report("http://a:1", "01"), 0, false);
  ASSERT_TRUE(a.ok());
  KvLayoutChange change = registry.LearnKvLayout(InfoOf("http://a:1", "01", 12288));
  EXPECT_TRUE(change.learned);
  EXPECT_FALSE(change.rejected);
  EXPECT_EQ(registry.Find(a->id)->kv_bytes_per_token, 12288);
  EXPECT_FALSE(registry.LearnKvLayout(InfoOf("http://a:1", "01", 12288)).learned);  // no news
  // Heartbeats do not carry the layout and do not forget it.
  ASSERT_TRUE(registry.Report(Report("http://a:1", "01"), 10, false).ok());
  std::vector<WorkerInfo> infos;
  registry.FillWorkerInfo(&infos);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].kv_bytes_per_token, 12288);

  // An unusable answer is reported once per reason and leaves the learned value in place.
  change = registry.LearnKvLayout(InfoOf("http://a:1", "01", 0, "kv.block_size is 0"));
  EXPECT_TRUE(change.rejected);
  EXPECT_EQ(change.error, "kv.block_size is 0");
  EXPECT_FALSE(
      registry.LearnKvLayout(InfoOf("http://a:1", "01", 0, "kv.block_size is 0")).rejected);
  change = registry.LearnKvLayout(InfoOf("http://a:1", "01", 0));  // ready, but no layout
  EXPECT_TRUE(change.rejected);
  EXPECT_THAT(change.error, testing::HasSubstr("no 'kv' object"));
  EXPECT_EQ(registry.Find(a->id)->kv_bytes_per_token, 12288);
  // A worker still loading has no layout yet: nothing wrong.
  WorkerReport loading = InfoOf("http://a:1", "01", 0);
  loading.ready = false;
  EXPECT_FALSE(registry.LearnKvLayout(loading).rejected);

  // An answer of another incarnation, or of an unknown worker, changes nothing.
  EXPECT_FALSE(registry.LearnKvLayout(InfoOf("http://a:1", "02", 4096)).learned);
  EXPECT_FALSE(registry.LearnKvLayout(InfoOf("http://z:1", "01", 4096)).learned);
  EXPECT_EQ(registry.Find(a->id)->kv_bytes_per_token, 12288);
  // A restart may run another model: its layout is unknown until its own answer.
  auto restarted = registry.Report(Report("http://a:1", "02"), 20, false);
  ASSERT_TRUE(restarted.ok());
  EXPECT_EQ(registry.Find(restarted->id)->kv_bytes_per_token, 0);
  EXPECT_TRUE(registry.LearnKvLayout(InfoOf("http://a:1", "02", 4096)).learned);
  EXPECT_EQ(registry.Find(restarted->id)->kv_bytes_per_token, 4096);
}

TEST(WorkerRegistryTest, ALayoutOtherWorkersDisagreeWithNamesThem) {
  WorkerRegistry registry;
  for (const char* url : {"http://a:1", "http://b:1", "http://c:1", "http://d:1"}) {
    ASSERT_TRUE(registry.Report(Report(url, "01"), 0, false).ok());
  }
  EXPECT_THAT(registry.LearnKvLayout(InfoOf("http://a:1", "01", 12288)).disagreeing,
              testing::IsEmpty());
  EXPECT_THAT(registry.LearnKvLayout(InfoOf("http://b:1", "01", 12288)).disagreeing,
              testing::IsEmpty());
  EXPECT_THAT(registry.LearnKvLayout(InfoOf("http://c:1", "01", 131072)).disagreeing,
              testing::ElementsAre(std::pair<std::string, int64_t>{"http://a:1", 12288},
                                   std::pair<std::string, int64_t>{"http://b:1", 12288}));
  // d has not reported: it disagrees with nobody.
  EXPECT_THAT(registry.LearnKvLayout(InfoOf("http://a:1", "01", 131072)).disagreeing,
              testing::ElementsAre(std::pair<std::string, int64_t>{"http://b:1", 12288}));
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

// A state that disaggregates every prompt: transfers show in each decision.
std::unique_ptr<RouterState> MakeDisaggregatingState(bool learn_kv_bytes_per_token = true,
                                                     int64_t kv_bytes_per_token = 131072) {
  RouterState::Options options;
  options.routing.routing.block_size = 4;
  options.routing.routing.local_prefill_max_uncached_tokens = 0;
  options.routing.routing.kv_bytes_per_token = kv_bytes_per_token;
  options.learn_kv_bytes_per_token = learn_kv_bytes_per_token;
  auto state = RouterState::Create(options);
  EXPECT_TRUE(state.ok());
  return *std::move(state);
}

WorkerReport PrefillReport(std::string url, std::string epoch) {
  WorkerReport report = Decode(std::move(url), std::move(epoch));
  report.role = WorkerRole::kPrefill;
  return report;
}

WorkerReport KvInfo(std::string url, std::string epoch, int64_t kv_bytes_per_token,
                    std::string error = "") {
  WorkerReport info = Decode(std::move(url), std::move(epoch));
  info.kv_bytes_per_token = kv_bytes_per_token;
  info.kv_layout_error = std::move(error);
  return info;
}

// The transfer bytes of an 8-token prompt disaggregated onto decode worker `decode` (the others
// excluded), or -1.
int64_t TransferBytesInto(RouterState& state, WorkerId decode, std::vector<WorkerId> others) {
  static uint64_t route_id = 0;
  const std::vector<int32_t> prompt = {1, 2, 3, 4, 5, 6, 7, 8};
  auto route = state.Route(++route_id, prompt, 4, others);
  EXPECT_TRUE(route.ok()) << route.status();
  if (!route.ok()) return -1;
  state.Finished(route_id);
  EXPECT_EQ(route->decision.decode_worker, decode);
  EXPECT_TRUE(route->decision.disaggregated()) << route->decision.Explain();
  return route->decision.transfer_bytes;
}

TEST(RouterStateTest, TransfersAreCostedWithTheKvBytesPerTokenTheWorkerReported) {
  auto state = MakeDisaggregatingState();
  auto d = state->Report(Decode("http://d:1", "0000000000000001"), 0, false);
  auto p = state->Report(PrefillReport("http://p:1", "0000000000000002"), 0, false);
  ASSERT_TRUE(d.ok() && p.ok());
  // Until a worker reports its layout: the configured default.
  EXPECT_EQ(TransferBytesInto(*state, d->id, {}), 8 * 131072);
  EXPECT_EQ(state->kv_bytes_per_token().fallback.source, KvBytesSource::kDefault);

  EXPECT_TRUE(state->LearnKvLayout(KvInfo("http://d:1", "0000000000000001", 12288)).learned);
  EXPECT_EQ(TransferBytesInto(*state, d->id, {}), 8 * 12288);
  const KvBytesPerTokenInUse in_use = state->kv_bytes_per_token();
  EXPECT_EQ(in_use.workers.at(d->id).value, 12288);
  EXPECT_EQ(in_use.workers.at(d->id).source, KvBytesSource::kWorker);
  // The prefill worker reported nothing: the largest reported value stands for it.
  EXPECT_EQ(in_use.workers.at(p->id).value, 12288);
  EXPECT_EQ(in_use.workers.at(p->id).source, KvBytesSource::kLargestReported);
  EXPECT_EQ(in_use.fallback.value, 12288);

  // An unusable answer afterwards leaves the learned value.
  EXPECT_TRUE(
      state->LearnKvLayout(KvInfo("http://d:1", "0000000000000001", 0, "kv.block_bytes is \"x\""))
          .rejected);
  EXPECT_EQ(TransferBytesInto(*state, d->id, {}), 8 * 12288);
}

TEST(RouterStateTest, TheOperatorsKvBytesPerTokenWinsOverTheWorkers) {
  auto state = MakeDisaggregatingState(/*learn_kv_bytes_per_token=*/false, 50000);
  auto d = state->Report(Decode("http://d:1", "0000000000000001"), 0, false);
  ASSERT_TRUE(state->Report(PrefillReport("http://p:1", "0000000000000002"), 0, false).ok());
  ASSERT_TRUE(d.ok());
  // Recorded (and shown), not used.
  EXPECT_TRUE(state->LearnKvLayout(KvInfo("http://d:1", "0000000000000001", 12288)).learned);
  EXPECT_EQ(TransferBytesInto(*state, d->id, {}), 8 * 50000);
  const KvBytesPerTokenInUse in_use = state->kv_bytes_per_token();
  EXPECT_EQ(in_use.workers.at(d->id).value, 50000);
  EXPECT_EQ(in_use.workers.at(d->id).source, KvBytesSource::kFlag);
  EXPECT_EQ(in_use.fallback.source, KvBytesSource::kFlag);
}

TEST(RouterStateTest, WorkersThatDisagreeAreEachCostedWithTheirOwn) {
  auto state = MakeDisaggregatingState();
  auto small = state->Report(Decode("http://a:1", "0000000000000001"), 0, false);
  auto large = state->Report(Decode("http://b:1", "0000000000000002"), 0, false);
  auto silent = state->Report(Decode("http://c:1", "0000000000000003"), 0, false);
  ASSERT_TRUE(state->Report(PrefillReport("http://p:1", "0000000000000004"), 0, false).ok());
  ASSERT_TRUE(small.ok() && large.ok() && silent.ok());
  EXPECT_TRUE(state->LearnKvLayout(KvInfo("http://a:1", "0000000000000001", 12288)).learned);
  const KvLayoutChange change =
      state->LearnKvLayout(KvInfo("http://b:1", "0000000000000002", 131072));
  EXPECT_THAT(change.disagreeing,
              testing::ElementsAre(std::pair<std::string, int64_t>{"http://a:1", 12288}));
  EXPECT_EQ(TransferBytesInto(*state, small->id, {large->id, silent->id}), 8 * 12288);
  EXPECT_EQ(TransferBytesInto(*state, large->id, {small->id, silent->id}), 8 * 131072);
  // One that did not say is costed as the heaviest.
  EXPECT_EQ(TransferBytesInto(*state, silent->id, {small->id, large->id}), 8 * 131072);
  EXPECT_EQ(state->kv_bytes_per_token().workers.at(silent->id).source,
            KvBytesSource::kLargestReported);
}

}  // namespace
}  // namespace tandem::router
