// The live planner end to end: `tandem up` runs a router, a prefill and a decode role as fake
// processes (fake_role.py) whose /metrics follow a load signal this test controls, and the real
// `tandem planner` (started by the orchestrator with its usual command line: --router,
// --connector local, --orchestrator, --scale, the token in the environment). The load goes up,
// stays flat with noise, and comes down: each role must go 1 -> 2 -> 1 through the orchestrator's
// scale API, with no other change, and nothing may be left running afterwards.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "deploy/supervisor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "net/http_client.h"
#include "planner/prometheus_text.h"

namespace tandem::planner {
namespace {

using ::testing::HasSubstr;

// This test's folder: from the source tree CTest names (TANDEM_SOURCE_DIR); __FILE__ by hand.
std::string Here() {
  if (const char* root = std::getenv("TANDEM_SOURCE_DIR"); root != nullptr && *root != 0) {
    return std::string(root) + "/tests/planner";
  }
  std::string here = __FILE__;
  return here.substr(0, here.rfind('/'));
}

int Shell(const std::string& command, std::string* output) {
  output->clear();
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) output->append(buffer, n);
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool Eventually(const std::function<bool()>& condition, absl::Duration limit) {
  const absl::Time deadline = absl::Now() + limit;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return condition();
}

class PlannerLiveTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* binary = std::getenv("TANDEM_BINARY");
    if (binary == nullptr || ::access(binary, X_OK) != 0) {
      GTEST_SKIP() << "TANDEM_BINARY (the tandem executable) is not built; ctest sets it";
    }
    char pattern[] = "/tmp/tandem-planner-live-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    load_path_ = dir_ + "/load.json";
    ::setenv("FAKE_LOAD_FILE", load_path_.c_str(), 1);
    binary_ = binary;
    tandem_ = absl::StrCat("TANDEM_ROLE_COMMAND='python3 ", Here(), "/fake_role.py' ", binary, " ");
    where_ = absl::StrCat(" --run-dir ", dir_, "/run");
  }

  void TearDown() override {
    if (dir_.empty()) return;
    std::string out;
    Shell(tandem_ + "down" + where_, &out);
    for (pid_t pid : pids_) {
      EXPECT_NE(::kill(pid, 0), 0) << "process " << pid << " left behind";
      ::kill(pid, SIGKILL);
    }
    if (!HasFailure()) {
      std::system(("rm -rf " + dir_).c_str());
    } else {
      std::fprintf(stderr, "kept %s for inspection\n", dir_.c_str());
      Shell("tail -n 40 " + dir_ + "/run/*/logs/planner-0.log", &out);
      std::fprintf(stderr, "%s\n", out.c_str());
    }
  }

  // The load signal the fakes read (fake_role.py): per-role load totals, noise, traffic rates.
  void SetLoad(const std::string& json) {
    std::ofstream(load_path_ + ".tmp") << json;
    std::rename((load_path_ + ".tmp").c_str(), load_path_.c_str());
  }
  void SetLoad(double prefill_tokens, double decode_blocks, double noise) {
    SetLoad(absl::StrCat(R"({"prefill": )", prefill_tokens, R"(, "decode": )", decode_blocks,
                         R"(, "noise": )", noise, "}"));
  }

