// Renders every example spec for every target and validates the manifests with the real
// schemas: CRDs (Grove, LeaderWorkerSet, KAI) through tests/deploy/validate_crds.py, core objects
// through tests/deploy/validate_core.js (npm kubernetes-models), and the examples against
// docs/deploy-spec.schema.json. Needs python3-jsonschema, node and the npm test packages
// (scripts/install-deps.sh installs them) and ../shared/data/crds beside the source tree.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "deploy/render.h"
#include "gtest/gtest.h"

namespace tandem::deploy {
namespace {

namespace fs = std::filesystem;

std::string SourceDir() {
  const char* dir = std::getenv("TANDEM_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

std::string CrdDir() {
  const char* dir = std::getenv("TANDEM_CRD_DIR");
  return dir != nullptr ? dir : SourceDir() + "/../shared/data/crds";
}

struct Result {
  int exit_code = -1;
  std::string output;
};

// Runs a command with stderr folded into stdout.
Result RunCommand(const std::string& command) {
  Result result;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, n);
  int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string Quote(const std::string& text) {
  return absl::StrCat("'", absl::StrReplaceAll(text, {{"'", "'\\''"}}), "'");
}

class SchemaValidationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs::exists(CrdDir()))
        << "CRD schemas not found at " << CrdDir() << " (set TANDEM_CRD_DIR)";
    ASSERT_TRUE(fs::exists(SourceDir() + "/tests/node_modules/kubernetes-models"))
        << "npm test packages missing: run scripts/install-deps.sh";
    dir_ = fs::temp_directory_path() / absl::StrCat("tandem-deploy-schema-", getpid());
    fs::create_directories(dir_);
    for (const auto& entry : fs::directory_iterator(SourceDir() + "/examples")) {
      if (entry.path().extension() != ".yaml") continue;
      examples_.push_back(entry.path().string());
    }
    std::sort(examples_.begin(), examples_.end());
    ASSERT_GE(examples_.size(), 3u);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Renders every example for every target; returns the manifest paths.
  std::vector<std::string> RenderAll() {
    std::vector<std::string> paths;
    for (const std::string& example : examples_) {
      std::ifstream in(example);
      std::stringstream text;
      text << in.rdbuf();
      absl::StatusOr<DeploymentSpec> spec = ParseSpec(text.str(), example);
      EXPECT_TRUE(spec.ok()) << spec.status();
      if (!spec.ok()) continue;
      for (RenderTarget target :
           {RenderTarget::kGrove, RenderTarget::kLws, RenderTarget::kKubernetes}) {
        absl::StatusOr<std::string> yaml = RenderManifests(*spec, target);
        EXPECT_TRUE(yaml.ok()) << example << ": " << yaml.status();
        if (!yaml.ok()) continue;
        const std::string path =
            (dir_ / absl::StrCat(spec->name, ".", RenderTargetName(target), ".yaml")).string();
        std::ofstream(path) << *yaml;
        paths.push_back(path);
      }
    }
    return paths;
  }

  std::string Quoted(const std::vector<std::string>& paths) {
    std::vector<std::string> quoted;
    for (const std::string& path : paths) quoted.push_back(Quote(path));
    return absl::StrJoin(quoted, " ");
  }

  fs::path dir_;
  std::vector<std::string> examples_;
};

TEST_F(SchemaValidationTest, RenderedCustomResourcesMatchTheCrdSchemas) {
  std::vector<std::string> manifests = RenderAll();
  Result result =
      RunCommand(absl::StrCat("python3 ", Quote(SourceDir() + "/tests/deploy/validate_crds.py"),
                              " ", Quote(CrdDir()), " ", Quoted(manifests)));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::printf("%s", result.output.c_str());
}

TEST_F(SchemaValidationTest, RenderedCoreObjectsMatchTheKubernetesOpenApi) {
  std::vector<std::string> manifests = RenderAll();
  Result result = RunCommand(absl::StrCat(
      "node ", Quote(SourceDir() + "/tests/deploy/validate_core.js"), " ", Quoted(manifests)));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::printf("%s", result.output.c_str());
}

TEST_F(SchemaValidationTest, ExamplesMatchTheSpecJsonSchema) {
  Result result = RunCommand(
      absl::StrCat("python3 ", Quote(SourceDir() + "/tests/deploy/validate_spec_schema.py"), " ",
                   Quote(SourceDir() + "/docs/deploy-spec.schema.json"), " ", Quoted(examples_)));
  EXPECT_EQ(result.exit_code, 0) << result.output;
  std::printf("%s", result.output.c_str());
}

// The validators must be able to fail: a misspelt field in a PodCliqueSet, a pod field no
// Kubernetes version has, and a wrongly typed Service port are all caught.
TEST_F(SchemaValidationTest, ValidatorsRefuseBrokenManifests) {
  const std::string crd_bad = (dir_ / "bad-crd.yaml").string();
  std::ofstream(crd_bad) << R"(apiVersion: grove.io/v1alpha1
kind: PodCliqueSet
metadata: {name: x}
spec:
  template:
    cliques:
    - name: a
      spec:
        roleName: a
        replicas: 1
        minAvailble: 1
        podSpec:
          hostNetwrk: true
          containers: [{name: a, image: i}]
)";
  Result crd =
      RunCommand(absl::StrCat("python3 ", Quote(SourceDir() + "/tests/deploy/validate_crds.py"),
                              " ", Quote(CrdDir()), " ", Quote(crd_bad)));
  EXPECT_NE(crd.exit_code, 0) << crd.output;
  EXPECT_NE(crd.output.find("minAvailble"), std::string::npos) << crd.output;
  EXPECT_NE(crd.output.find("hostNetwrk"), std::string::npos) << crd.output;

  const std::string core_bad = (dir_ / "bad-core.yaml").string();
  std::ofstream(core_bad) << R"(apiVersion: v1
kind: Service
metadata: {name: x}
spec:
  ports: [{name: http, port: "eighty"}]
)";
  Result core = RunCommand(absl::StrCat(
      "node ", Quote(SourceDir() + "/tests/deploy/validate_core.js"), " ", Quote(core_bad)));
  EXPECT_NE(core.exit_code, 0) << core.output;
  EXPECT_NE(core.output.find("port"), std::string::npos) << core.output;
}

}  // namespace
}  // namespace tandem::deploy
