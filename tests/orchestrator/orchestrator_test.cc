// The local orchestrator against fake role processes (fake_role.py): startup order, gang
// rollback, restarts with a new epoch, drain on scale-down, rolling updates under load (never
// below minAvailable, nothing lost), superseded and failed updates, and `down` leaving no
// process behind. Every test ends by checking that no process group any fake ever ran in is left.
//
// The fakes append their events (start, ready, unready, accepted, finished, exit) with
// CLOCK_MONOTONIC timestamps to one file; the checks replay it, so they depend on what happened
// in order, not on how fast it happened.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "deploy/internal/http_call.h"
#include "deploy/orchestrator.h"
#include "deploy/process.h"
#include "deploy/supervisor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::deploy {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

int64_t MonotonicNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// From the source tree CTest names (TANDEM_SOURCE_DIR); __FILE__ when run by hand.
std::string FakeRolePath() {
  if (const char* root = std::getenv("TANDEM_SOURCE_DIR"); root != nullptr && *root != 0) {
    return std::string(root) + "/tests/orchestrator/fake_role.py";
  }
  std::string here = __FILE__;
  return here.substr(0, here.rfind('/')) + "/fake_role.py";
}

// Polls `condition` every 50 ms for up to `limit`; the limit only bounds a hung test.
bool Eventually(const std::function<bool()>& condition, absl::Duration limit = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return condition();
}

class OrchestratorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tandem-orchestrator-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    events_path_ = dir_ + "/events.jsonl";
    // Every fake inherits this from the orchestrator's environment.
    ::setenv("FAKE_EVENTS", events_path_.c_str(), 1);
  }

  void TearDown() override {
    if (orchestrator_) orchestrator_->Down();
    std::set<int> groups;
    for (const json& event : Events()) groups.insert(event["pgid"].get<int>());
    for (int group : groups) {
      EXPECT_FALSE(ProcessGroupExists(group)) << "process group " << group << " left behind";
      SignalProcessGroup(group, SIGKILL);  // never leak into the next test, even on failure
    }
    if (!HasFailure())
      std::system(("rm -rf " + dir_).c_str());
    else
      std::fprintf(stderr, "kept %s for inspection\n", dir_.c_str());
  }

  OrchestratorOptions Options() {
    OrchestratorOptions options;
    options.run_dir = dir_ + "/run";
    options.command = {"python3", FakeRolePath()};
    options.use_router_port = false;
    options.tick = absl::Milliseconds(50);
    options.probe_timeout = absl::Milliseconds(500);
    options.restart_backoff = absl::Milliseconds(200);
    options.restart_backoff_cap = absl::Seconds(2);
    options.drain_timeout = absl::Seconds(20);
    options.stop_timeout = absl::Seconds(5);
    return options;
  }

  static DeploymentSpec Parse(const std::string& yaml) {
    absl::StatusOr<DeploymentSpec> spec = ParseSpec(yaml, "test.yaml");
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? *spec : DeploymentSpec{};
  }

  void Up(const std::string& yaml) {
    absl::StatusOr<std::unique_ptr<Orchestrator>> created =
        Orchestrator::Create(Parse(yaml), Options());
    ASSERT_TRUE(created.ok()) << created.status();
    orchestrator_ = *std::move(created);
    ASSERT_TRUE(orchestrator_->Start().ok());
    absl::Status up = orchestrator_->WaitUntilUp();
    ASSERT_TRUE(up.ok()) << up;
  }

  std::vector<json> Events() const {
    std::vector<json> events;
    std::ifstream file(events_path_);
    std::string line;
    while (std::getline(file, line)) {
      if (!line.empty()) events.push_back(json::parse(line));
    }
    return events;
  }

  std::vector<json> EventsOf(const std::string& kind, const std::string& role = "") const {
    std::vector<json> selected;
    for (const json& event : Events()) {
      if (event["event"] == kind && (role.empty() || event["role"] == role)) {
        selected.push_back(event);
      }
    }
    return selected;
  }

  // The fewest ready instances `role` had between t0 and t1 (from the fakes' own view).
  int MinReadyBetween(const std::string& role, int64_t t0, int64_t t1) const {
    std::set<int> ready;
    int minimum = 1 << 30;
    std::vector<json> events = Events();  // in time order per process; merge by timestamp
    std::sort(events.begin(), events.end(), [](const json& a, const json& b) {
      return a["t"].get<int64_t>() < b["t"].get<int64_t>();
    });
    for (const json& event : events) {
      const int64_t t = event["t"].get<int64_t>();
      if (t > t1) break;
      if (t >= t0) minimum = std::min(minimum, static_cast<int>(ready.size()));
      if (event["role"] != role) continue;
      const std::string kind = event["event"];
      if (kind == "ready") ready.insert(event["pid"].get<int>());
      if (kind == "unready" || kind == "exit") ready.erase(event["pid"].get<int>());
      if (t >= t0) minimum = std::min(minimum, static_cast<int>(ready.size()));
    }
    return std::min(minimum, static_cast<int>(ready.size()));
  }

  // Request ids a fake accepted but never finished: lost work.
  std::set<std::string> LostRequests() const {
    std::set<std::string> open;
    for (const json& event : Events()) {
      if (event["event"] == "accepted") open.insert(event["id"].get<std::string>());
    }
    for (const json& event : Events()) {
      if (event["event"] == "finished") open.erase(event["id"].get<std::string>());
    }
    return open;
  }

  const InstanceStatus* Instance(const DeploymentStatus& status, const std::string& id) {
    for (const RoleStatus& role : status.roles) {
      for (const InstanceStatus& instance : role.instances) {
        if (instance.id == id) return &instance;
      }
    }
    return nullptr;
  }

  std::string dir_;
  std::string events_path_;
  std::unique_ptr<Orchestrator> orchestrator_;
};