  // Starts the deployment: a router, the planner with `planner_yaml` as its --config, and
  // `roles` (by default prefill and decode autoscaled 1..3), as fakes or as the real processes.
  // Draining instances get 5 s before SIGTERM (then SIGKILL 10 s later), so a process that does
  // not finish its drain cannot hold the test for the default 120 s.
  void Up(const std::string& planner_yaml, bool fake_roles = true,
          const std::string& roles =
              "  prefill: {startsAfter: [router], autoscaling: {min: 1, "
              "max: 3}}\n  decode: {startsAfter: [router], autoscaling: "
              "{min: 1, max: 3}}\n") {
    std::ofstream(dir_ + "/planner.yaml") << planner_yaml;
    std::ofstream(dir_ + "/spec.yaml")
        << absl::StrCat("apiVersion: tandem/v1\nname: plannertest\nmodel: ",
                        fake_roles ? "fake.gguf" : "random:tiny",
                        "\nroles:\n  router: {}\n  planner: {startsAfter: [router], args: "
                        "[--config, ",
                        dir_, "/planner.yaml]}\n", roles);
    std::string out;
    ASSERT_EQ(Shell((fake_roles ? tandem_ : binary_ + " ") +
                        "up --detach --random-ports --drain-timeout 5" + where_ + " " + dir_ +
                        "/spec.yaml",
                    &out),
              0)
        << out;
  }

  absl::StatusOr<deploy::DeploymentStatus> Status() {
    absl::StatusOr<deploy::SupervisorClient> client =
        deploy::SupervisorClient::Connect(dir_ + "/run", "");
    if (!client.ok()) return client.status();
    absl::StatusOr<deploy::DeploymentStatus> status = client->Status();
    if (status.ok()) {
      for (const deploy::RoleStatus& role : status->roles) {
        for (const deploy::InstanceStatus& instance : role.instances) {
          for (const deploy::ProcessStatus& process : instance.processes) {
            if (process.pid > 0) pids_.insert(process.pid);
          }
        }
      }
    }
    return status;
  }

  // (desired, ready) of a role.
  std::pair<int, int> Counts(const std::string& role) {
    absl::StatusOr<deploy::DeploymentStatus> status = Status();
    if (!status.ok()) return {-1, -1};
    const deploy::RoleStatus* found = status->FindRole(role);
    return found == nullptr ? std::make_pair(-1, -1) : std::make_pair(found->desired, found->ready);
  }

  Exposition PlannerMetrics() {
    absl::StatusOr<deploy::DeploymentStatus> status = Status();
    if (!status.ok()) return {};
    const deploy::RoleStatus* planner = status->FindRole("planner");
    if (planner == nullptr || planner->instances.empty() ||
        planner->instances[0].processes.empty()) {
      return {};
    }
    absl::StatusOr<net::HttpResult> answer = net::HttpClient::Fetch(
        {.url = absl::StrCat("http://", planner->instances[0].processes[0].address, "/metrics"),
         .timeout = absl::Seconds(2)});
    if (!answer.ok() || answer->status != 200) return {};
    return ParsePrometheusText(answer->body);
  }

  double Decisions(const Exposition& metrics, const std::string& role, const std::string& action) {
    return metrics.Sum("tandem_planner_decisions_total", {{"role", role}, {"action", action}});
  }

  std::string dir_, load_path_, binary_, tandem_, where_;
  std::set<pid_t> pids_;
};

