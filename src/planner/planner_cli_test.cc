// Runs the `tandem planner` binary on the shipped examples: the decision of the worked example in
// docs/planner.md, and clear refusals.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

using ::testing::HasSubstr;

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

Result RunPlanner(const std::string& arguments) {
  const char* binary = std::getenv("TANDEM_BINARY");
  const char* source = std::getenv("TANDEM_SOURCE_DIR");
  EXPECT_NE(binary, nullptr);
  EXPECT_NE(source, nullptr);
  if (binary == nullptr || source == nullptr) return {};
  std::string command =
      std::string("cd '") + source + "' && '" + binary + "' planner " + arguments + " 2>&1";
  Result result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buffer;
  size_t read = 0;
  while ((read = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) {
    result.output.append(buffer.data(), read);
  }
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

TEST(PlannerCliTest, EvaluatesTheWorkedExample) {
  Result result = RunPlanner(
      "--config examples/planner/throughput.yaml --advisory --once "
      "--snapshot examples/planner/snapshot.json");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("prefill  2 -> 3 instances"));
  EXPECT_THAT(result.output, HasSubstr("decode   2 -> 3 instances"));
  EXPECT_THAT(result.output, HasSubstr("18 GPUs in all (advisory: not applied)"));

  result = RunPlanner(
      "--config examples/planner/throughput.yaml --advisory --once --json "
      "--snapshot examples/planner/snapshot-peak.json");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("GPU budget 24: 5 prefill x 2 + 5 decode x 4 = 30 GPUs"));
  EXPECT_THAT(result.output, HasSubstr("\"gpus\": 24"));

  result = RunPlanner(
      "--config examples/planner/load.yaml --once "
      "--snapshot examples/planner/load-history.json");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  EXPECT_THAT(result.output, HasSubstr("replayed 3 observations"));
  EXPECT_THAT(result.output, HasSubstr("every instance is past the SLA point"));
}

TEST(PlannerCliTest, RefusesBadLiveCommandLinesSayingWhy) {
  const char* bad_config = "/tmp/tandem-planner-cli-bad.yaml";
  FILE* file = fopen(bad_config, "w");
  ASSERT_NE(file, nullptr);
  fputs("mode: load\ntargets: {ttft_ms: 0, itl_ms: 40}\nprefill: {max: 2}\ndecode: {max: 2}\n",
        file);
  fclose(file);
  const std::pair<std::string, std::string> cases[] = {
      {"--config examples/planner/throughput.yaml",
       "the local connector needs at least one --scale NAME=RESOURCE:MIN:MAX target"},
      {"--connector none --router http://127.0.0.1:1 --config " + std::string(bad_config),
       "tandem-planner-cli-bad.yaml:2: 'targets.ttft_ms' must be > 0, got 0"},
      {"--connector local --router http://127.0.0.1:1 --scale decode=decode:3:2",
       "--scale 'decode=decode:3:2': needs 0 <= MIN <= MAX and MAX >= 1, got MIN 3 and MAX 2"},
      {"--connector local --router http://127.0.0.1:1 --scale decode=decode:1:2",
       "needs the orchestrator's control URL: --orchestrator URL"},
      {"--connector bogus", "--connector 'bogus': expected local"},
      {"--connector none", "the planner needs metrics: --router URL"},
      {"--connector none --router http://127.0.0.1:1 --ttft-ms -5",
       "--ttft-ms and --itl-ms must be > 0, got -5"},
      {"--connector none --router http://127.0.0.1:1 --interval -1",
       "--interval must be > 0 seconds, got -1"},
      {"--connector none --router http://127.0.0.1:1 --mode throughput",
       "--mode throughput needs a latency profile"},
      {"--connector none --router http://127.0.0.1:1 --config examples/planner/load.yaml "
       "--itl-ms 30",
       "--ttft-ms and --itl-ms are for a planner without --config"},
      {"--connector kubernetes --scale gen=apps/statefulsets/x-gen:1:2",
       "scale target 'gen' is neither 'prefill' nor 'decode'; say which role it holds with "
       "--role-of gen=prefill|decode"},
      {"--connector kubernetes --role-of gen=both --scale gen=apps/statefulsets/x-gen:1:2",
       "--role-of 'gen=both': expected NAME=prefill|decode"},
      {"--connector none --router http://127.0.0.1:1 --config examples/planner/throughput.yaml "
       "--listen nowhere",
       "--listen 'nowhere': expected HOST:PORT"},
  };
  for (const auto& [arguments, message] : cases) {
    Result result = RunPlanner(arguments);
    EXPECT_EQ(result.exit_code, 2) << arguments << "\n" << result.output;
    EXPECT_THAT(result.output, HasSubstr(message)) << arguments;
  }
  remove(bad_config);
}

