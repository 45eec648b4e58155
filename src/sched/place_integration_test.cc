// End-to-end checks of `tandem place` (the real binary, TANDEM_BINARY) on the examples and on bad
// inputs, and of the hand-written PodGang against Grove's PodGang CRD schema (python3-jsonschema;
// the CRDs are read from TANDEM_CRD_DIR or ../shared/data/crds beside the source tree).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem::sched {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string SourceDir() {
  const char* dir = std::getenv("TANDEM_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

struct Output {
  int exit_code = -1;
  std::string text;
};

Output RunShell(const std::string& command) {
  Output output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) output.text.append(buffer, n);
  int status = pclose(pipe);
  output.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return output;
}

class PlaceCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* binary = std::getenv("TANDEM_BINARY");
    ASSERT_NE(binary, nullptr) << "TANDEM_BINARY is not set (run through ctest)";
    binary_ = binary;
    char pattern[] = "/tmp/tandem-place-XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  std::string Write(const std::string& name, const std::string& text) {
    std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    return path;
  }
  Output Place(const std::string& arguments) {
    return RunShell("cd " + SourceDir() + " && " + binary_ + " place " + arguments);
  }

  std::string binary_;
  std::string dir_;
};

TEST_F(PlaceCommandTest, DeadlockExampleBothWays) {
  Output gang = Place("--cluster examples/clusters/tiny.yaml --spec examples/place/deadlock.yaml");
  EXPECT_EQ(gang.exit_code, 0) << gang.text;
  EXPECT_THAT(gang.text, HasSubstr("SCHEDULED"));
  EXPECT_THAT(gang.text, HasSubstr("decode-0"));
  Output pods = Place(
      "--cluster examples/clusters/tiny.yaml --spec examples/place/deadlock.yaml --pod-by-pod");
  EXPECT_EQ(pods.exit_code, 3) << pods.text;
  EXPECT_THAT(pods.text, HasSubstr("below their minimum: deadlock, deadlock/decode"));
}

TEST_F(PlaceCommandTest, JsonWithStateAndPreemption) {
  Output out = Place(
      "--cluster examples/clusters/small.yaml --spec examples/place/disagg.yaml "
      "--state examples/place/state.yaml --json");
  ASSERT_EQ(out.exit_code, 0) << out.text;
  nlohmann::json json = nlohmann::json::parse(out.text);
  EXPECT_EQ(json["scheduled"], true);
  ASSERT_EQ(json["evictions"].size(), 1u);
  EXPECT_EQ(json["evictions"][0]["workload"], "batch-embed");  // eval is protected
  EXPECT_FALSE(json["pending"].empty());
  // Without preemption the deployment cannot start.
  Output none = Place(
      "--cluster examples/clusters/small.yaml --spec examples/place/disagg.yaml "
      "--state examples/place/state.yaml --no-preemption");
  EXPECT_EQ(none.exit_code, 3) << none.text;
  EXPECT_THAT(none.text, HasSubstr("PENDING"));
}

TEST_F(PlaceCommandTest, KubernetesNodesAndPodGang) {
  Output out = Place(
      "--cluster examples/clusters/kubectl-nodes.json --spec tests/sched/podgang.yaml "
      "--podgang-gpus 8");
  EXPECT_EQ(out.exit_code, 0) << out.text;
  EXPECT_THAT(out.text, HasSubstr("llama-disagg-0-decode-1"));
  EXPECT_THAT(out.text, Not(HasSubstr("gpu-a-04")));  // cordoned
}

TEST_F(PlaceCommandTest, BadInputsGetOneClearLine) {
  std::string cluster = Write("c.yaml", "nodes:\n  - {name: a, gpus: -4}\n");
  Output negative = Place("--cluster " + cluster + " --spec examples/place/deadlock.yaml");
  EXPECT_EQ(negative.exit_code, 2) << negative.text;
  EXPECT_THAT(negative.text, HasSubstr("c.yaml:2: nodes[0].gpus: -4 is negative"));

  std::string spec = Write("s.yaml",
                           "kind: PlacementRequest\nname: x\nroles:\n  p:\n"
                           "    topology: {packRequired: rak}\n");
  Output level = Place("--cluster examples/clusters/small.yaml --spec " + spec);
  EXPECT_EQ(level.exit_code, 2) << level.text;
  EXPECT_THAT(level.text, HasSubstr("s.yaml:5: roles.p.topology.packRequired: unknown level "
                                    "'rak'; the cluster's levels are: zone, rack, nvlink-domain"));

  std::string broken = Write("b.yaml", "kind: PlacementRequest\nname: [x\n");
  Output malformed = Place("--cluster examples/clusters/small.yaml --spec " + broken);
  EXPECT_EQ(malformed.exit_code, 2) << malformed.text;
  EXPECT_THAT(malformed.text, HasSubstr("b.yaml:"));
  EXPECT_THAT(malformed.text, HasSubstr("malformed YAML"));

  Output missing = Place("--cluster examples/clusters/small.yaml");
  EXPECT_NE(missing.exit_code, 0);
  EXPECT_THAT(missing.text, HasSubstr("spec"));

  Output absent = Place("--cluster " + dir_ + "/nope.yaml --spec examples/place/deadlock.yaml");
  EXPECT_NE(absent.exit_code, 0);
  EXPECT_THAT(absent.text, HasSubstr("nope.yaml"));
  for (const Output* output : {&negative, &level, &malformed}) {
    EXPECT_EQ(std::count(output->text.begin(), output->text.end(), '\n'), 1) << output->text;
  }
}

TEST(PodGangSchemaTest, HandWrittenPodGangValidatesAgainstGroveCrd) {
  const char* crd_dir = std::getenv("TANDEM_CRD_DIR");
  std::string crds = crd_dir ? crd_dir : SourceDir() + "/../shared/data/crds";
  std::string crd = crds + "/scheduler.grove.io_podgangs.yaml";
  ASSERT_TRUE(fs::exists(crd)) << crd << " is missing; set TANDEM_CRD_DIR";
  std::string script = SourceDir() + "/tests/sched/validate_podgang.py";
  Output good =
      RunShell("python3 " + script + " " + crd + " " + SourceDir() + "/tests/sched/podgang.yaml");
  EXPECT_EQ(good.exit_code, 0) << good.text;
  // The validator can fail: the broken PodGang is refused, naming both problems.
  Output bad = RunShell("python3 " + script + " " + crd + " " + SourceDir() +
                        "/tests/sched/bad-podgang.yaml");
  EXPECT_EQ(bad.exit_code, 1) << bad.text;
  EXPECT_THAT(bad.text, HasSubstr("'minReplicas' is a required property"));
  EXPECT_THAT(bad.text, HasSubstr("topologyConstrait"));
}

}  // namespace
}  // namespace tandem::sched
