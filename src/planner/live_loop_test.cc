// The live loop with scripted sources and connectors: decisions are logged, exported and applied
// (or only published in advisory mode); failing metrics and failing scale calls are counted and
// retried without stopping the loop; the HTTP endpoints answer.
#include "planner/live_loop.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <deque>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_client.h"

namespace tandem::planner {
namespace {

using ::testing::HasSubstr;

// Load mode with a regression trusted from 2 samples; one decode instance per 10 KV blocks.
PlannerConfig LoadConfig(bool advisory) {
  PlannerConfig config;
  config.mode = PlannerMode::kLoad;
  config.advisory = advisory;
  config.interval_seconds = 1;
  config.ttft_target_seconds = 0.2;
  config.itl_target_seconds = 0.02;
  config.bounds.prefill = {.min_instances = 1, .max_instances = 4, .gpus_per_instance = 1};
  config.bounds.decode = {.min_instances = 1, .max_instances = 4, .gpus_per_instance = 1};
  config.scale_out_cooldown_seconds = 0;
  config.regression_min_samples = 2;
  config.regression_window = 50;
  return config;
}

// Decode instances each at `blocks`, latency 0.01 + 0.001 * blocks: SLA point 10 blocks.
Observation Loaded(double blocks_per_instance, int decode) {
  Observation o;
  o.prefill_instances = 1;
  o.decode_instances = decode;
  o.prefill_load = {{.active = 100, .latency_seconds = 0.05}};
  for (int i = 0; i < decode; ++i) {
    const double blocks = blocks_per_instance + i;  // distinct x for the regression
    o.decode_load.push_back({.active = blocks, .latency_seconds = 0.01 + 0.001 * blocks});
  }
  return o;
}

class ScriptedSource : public MetricsSource {
 public:
  std::deque<absl::StatusOr<Observation>> script;
  absl::StatusOr<Observation> Collect(double now_seconds) override {
    absl::StatusOr<Observation> next = script.front();
    script.pop_front();
    if (next.ok()) next->time_seconds = now_seconds;
    return next;
  }
  std::vector<std::string> unreadable() const override { return {"http://127.0.0.1:9/metrics"}; }
};

class ScriptedConnector : public ScaleConnector {
 public:
  std::deque<absl::Status> failures;  // returned by the next Apply calls, in order
  std::vector<Decision> applied;
  std::optional<ReplicaCounts> counts;
  absl::Status Apply(const Decision& decision) override {
    if (!failures.empty()) {
      absl::Status status = failures.front();
      failures.pop_front();
      if (!status.ok()) return status;
    }
    applied.push_back(decision);
    counts = ReplicaCounts{decision.prefill.target, decision.decode.target};
    return absl::OkStatus();
  }
  absl::StatusOr<ReplicaCounts> Current() override {
    if (!counts) return absl::UnimplementedError("no counts");
    return *counts;
  }
  std::string name() const override { return "scripted"; }
};

Planner MakePlanner(const PlannerConfig& config) {
  absl::StatusOr<Planner> planner = Planner::Create(config, std::nullopt);
  EXPECT_TRUE(planner.ok()) << planner.status();
  return *std::move(planner);
}

TEST(PlannerLoopTest, AppliesDecisionsAndCountsFailuresWithoutStopping) {
  ScriptedSource source;
  ScriptedConnector connector;
  source.script = {absl::UnavailableError("first scrape"), Loaded(5, 1), Loaded(25, 1),
                   Loaded(25, 1), Loaded(25, 1)};
  connector.failures = {absl::UnavailableError("orchestrator restarting")};
  PlannerLoop loop(MakePlanner(LoadConfig(false)), source, connector, {});

  Evaluation skipped = loop.Evaluate(0);
  EXPECT_FALSE(skipped.decided);
  EXPECT_EQ(skipped.observation.code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(loop.Evaluate(1).decision.changed);  // 5 blocks: under the SLA point
  Evaluation failed = loop.Evaluate(2);             // 25 blocks on one instance: scale out
  EXPECT_TRUE(failed.decision.changed);
  EXPECT_EQ(failed.decision.decode.target, 3);
  EXPECT_FALSE(failed.applied);
  EXPECT_THAT(failed.apply_status.message(), HasSubstr("orchestrator restarting"));
  // The next decision is held back by nothing and asks again; it is applied.
  Evaluation retried = loop.Evaluate(3);
  EXPECT_TRUE(retried.applied) << retried.apply_status;
  ASSERT_EQ(connector.applied.size(), 1u);
  EXPECT_EQ(connector.applied[0].decode.target, 3);
  // The connector now reports 3 decode instances, so the decision compares with that; the two
  // new ones have not reported yet, and 25 blocks over 3 instances is under the SLA point.
  Evaluation after = loop.Evaluate(4);
  EXPECT_EQ(after.decision.decode.current, 3);
  EXPECT_EQ(after.decision.decode.target, 3);

  const std::string metrics = loop.registry().RenderPrometheus();
  EXPECT_THAT(metrics, HasSubstr("tandem_planner_scale_errors_total{connector=\"scripted\"} 1"));
  EXPECT_THAT(metrics, HasSubstr("tandem_planner_skipped_intervals_total 1"));
  EXPECT_THAT(
      metrics,
      HasSubstr("tandem_planner_scrape_errors_total{target=\"http://127.0.0.1:9/metrics\"} 5"));
  EXPECT_THAT(metrics, HasSubstr("tandem_planner_decisions_total{role=\"decode\",action=\"up\","
                                 "reason=\"load\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("tandem_planner_replicas{role=\"decode\",kind=\"current\"} 3"));
}

TEST(PlannerLoopTest, AFailedDecisionHeldByCooldownIsRetried) {
  PlannerConfig config = LoadConfig(false);
  config.scale_out_cooldown_seconds = 100;  // the second evaluation cannot ask again
  ScriptedSource source;
  ScriptedConnector connector;
  connector.counts = ReplicaCounts{1, 1};
  source.script = {Loaded(5, 1), Loaded(25, 1), Loaded(25, 1)};
  connector.failures = {absl::UnavailableError("refused")};
  PlannerLoop loop(MakePlanner(config), source, connector, {});
  loop.Evaluate(0);
  EXPECT_FALSE(loop.Evaluate(1).applied);
  Evaluation retry = loop.Evaluate(2);
  EXPECT_FALSE(retry.decision.changed);  // held by the cooldown...
  EXPECT_TRUE(retry.applied);            // ...so the failed one is sent again
  ASSERT_EQ(connector.applied.size(), 1u);
  EXPECT_EQ(connector.applied[0].decode.target, 3);
}

TEST(PlannerLoopTest, AdvisoryModePublishesWithoutActing) {
  ScriptedSource source;
  ScriptedConnector connector;
  source.script = {Loaded(5, 1), Loaded(25, 1)};
  PlannerLoop loop(MakePlanner(LoadConfig(true)), source, connector, {.listen = "127.0.0.1:0"});
  ASSERT_TRUE(loop.StartServer().ok());
  const std::string base = absl::StrCat("http://127.0.0.1:", loop.port());
  auto get = [&](const std::string& path) {
    absl::StatusOr<net::HttpResult> answer = net::HttpClient::Fetch({.url = base + path});
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? *answer : net::HttpResult{};
  };
  EXPECT_EQ(get("/ready").status, 503);  // nothing evaluated yet
  EXPECT_EQ(get("/v1/decision").status, 404);
  EXPECT_THAT(get("/health").body, HasSubstr("\"epoch\""));
  loop.Evaluate(0);
  Evaluation advised = loop.Evaluate(1);
  EXPECT_TRUE(advised.decision.changed);
  EXPECT_FALSE(advised.applied);
  EXPECT_TRUE(connector.applied.empty());
  EXPECT_EQ(get("/ready").status, 200);
  net::HttpResult decision = get("/v1/decision");
  EXPECT_EQ(decision.status, 200);
  EXPECT_THAT(decision.body, HasSubstr("(advisory: not applied)"));
  EXPECT_THAT(get("/metrics").body, HasSubstr("tandem_planner_advisory 1"));
  absl::StatusOr<net::HttpResult> drain =
      net::HttpClient::Fetch({.method = "POST", .url = base + "/admin/drain", .body = "{}"});
  ASSERT_TRUE(drain.ok());
  EXPECT_EQ(drain->status, 202);
  EXPECT_TRUE(loop.stop_requested());
  EXPECT_EQ(get("/ready").status, 503);
  loop.Shutdown();
}

// The planner's /metrics passes Prometheus' own linter, as every role's does (docs/metrics.md).
TEST(PlannerLoopTest, MetricsPassPromtool) {
  ASSERT_EQ(std::system("command -v promtool >/dev/null"), 0)
      << "promtool is missing: run scripts/install-deps.sh (Debian package 'prometheus')";
  ScriptedSource source;
  ScriptedConnector connector;
  source.script = {Loaded(5, 1), Loaded(25, 1)};
  PlannerLoop loop(MakePlanner(LoadConfig(false)), source, connector, {});
  loop.Evaluate(0);
  loop.Evaluate(1);
  char path[] = "/tmp/tandem-planner-metrics-XXXXXX";
  const int fd = ::mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string text = loop.registry().RenderPrometheus();
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fd);
  FILE* pipe = ::popen((std::string("promtool check metrics < ") + path + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.append(buffer, n);
  EXPECT_EQ(::pclose(pipe), 0) << output;
  EXPECT_EQ(output, "") << "promtool printed lint problems";
  std::remove(path);
}

TEST(PlannerLoopTest, RefusesABadListenAddress) {
  ScriptedSource source;
  ScriptedConnector connector;
  PlannerLoop loop(MakePlanner(LoadConfig(true)), source, connector, {.listen = "nowhere"});
  EXPECT_THAT(loop.StartServer().message(), HasSubstr("expected HOST:PORT"));
}

}  // namespace
}  // namespace tandem::planner