// Sends fake work to the ready instances of a role, as a router would: a request the instance
// refuses (503 while draining) or cannot take (connection refused) goes to another instance.
class Load {
 public:
  Load(Orchestrator& orchestrator, std::string role, int threads, int work_ms)
      : orchestrator_(orchestrator), role_(std::move(role)), work_ms_(work_ms) {
    for (int i = 0; i < threads; ++i) threads_.emplace_back([this, i] { Run(i); });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    for (std::thread& thread : threads_) {
      if (thread.joinable()) thread.join();
    }
  }
  int succeeded() const { return succeeded_; }
  int failed() const { return failed_; }

 private:
  void Run(int thread_index) {
    std::mt19937 random(1234 + thread_index);
    while (!stop_) {
      const std::string id = absl::StrCat("r", next_id_++);
      bool done = false;
      for (int attempt = 0; attempt < 400 && !done; ++attempt) {
        std::vector<std::string> ready;
        DeploymentStatus status = orchestrator_.Status();
        if (const RoleStatus* role = status.FindRole(role_)) {
          for (const InstanceStatus& instance : role->instances) {
            if (instance.state == "ready") ready.push_back(instance.processes[0].address);
          }
        }
        if (!ready.empty()) {
          const std::string& address = ready[random() % ready.size()];
          absl::StatusOr<internal::HttpCallResult> answer =
              internal::HttpCall({.address = address,
                                  .path = absl::StrCat("/work?id=", id, "&ms=", work_ms_),
                                  .timeout = absl::Seconds(10)});
          if (answer.ok() && answer->status == 200) {
            done = true;
            break;
          }
        }
        absl::SleepFor(absl::Milliseconds(20));
      }
      (done ? succeeded_ : failed_)++;
    }
  }

  Orchestrator& orchestrator_;
  std::string role_;
  int work_ms_;
  std::atomic<bool> stop_{false};
  std::atomic<int> next_id_{0};
  std::atomic<int> succeeded_{0};
  std::atomic<int> failed_{0};
  std::vector<std::thread> threads_;
};

