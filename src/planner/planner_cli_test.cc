// Runs the `tandem planner` binary on the shipped examples: the decision of the worked example in
// docs/planner.md, and clear refusals.
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