TEST(PlannerCliTest, RefusesWhatItCannotDo) {
  Result result = RunPlanner("--config examples/planner/throughput.yaml --once");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("add --advisory"));
  result = RunPlanner("--once --advisory");
  EXPECT_EQ(result.exit_code, 2);
  EXPECT_THAT(result.output, HasSubstr("--config FILE is required"));
  result = RunPlanner("--config examples/planner/load.yaml --once --snapshot no-such-file.json");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.output, HasSubstr("metrics snapshot: "));
}

}  // namespace

namespace {

// `tandem planner --config FILE` alone runs the live loop from the config's `live` section; a
// router that does not answer only skips intervals (counted), and SIGTERM stops it cleanly.
TEST(PlannerCliTest, RunsFromItsConfigAndStopsOnSigterm) {
  const char* binary = std::getenv("TANDEM_BINARY");
  ASSERT_NE(binary, nullptr);
  char dir[] = "/tmp/tandem-planner-cli-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string config = std::string(dir) + "/planner.yaml";
  const std::string log = std::string(dir) + "/planner.log";
  FILE* file = fopen(config.c_str(), "w");
  ASSERT_NE(file, nullptr);
  fputs(
      "mode: load\n"
      "interval_s: 0.2\n"
      "targets: {ttft_ms: 300, itl_ms: 40}\n"
      "prefill: {max: 2}\n"
      "decode: {max: 2}\n"
      "live:\n"
      "  listen: 127.0.0.1:0\n"
      "  router: http://127.0.0.1:1\n"
      "  connector: none\n",
      file);
  fclose(file);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    freopen(log.c_str(), "w", stderr);
    execl(binary, binary, "planner", "--config", config.c_str(), nullptr);
    _exit(127);
  }
  auto read_log = [&] {
    std::string text;
    if (FILE* f = fopen(log.c_str(), "r")) {
      std::array<char, 4096> buffer;
      size_t n;
      while ((n = fread(buffer.data(), 1, buffer.size(), f)) > 0) text.append(buffer.data(), n);
      fclose(f);
    }
    return text;
  };
  std::string text;
  for (int i = 0; i < 100 && text.find("planner interval skipped") == std::string::npos; ++i) {
    usleep(50'000);
    text = read_log();
  }
  EXPECT_THAT(text, HasSubstr("planner started mode=load advisory=true"));
  EXPECT_THAT(text, HasSubstr("connector=advisory"));
  EXPECT_THAT(text, HasSubstr("planner interval skipped"));
  EXPECT_THAT(text, HasSubstr("http://127.0.0.1:1: not read"));
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  for (int i = 0; i < 100 && waitpid(pid, &status, WNOHANG) == 0; ++i) usleep(50'000);
  if (waitpid(pid, &status, WNOHANG) == 0 && kill(pid, 0) == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    FAIL() << "the planner did not stop within 5 s of SIGTERM\n" << read_log();
  }
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << read_log();
  EXPECT_THAT(read_log(), HasSubstr("planner stopped"));
  std::system((std::string("rm -rf ") + dir).c_str());
}

// A bad `live` section is refused with its line.
TEST(PlannerCliTest, RefusesABadLiveSection) {
  const char* path = "/tmp/tandem-planner-cli-live.yaml";
  FILE* file = fopen(path, "w");
  ASSERT_NE(file, nullptr);
  fputs(
      "mode: load\ntargets: {ttft_ms: 300, itl_ms: 40}\nprefill: {max: 2}\ndecode: {max: 2}\n"
      "live:\n  connector: local\n  scale:\n    - decode=decode:1:8\n    - prefill=prefill:4:2\n",
      file);
  fclose(file);
  Result result = RunPlanner(std::string("--config ") + path);
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_THAT(
      result.output,
      HasSubstr("tandem-planner-cli-live.yaml:9: 'live.scale': --scale 'prefill=prefill:4:2'"));
  remove(path);
}

}  // namespace