constexpr char kHeader[] = R"(apiVersion: tandem/v1
name: t
model: m.gguf
roles:
)";

TEST_F(OrchestratorTest, StartsRolesInDependencyOrder) {
  Up(absl::StrCat(kHeader, R"(
  router: {env: {FAKE_READY_AFTER_MS: "300"}}
  decode:
    startsAfter: [router]
    env: {FAKE_READY_AFTER_MS: "200"}
  prefill:
    replicas: 2
    startsAfter: [decode]
)"));
  DeploymentStatus status = orchestrator_->Status();
  EXPECT_EQ(status.phase, "running");
  EXPECT_EQ(status.FindRole("prefill")->ready, 2);
  std::vector<json> router_ready = EventsOf("ready", "router");
  std::vector<json> decode_ready = EventsOf("ready", "decode");
  ASSERT_EQ(router_ready.size(), 1u);
  ASSERT_EQ(decode_ready.size(), 1u);
  for (const json& start : EventsOf("start", "decode")) {
    EXPECT_GT(start["t"].get<int64_t>(), router_ready[0]["t"].get<int64_t>());
  }
  ASSERT_EQ(EventsOf("start", "prefill").size(), 2u);
  for (const json& start : EventsOf("start", "prefill")) {
    EXPECT_GT(start["t"].get<int64_t>(), decode_ready[0]["t"].get<int64_t>());
  }
  // The workers were told where the router is.
  const std::string router_address = status.FindRole("router")->instances[0].processes[0].address;
  EXPECT_THAT(EventsOf("start", "decode")[0]["args"].get<std::string>(),
              HasSubstr("--router http://" + router_address));
}

TEST_F(OrchestratorTest, GangThatNeverBecomesReadyIsRolledBackWhole) {
  auto created = Orchestrator::Create(Parse(absl::StrCat(kHeader, R"(
  router: {}
  decode:
    replicas: 3
    minAvailable: 2
    readyTimeoutSeconds: 4  # room for a slow start of the fake role on a loaded machine
    startsAfter: [router]
    env: {FAKE_NEVER_READY: "1"}
)")),
                                      Options());
  ASSERT_TRUE(created.ok());
  orchestrator_ = *std::move(created);
  ASSERT_TRUE(orchestrator_->Start().ok());
  absl::Status up = orchestrator_->WaitUntilUp();
  EXPECT_EQ(up.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(up.message(), HasSubstr("role 'decode': 0 of the 2 instances"));
  EXPECT_THAT(up.message(), HasSubstr("readyTimeoutSeconds"));
  EXPECT_THAT(up.message(), HasSubstr("decode-0.log"));
  ASSERT_TRUE(orchestrator_->WaitUntilStopped(absl::Seconds(30)).ok());
  EXPECT_EQ(orchestrator_->Status().phase, "failed");
  EXPECT_TRUE(orchestrator_->ProcessGroups().empty());
  EXPECT_EQ(EventsOf("start", "decode").size(), 3u);
  for (const json& start : EventsOf("start")) {
    EXPECT_FALSE(ProcessGroupExists(start["pgid"].get<int>())) << start.dump();
  }
}

TEST_F(OrchestratorTest, ScalingGroupReplicaIsRolledBackWithItsReadyMembers) {
  auto created = Orchestrator::Create(Parse(absl::StrCat(kHeader, R"(
  router: {}
  prefill: {startsAfter: [router], env: {FAKE_NEVER_READY: "1"}}
  decode: {startsAfter: [router]}
scalingGroups:
  - {name: pd, roles: [prefill, decode], replicas: 1, minAvailable: 1, readyTimeoutSeconds: 6}
)")),
                                      Options());
  ASSERT_TRUE(created.ok());
  orchestrator_ = *std::move(created);
  ASSERT_TRUE(orchestrator_->Start().ok());
  absl::Status up = orchestrator_->WaitUntilUp();
  EXPECT_THAT(up.message(), HasSubstr("scaling group 'pd'"));
  ASSERT_TRUE(orchestrator_->WaitUntilStopped(absl::Seconds(30)).ok());
  // The decode instance was ready, and still went with its group.
  EXPECT_EQ(EventsOf("ready", "decode").size(), 1u);
  for (const json& start : EventsOf("start")) {
    EXPECT_FALSE(ProcessGroupExists(start["pgid"].get<int>())) << start.dump();
  }
}

TEST_F(OrchestratorTest, KilledProcessRestartsOnItsAddressWithANewEpoch) {
  Up(absl::StrCat(kHeader, R"(
  router: {}
  decode: {startsAfter: [router]}
)"));
  DeploymentStatus before = orchestrator_->Status();
  const InstanceStatus* decode = Instance(before, "decode/0");
  ASSERT_NE(decode, nullptr);
  const ProcessStatus old_process = decode->processes[0];
  ASSERT_FALSE(old_process.epoch.empty());
  ASSERT_EQ(::kill(old_process.pid, SIGKILL), 0);
  DeploymentStatus after;
  ASSERT_TRUE(Eventually([&] {
    after = orchestrator_->Status();
    const InstanceStatus* restarted = Instance(after, "decode/0");
    return restarted != nullptr && restarted->restarts == 1 && restarted->state == "ready" &&
           !restarted->processes[0].epoch.empty();
  })) << FormatStatus(after);
  const InstanceStatus* restarted = Instance(after, "decode/0");
  EXPECT_NE(restarted->processes[0].epoch, old_process.epoch);
  EXPECT_NE(restarted->processes[0].pid, old_process.pid);
  EXPECT_EQ(restarted->processes[0].address, old_process.address);
  EXPECT_THAT(restarted->last_exit, HasSubstr("signal 9"));
  // What the router would see: /health on the same address reports the new epoch.
  absl::StatusOr<internal::HttpCallResult> health =
      internal::HttpCall({.address = old_process.address, .path = "/health"});
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(json::parse(health->body)["epoch"], restarted->processes[0].epoch);
}

TEST_F(OrchestratorTest, CrashLoopBacksOffAndKeepsRestarting) {
  Up(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 2, minAvailable: 1, startsAfter: [router]}
)"));
  // A second role that crashes shortly after each start: restarts keep coming, with backoff.
  ASSERT_TRUE(orchestrator_->Scale("decode", 1).ok());
  DeploymentSpec spec = Parse(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 1, minAvailable: 1, startsAfter: [router]}
  worker: {replicas: 1, minAvailable: 0, env: {FAKE_CRASH_AFTER_MS: "100"}}
)"));
  ASSERT_TRUE(orchestrator_->Apply(spec).ok());
  ASSERT_TRUE(Eventually([&] {
    const DeploymentStatus status = orchestrator_->Status();
    const RoleStatus* worker = status.FindRole("worker");
    return worker != nullptr && !worker->instances.empty() && worker->instances[0].restarts >= 3 &&
           EventsOf("start", "worker").size() >= 4;
  }));
  // Backoff 200 ms doubling: the 3rd restart comes at least 200+400 ms after the 1st crash.
  std::vector<json> crashes;
  for (const json& event : EventsOf("exit", "worker")) {
    if (event["reason"] == "crash") crashes.push_back(event);
  }
  std::vector<json> starts = EventsOf("start", "worker");
  ASSERT_GE(starts.size(), 4u);
  ASSERT_GE(crashes.size(), 3u);
  const int64_t gap1 = starts[2]["t"].get<int64_t>() - crashes[1]["t"].get<int64_t>();
  const int64_t gap0 = starts[1]["t"].get<int64_t>() - crashes[0]["t"].get<int64_t>();
  EXPECT_GE(gap0, 200'000'000);  // the first restart waits the base delay
  EXPECT_GE(gap1, 400'000'000);  // the second waits twice as long
}

TEST_F(OrchestratorTest, ScaleDownDuringLoadDrainsAndLosesNothing) {
  Up(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 3, minAvailable: 1, startsAfter: [router]}
)"));
  EXPECT_EQ(orchestrator_->Scale("decode", 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(orchestrator_->Scale("nope", 1).code(), absl::StatusCode::kNotFound);
  Load load(*orchestrator_, "decode", 6, 300);
  absl::SleepFor(absl::Milliseconds(600));  // every instance has work in flight
  const int64_t t0 = MonotonicNanos();
  ASSERT_TRUE(orchestrator_->Scale("decode", 1).ok());
  ASSERT_TRUE(Eventually([&] {
    const DeploymentStatus status = orchestrator_->Status();
    const RoleStatus* decode = status.FindRole("decode");
    return decode->instances.size() == 1 && decode->ready == 1;
  }));
  const int64_t t1 = MonotonicNanos();
  absl::SleepFor(absl::Milliseconds(300));
  load.Stop();
  EXPECT_EQ(load.failed(), 0);
  EXPECT_GT(load.succeeded(), 10);
  EXPECT_THAT(LostRequests(), ::testing::IsEmpty());
  EXPECT_GE(MinReadyBetween("decode", t0, t1), 1);
  // The two retired instances drained: they exited by themselves once idle, not killed.
  int drained = 0;
  for (const json& event : EventsOf("exit", "decode")) drained += event["reason"] == "drained";
  EXPECT_EQ(drained, 2);
  // And scale back up.
  ASSERT_TRUE(orchestrator_->Scale("decode", 2).ok());
  ASSERT_TRUE(Eventually([&] { return orchestrator_->Status().FindRole("decode")->ready == 2; }));
}

constexpr char kTwoDecoders[] = R"(
  router: {}
  decode:
    replicas: 2
    minAvailable: 2
    startsAfter: [router]
    env: {FAKE_READY_AFTER_MS: "300"}
)";

TEST_F(OrchestratorTest, RollingUpdateUnderLoadKeepsMinAvailableAndLosesNothing) {
  Up(absl::StrCat(kHeader, kTwoDecoders));
  const InstanceStatus router_before = orchestrator_->Status().FindRole("router")->instances[0];
  Load load(*orchestrator_, "decode", 4, 200);
  absl::SleepFor(absl::Milliseconds(400));
  const int64_t t0 = MonotonicNanos();
  std::string next = absl::StrCat(kHeader, kTwoDecoders);
  next = absl::StrReplaceAll(
      next, {{"startsAfter: [router]\n", "startsAfter: [router]\n    args: [--v2]\n"}});
  absl::StatusOr<int> generation = orchestrator_->Apply(Parse(next));
  ASSERT_TRUE(generation.ok()) << generation.status();
  EXPECT_EQ(*generation, 2);
  EXPECT_THAT(orchestrator_->Status().update.changes,
              ::testing::ElementsAre("decode: args changed; rolling replacement"));
  DeploymentStatus status;
  ASSERT_TRUE(Eventually([&] {
    status = orchestrator_->Status();
    return status.update.state != "in_progress";
  })) << FormatStatus(status);
  const int64_t t1 = MonotonicNanos();
  absl::SleepFor(absl::Milliseconds(300));
  load.Stop();
  EXPECT_EQ(status.update.state, "complete") << status.update.message;
  const RoleStatus* decode = status.FindRole("decode");
  ASSERT_EQ(decode->instances.size(), 2u);
  for (const InstanceStatus& instance : decode->instances) {
    EXPECT_EQ(instance.generation, 2);
    EXPECT_GE(instance.ordinal, 2);  // both replaced
  }
  for (const json& start : EventsOf("start", "decode")) {
    if (start["instance"].get<std::string>() >= "decode/2") {
      EXPECT_THAT(start["args"].get<std::string>(), HasSubstr("--v2"));
    }
  }
  // Never below minAvailable (2) ready, as the instances themselves saw it.
  EXPECT_GE(MinReadyBetween("decode", t0, t1), 2);
  EXPECT_EQ(load.failed(), 0);
  EXPECT_GT(load.succeeded(), 5);
  EXPECT_THAT(LostRequests(), ::testing::IsEmpty());
  // The router did not change: untouched.
  const InstanceStatus& router_after = status.FindRole("router")->instances[0];
  EXPECT_EQ(router_after.processes[0].pid, router_before.processes[0].pid);
}

TEST_F(OrchestratorTest, LaterUpdateSupersedesOneInProgress) {
  Up(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 2, minAvailable: 1, startsAfter: [router]}
)"));
  const int64_t t0 = MonotonicNanos();
  ASSERT_TRUE(orchestrator_
                  ->Apply(Parse(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 2, minAvailable: 1, startsAfter: [router], args: [--v2],
           env: {FAKE_READY_AFTER_MS: "1500"}}
)")))
                  .ok());
  // The first surge member of generation 2 is starting (slowly) when generation 3 arrives.
  ASSERT_TRUE(Eventually([&] { return EventsOf("start", "decode").size() >= 3; }));
  ASSERT_TRUE(orchestrator_
                  ->Apply(Parse(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 2, minAvailable: 1, startsAfter: [router], args: [--v3]}
)")))
                  .ok());
  DeploymentStatus status;
  ASSERT_TRUE(Eventually([&] {
    status = orchestrator_->Status();
    return status.update.state != "in_progress";
  })) << FormatStatus(status);
  const int64_t t1 = MonotonicNanos();
  EXPECT_EQ(status.update.state, "complete");
  EXPECT_EQ(status.update.generation, 3);
  EXPECT_THAT(status.update.message, HasSubstr("supersedes generation 2"));
  const RoleStatus* decode = status.FindRole("decode");
  ASSERT_EQ(decode->instances.size(), 2u);
  for (const InstanceStatus& instance : decode->instances) EXPECT_EQ(instance.generation, 3);
  // The generation-2 member never became ready: it was stopped, not kept.
  for (const json& event : EventsOf("ready", "decode")) {
    EXPECT_THAT(event["instance"].get<std::string>(), ::testing::Ne("decode/2"));
  }
  EXPECT_GE(MinReadyBetween("decode", t0, t1), 1);
}

TEST_F(OrchestratorTest, FailedUpdateStopsAndLeavesTheOldInstancesServing) {
  Up(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 2, minAvailable: 1, startsAfter: [router]}
)"));
  DeploymentStatus before = orchestrator_->Status();
  std::set<pid_t> old_pids;
  for (const InstanceStatus& instance : before.FindRole("decode")->instances) {
    old_pids.insert(instance.processes[0].pid);
  }
  const int64_t t0 = MonotonicNanos();
  ASSERT_TRUE(orchestrator_
                  ->Apply(Parse(absl::StrCat(kHeader, R"(
  router: {}
  decode: {replicas: 2, minAvailable: 1, startsAfter: [router], readyTimeoutSeconds: 1,
           env: {FAKE_NEVER_READY: "1"}}
)")))
                  .ok());
  DeploymentStatus status;
  ASSERT_TRUE(Eventually([&] {
    status = orchestrator_->Status();
    return status.update.state == "failed" && status.FindRole("decode")->instances.size() == 2;
  })) << FormatStatus(status);
  EXPECT_THAT(status.update.message, HasSubstr("decode/2 did not become ready within 1s"));
  EXPECT_THAT(status.update.message, HasSubstr("returns to generation 1"));
  EXPECT_EQ(status.generation, 1);
  std::set<pid_t> pids;
  for (const InstanceStatus& instance : status.FindRole("decode")->instances) {
    EXPECT_EQ(instance.state, "ready");
    EXPECT_EQ(instance.generation, 1);
    pids.insert(instance.processes[0].pid);
  }
  EXPECT_EQ(pids, old_pids);  // the very same processes kept serving
  EXPECT_EQ(MinReadyBetween("decode", t0, MonotonicNanos()), 2);
  // Only one new instance was tried (surge one at a time: decode/2, named in the message above),
  // and it is gone. (Its own start event may be missing: stopped after 1 s, a slow host's
  // interpreter can be killed before it records anything.)
  for (const json& event : EventsOf("start", "decode")) {
    EXPECT_THAT(event["instance"].get<std::string>(),
                ::testing::AnyOf("decode/0", "decode/1", "decode/2"));
  }
}

TEST_F(OrchestratorTest, SupervisorControlApiAndDownLeaveNoProcess) {
  SupervisorOptions options{.run_root = dir_ + "/run", .spec_path = "test.yaml"};
  absl::StatusOr<std::unique_ptr<Supervisor>> supervisor =
      Supervisor::Start(Parse(absl::StrCat(kHeader, R"(
  router: {}
  decode:
    gpusPerInstance: 2
    nodesPerInstance: 2
    startsAfter: [router]
    env: {FAKE_SPAWN_CHILD: "1"}
)")),
                        options, Options());
  ASSERT_TRUE(supervisor.ok()) << supervisor.status();
  ASSERT_TRUE((*supervisor)->orchestrator().WaitUntilUp().ok());
  (*supervisor)->RefreshStateFile();

  // A second supervisor for the same deployment is refused.
  absl::StatusOr<std::unique_ptr<Supervisor>> second = Supervisor::Start(
      Parse(absl::StrCat(kHeader, "  router: {}\n  worker: {}\n")), options, Options());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kAlreadyExists);

  absl::StatusOr<SupervisorClient> client = SupervisorClient::Connect(dir_ + "/run", "");
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ(client->state().process_groups.size(), 3u);  // router + 2 ranks
  absl::StatusOr<DeploymentStatus> status = client->Status();
  ASSERT_TRUE(status.ok()) << status.status();
  const InstanceStatus* decode = Instance(*status, "decode/0");
  ASSERT_NE(decode, nullptr);
  ASSERT_EQ(decode->processes.size(), 2u);  // a TP group over two "hosts"
  EXPECT_THAT(EventsOf("start", "decode")[0]["args"].get<std::string>(),
              HasSubstr("--nodes 2 --node-rank"));
  EXPECT_EQ(client->Scale("decode", 2).code(), absl::StatusCode::kOk);
  EXPECT_EQ(client->Scale("decode", -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(client->Scale("missing", 1).code(), absl::StatusCode::kNotFound);
  absl::StatusOr<std::pair<int, std::vector<std::string>>> bad =
      client->Apply("apiVersion: tandem/v1\nname: t\nroles: {router: {replicas: -1}}\n", "x.yaml");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("x.yaml:3"));
  ASSERT_TRUE(Eventually([&] {
    absl::StatusOr<DeploymentStatus> now = client->Status();
    return now.ok() && now->FindRole("decode")->ready == 2;
  }));
  SupervisorClient intruder(StateFile{.control_url = client->state().control_url, .token = "x"});
  EXPECT_EQ(intruder.Status().status().code(), absl::StatusCode::kPermissionDenied);

  ASSERT_TRUE(client->RequestDown().ok());
  ASSERT_TRUE(Eventually([&] { return (*supervisor)->down_requested(); }));
  (*supervisor)->Shutdown();
  EXPECT_FALSE(FindDeployment(dir_ + "/run", "").ok());  // state file removed
  std::set<int> groups;
  for (const json& event : EventsOf("start")) groups.insert(event["pgid"].get<int>());
  EXPECT_EQ(groups.size(), 5u);  // router, 2 instances x 2 ranks
  for (int group : groups) {
    // The `sleep` children the decode ranks started are in these groups too.
    EXPECT_FALSE(ProcessGroupExists(group)) << "group " << group;
  }
  // Down went in reverse startup order: every decode rank exited before the router did.
  int64_t last_decode_exit = 0, router_exit = 0;
  for (const json& event : EventsOf("exit")) {
    if (event["role"] == "decode")
      last_decode_exit = std::max(last_decode_exit, event["t"].get<int64_t>());
    if (event["role"] == "router") router_exit = event["t"].get<int64_t>();
  }
  EXPECT_GT(router_exit, last_decode_exit);
}

// Runs a shell command; returns its exit code and (in `output`) what it printed.
int Shell(const std::string& command, std::string* output) {
  output->clear();
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output->append(buffer, n);
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The commands as a user runs them: up --detach, status, scale --wait, logs, apply, down.
TEST_F(OrchestratorTest, CommandLineUpStatusScaleLogsApplyDown) {
  const char* binary = std::getenv("TANDEM_BINARY");
  if (binary == nullptr || ::access(binary, X_OK) != 0) {
    GTEST_SKIP() << "TANDEM_BINARY (the tandem executable) is not built; ctest sets it";
  }
  const std::string spec_path = dir_ + "/local.yaml";
  std::ofstream(spec_path) << kHeader << R"(
  router: {}
  prefill: {startsAfter: [router]}
  decode: {startsAfter: [router]}
)";
  const std::string tandem =
      absl::StrCat("TANDEM_ROLE_COMMAND='python3 ", FakeRolePath(), "' ", binary, " ");
  const std::string where = absl::StrCat(" --run-dir ", dir_, "/run");
  std::string out;
  ASSERT_EQ(Shell(tandem + "up --detach --random-ports" + where + " " + spec_path, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("deployment 't' is up"));
  EXPECT_THAT(out, HasSubstr("router: http://127.0.0.1:"));
  // A second `up` of the same deployment is refused.
  EXPECT_EQ(Shell(tandem + "up --detach --random-ports" + where + " " + spec_path, &out), 1);
  EXPECT_THAT(out, HasSubstr("already running"));

  ASSERT_EQ(Shell(tandem + "status" + where, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("decode/0"));
  ASSERT_EQ(Shell(tandem + "status --json" + where, &out), 0) << out;
  absl::StatusOr<DeploymentStatus> status = StatusFromJson(json::parse(out));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->phase, "running");

  ASSERT_EQ(Shell(tandem + "scale decode 2 --wait --timeout 60" + where, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("decode: 2 ready of 2 wanted, 2 running"));
  EXPECT_EQ(Shell(tandem + "scale decode 0" + where, &out), 2) << out;
  EXPECT_THAT(out, HasSubstr("not below minAvailable"));

  ASSERT_EQ(Shell(tandem + "logs decode/1" + where, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("starting decode/1 rank 0"));
  EXPECT_EQ(Shell(tandem + "logs nope" + where, &out), 1);
  EXPECT_THAT(out, HasSubstr("roles with logs: decode, prefill, router"));

  std::string changed = absl::StrCat(kHeader, R"(
  router: {}
  prefill: {startsAfter: [router], args: [--v2]}
  decode: {replicas: 2, startsAfter: [router]}
)");
  std::ofstream(spec_path) << changed;
  ASSERT_EQ(Shell(tandem + "apply --timeout 60" + where + " " + spec_path, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("prefill: args changed; rolling replacement"));
  EXPECT_THAT(out, HasSubstr("update complete"));

  ASSERT_EQ(Shell(tandem + "down" + where, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("stopped"));
  for (const json& start : EventsOf("start")) {
    EXPECT_FALSE(ProcessGroupExists(start["pgid"].get<int>())) << start.dump();
  }
  EXPECT_EQ(Shell(tandem + "status" + where, &out), 1);
  EXPECT_THAT(out, HasSubstr("no deployment is running"));
}

}  // namespace
}  // namespace tandem::deploy