TEST_F(PlannerLiveTest, ScalesEachRoleOutAndBackInWithoutFlapping) {
  // Low load: prefill 1000 tokens (SLA point 2000 per instance), decode 20 blocks (SLA point 40).
  SetLoad(1000, 20, 0.1);
  Up(R"(mode: load
interval_s: 0.5
targets: {ttft_ms: 250, itl_ms: 50}
prefill: {min: 1, max: 3}
decode: {min: 1, max: 3}
scale_out: {cooldown_s: 1}
scale_in: {cooldown_s: 2, margin: 0.2, stable_intervals: 3, step: 1}
load: {window: 60, min_samples: 4}
)");
  if (HasFatalFailure()) return;
  std::string out;

  // The planner learns the latency/load relation while nothing needs to change.
  ASSERT_TRUE(Eventually(
      [&] {
        Exposition m = PlannerMetrics();
        return Decisions(m, "decode", "hold") >= 6;
      },
      absl::Seconds(30)))
      << "the planner made no decisions";
  EXPECT_EQ(Counts("decode").first, 1);
  EXPECT_EQ(Counts("prefill").first, 1);

  // Up: 3000 tokens and 60 blocks on one instance each are past the SLA points.
  SetLoad(3000, 60, 0.1);
  ASSERT_TRUE(
      Eventually([&] { return Counts("decode") == std::make_pair(2, 2); }, absl::Seconds(20)))
      << "decode did not scale out";
  ASSERT_TRUE(
      Eventually([&] { return Counts("prefill") == std::make_pair(2, 2); }, absl::Seconds(20)))
      << "prefill did not scale out";

  // Flat, noisy load: 2 instances each run under the SLA point, 1 would be over it with the
  // margin. Nothing may move.
  const Exposition before = PlannerMetrics();
  for (int i = 0; i < 16; ++i) {
    absl::SleepFor(absl::Milliseconds(250));
    EXPECT_EQ(Counts("decode").first, 2);
    EXPECT_EQ(Counts("prefill").first, 2);
  }
  const Exposition flat = PlannerMetrics();
  for (const char* role : {"prefill", "decode"}) {
    EXPECT_EQ(Decisions(flat, role, "up"), Decisions(before, role, "up")) << role;
    EXPECT_EQ(Decisions(flat, role, "down"), Decisions(before, role, "down")) << role;
    EXPECT_GT(Decisions(flat, role, "hold"), Decisions(before, role, "hold")) << role;
  }

  // Down: one instance of each carries the load again.
  SetLoad(1000, 20, 0.1);
  ASSERT_TRUE(
      Eventually([&] { return Counts("decode") == std::make_pair(1, 1); }, absl::Seconds(20)))
      << "decode did not scale in";
  ASSERT_TRUE(
      Eventually([&] { return Counts("prefill") == std::make_pair(1, 1); }, absl::Seconds(20)))
      << "prefill did not scale in";
  absl::SleepFor(absl::Seconds(1));

  const Exposition after = PlannerMetrics();
  for (const char* role : {"prefill", "decode"}) {
    EXPECT_EQ(Decisions(after, role, "up"), 1) << role;
    EXPECT_EQ(Decisions(after, role, "down"), 1) << role;
    EXPECT_EQ(after.Sum("tandem_planner_replicas", {{"role", role}, {"kind", "target"}}), 1);
  }
  EXPECT_EQ(after.Sum("tandem_planner_scale_errors_total"), 0);
  EXPECT_EQ(after.Sum("tandem_planner_advisory"), 0);

  // The decisions are in the planner's log, with their reasons.
  ASSERT_EQ(Shell(tandem_ + "logs planner" + where_, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("planner started"));
  EXPECT_THAT(out, HasSubstr("decode_action=up decode_reason=load"));
  EXPECT_THAT(out, HasSubstr("every instance is past the SLA point"));

  ASSERT_EQ(Shell(tandem_ + "down" + where_, &out), 0) << out;
  EXPECT_THAT(out, HasSubstr("stopped"));
  ASSERT_TRUE(Eventually(
      [&] {
        for (pid_t pid : pids_) {
          if (::kill(pid, 0) == 0) return false;
        }
        return true;
      },
      absl::Seconds(10)));
}

// Throughput mode: the router's token rates through the latency profile of
// examples/planner/example-profile.json (docs/planner.md works through it). 1200-token prompts,
// no prefix hits: one prefill instance carries 9843 tokens/s within TTFT 400 ms. Answers average
// 80 tokens (400 tokens/s over 5 requests/s), so a sequence decodes at 1200 + 80 / 2 = 1240 tokens
// of context, where 30 sequences take a 39.3 ms step: 763.4 tokens/s per decode instance within
// ITL 40 ms.
TEST_F(PlannerLiveTest, ThroughputModeSizesFromTheRoutersRates) {
  SetLoad(R"({"prompt_tps": 6000, "output_tps": 400, "prompt_tokens": 1200})");
  Up(absl::StrCat(R"(mode: throughput
interval_s: 0.5
targets: {ttft_ms: 400, itl_ms: 40}
profile: )",
                  std::getenv("TANDEM_SOURCE_DIR") ? std::getenv("TANDEM_SOURCE_DIR") : "..",
                  R"(/examples/planner/example-profile.json
predictor: {kind: last_value}
prefill: {min: 1, max: 3, gpus_per_instance: 2}
decode: {min: 1, max: 3, gpus_per_instance: 4}
scale_out: {cooldown_s: 1}
scale_in: {cooldown_s: 1, margin: 0.2, stable_intervals: 2, step: 1}
)"));
  if (HasFatalFailure()) return;
  ASSERT_TRUE(Eventually([&] { return Decisions(PlannerMetrics(), "decode", "hold") >= 3; },
                         absl::Seconds(30)));
  Exposition m = PlannerMetrics();
  EXPECT_NEAR(m.Sum("tandem_planner_observed_load", {{"role", "prefill"}}), 6000, 600);
  EXPECT_NEAR(m.Sum("tandem_planner_observed_load", {{"role", "decode"}}), 400, 40);
  EXPECT_NEAR(m.Sum("tandem_planner_capacity_per_instance", {{"role", "prefill"}}), 9843, 20);
  EXPECT_NEAR(m.Sum("tandem_planner_capacity_per_instance", {{"role", "decode"}}), 763.4, 2);
  EXPECT_EQ(Counts("prefill").first, 1);
  EXPECT_EQ(Counts("decode").first, 1);

  // 15000 tokens/s need 2 prefill instances, 1000 generated tokens/s 2 decode instances.
  SetLoad(R"({"prompt_tps": 15000, "output_tps": 1000, "prompt_tokens": 1200})");
  ASSERT_TRUE(
      Eventually([&] { return Counts("prefill").first == 2 && Counts("decode").first == 2; },
                 absl::Seconds(20)))
      << "did not scale out";
  SetLoad(R"({"prompt_tps": 6000, "output_tps": 400, "prompt_tokens": 1200})");
  ASSERT_TRUE(
      Eventually([&] { return Counts("prefill").first == 1 && Counts("decode").first == 1; },
                 absl::Seconds(20)))
      << "did not scale in";
  const Exposition after = PlannerMetrics();
  for (const char* role : {"prefill", "decode"}) {
    EXPECT_EQ(Decisions(after, role, "up"), 1) << role;
    EXPECT_EQ(Decisions(after, role, "down"), 1) << role;
  }
  EXPECT_EQ(after.Sum("tandem_planner_target_gpus"), 6);
}

// The real thing: `tandem up` runs the real router, a prefill and a decode worker (random:tiny on
// the CPU) and the planner; `tandem bench` sends 25 requests/s of 32 generated tokens. The
// planner reads the real /metrics and /v1/workers, and sizes decode against a profile slow on
// purpose (tests/planner/slow-decode-profile.json: 375 tokens/s per instance within ITL 40 ms,
// the correction factor pinned at 1 so the machine's speed does not matter): 800 tokens/s need
// 2 instances; when the bench is over, 1 is enough again.
TEST_F(PlannerLiveTest, ScalesRealWorkersUnderTandemBench) {
  const char* source = std::getenv("TANDEM_SOURCE_DIR");
  ASSERT_NE(source, nullptr) << "ctest sets TANDEM_SOURCE_DIR";
  Up(absl::StrCat(R"(mode: throughput
interval_s: 0.5
targets: {ttft_ms: 1000, itl_ms: 40}
profile: )",
                  source, R"(/tests/planner/slow-decode-profile.json
predictor: {kind: last_value}
prefill: {min: 1, max: 1}
decode: {min: 1, max: 2}
scale_out: {cooldown_s: 1}
scale_in: {cooldown_s: 1, margin: 0.2, stable_intervals: 2, step: 1}
throughput: {correction: {min: 1, max: 1}}
)"),
     /*fake_roles=*/false,
     "  prefill: {startsAfter: [router]}\n"
     "  decode: {startsAfter: [router], autoscaling: {min: 1, max: 2}}\n");
  if (HasFatalFailure()) return;
  absl::StatusOr<deploy::DeploymentStatus> status = Status();
  ASSERT_TRUE(status.ok()) << status.status();
  const deploy::RoleStatus* router = status->FindRole("router");
  ASSERT_TRUE(router != nullptr && !router->instances.empty());
  const std::string url = absl::StrCat("http://", router->instances[0].processes[0].address);
  ASSERT_TRUE(Eventually([&] { return Decisions(PlannerMetrics(), "decode", "hold") >= 2; },
                         absl::Seconds(30)));
  // `tandem up` told the router where the planner is: its dashboard relays the planner's metrics
  // (polled every 2 s).
  absl::StatusOr<net::HttpResult> panel;
  EXPECT_TRUE(Eventually(
      [&] {
        panel = net::HttpClient::Fetch(
            {.url = url + "/dashboard/planner", .timeout = absl::Seconds(5)});
        return panel.ok() && panel->status == 200 &&
               absl::StrContains(panel->body, "tandem_planner_decisions_total");
      },
      absl::Seconds(10)))
      << (panel.ok() ? panel->body : panel.status().ToString());

  std::string bench_output;
  int bench_exit = -1;
  std::thread bench([&] {
    bench_exit = Shell(absl::StrCat(binary_, " bench --url ", url,
                                    " --model random-tiny --rate 25 --duration 6 --input-len 64 "
                                    "--output-len 32 --vocab-size 256 --seed 7 --json ",
                                    dir_, "/bench.json"),
                       &bench_output);
  });
  // The planner's generated tokens/s while the bench runs at full rate (its first and last
  // second left out); one 0.5 s interval holds a dozen Poisson arrivals, so average them.
  double generated_sum = 0;
  int generated_samples = 0;
  bool scaled_out = false;
  const absl::Time started = absl::Now();
  while (absl::Now() < started + absl::Seconds(6)) {
    const Exposition m = PlannerMetrics();
    if (absl::Now() > started + absl::Seconds(1.5) && absl::Now() < started + absl::Seconds(5)) {
      generated_sum += m.Sum("tandem_planner_observed_load", {{"role", "decode"}});
      ++generated_samples;
    }
    scaled_out = scaled_out || Counts("decode").first == 2;
    absl::SleepFor(absl::Milliseconds(250));
  }
  bench.join();
  ASSERT_EQ(bench_exit, 0) << bench_output;
  EXPECT_THAT(bench_output, HasSubstr("Failed requests:                              0"));
  EXPECT_TRUE(scaled_out) << "decode did not scale out under the bench";
  // What the planner read from the router's counters agrees with what the bench measured.
  std::ifstream json_file(dir_ + "/bench.json");
  const std::string json((std::istreambuf_iterator<char>(json_file)),
                         std::istreambuf_iterator<char>());
  const size_t at = json.find("\"output_throughput\"");
  ASSERT_NE(at, std::string::npos) << json;
  const double bench_generated = std::atof(json.c_str() + json.find(':', at) + 1);
  EXPECT_GT(bench_generated, 500) << json;
  ASSERT_GT(generated_samples, 0);
  EXPECT_NEAR(generated_sum / generated_samples, bench_generated, 0.3 * bench_generated);

  ASSERT_TRUE(
      Eventually([&] { return Counts("decode") == std::make_pair(1, 1); }, absl::Seconds(20)))
      << "decode did not scale back in after the bench";
  const Exposition after = PlannerMetrics();
  EXPECT_EQ(Decisions(after, "decode", "up"), 1);
  EXPECT_EQ(Decisions(after, "decode", "down"), 1);
  EXPECT_EQ(after.Sum("tandem_planner_scale_errors_total"), 0);
}

}  // namespace
}  // namespace tandem::planner
