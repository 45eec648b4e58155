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

TEST(PlannerCliTest, RefusesWhatItCannotDo) {
  Result result = RunPlanner("--config examples/planner/throughput.yaml");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.output, HasSubstr("the continuous loop needs live metrics"));
  result = RunPlanner("--config examples/planner/throughput.yaml --once");
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
