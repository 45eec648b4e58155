#include "deploy/render.h"

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::deploy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::ordered_json;

std::string SourceDir() {
  const char* dir = std::getenv("TANDEM_SOURCE_DIR");
  return dir != nullptr ? dir : ".";
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

DeploymentSpec Example(const std::string& name) {
  const std::string path = absl::StrCat(SourceDir(), "/examples/", name, ".yaml");
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(ReadText(path), path);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : DeploymentSpec();
}

const std::vector<std::string>& ExampleNames() {
  static const auto* names =
      new std::vector<std::string>{"local", "disagg-8b", "multihost-tp", "grouped"};
  return *names;
}

// Golden files: tests/deploy/golden/<example>.<target>.yaml. Regenerate after an intended
// change with tests/deploy/update-golden.sh BUILD_DIR (it sets TANDEM_UPDATE_GOLDEN=1).
TEST(RenderGoldenTest, ExamplesMatchGoldenFiles) {
  const bool update = std::getenv("TANDEM_UPDATE_GOLDEN") != nullptr;
  for (const std::string& name : ExampleNames()) {
    DeploymentSpec spec = Example(name);
    for (RenderTarget target :
         {RenderTarget::kGrove, RenderTarget::kLws, RenderTarget::kKubernetes}) {
      absl::StatusOr<std::string> rendered = RenderManifests(spec, target);
      ASSERT_TRUE(rendered.ok()) << name << ": " << rendered.status();
      const std::string golden = absl::StrCat(SourceDir(), "/tests/deploy/golden/", name, ".",
                                              RenderTargetName(target), ".yaml");
      if (update) {
        std::ofstream(golden) << *rendered;
        continue;
      }
      EXPECT_EQ(*rendered, ReadText(golden))
          << golden << " differs; if the change is intended, run tests/deploy/update-golden.sh";
    }
  }
}

TEST(RenderTest, OutputIsDeterministic) {
  DeploymentSpec spec = Example("disagg-8b");
  EXPECT_EQ(*RenderManifests(spec, RenderTarget::kGrove),
            *RenderManifests(spec, RenderTarget::kGrove));
}

std::vector<Json> Objects(const DeploymentSpec& spec, RenderTarget target) {
  absl::StatusOr<std::vector<Json>> objects = RenderObjects(spec, target);
  EXPECT_TRUE(objects.ok()) << objects.status();
  return objects.ok() ? *objects : std::vector<Json>();
}

const Json* Find(const std::vector<Json>& objects, const std::string& kind,
                 const std::string& name) {
  for (const Json& object : objects) {
    if (object["kind"] == kind && object["metadata"]["name"] == name) return &object;
  }
  return nullptr;
}

// Every pod template the target renders, wherever it sits.
std::vector<Json> PodSpecs(const std::vector<Json>& objects) {
  std::vector<Json> pods;
  for (const Json& object : objects) {
    if (object["kind"] == "PodCliqueSet") {
      for (const Json& clique : object["spec"]["template"]["cliques"]) {
        pods.push_back(clique["spec"]["podSpec"]);
      }
    } else if (object["kind"] == "LeaderWorkerSet") {
      pods.push_back(object["spec"]["leaderWorkerTemplate"]["workerTemplate"]["spec"]);
    } else if (object["kind"] == "Deployment" || object["kind"] == "StatefulSet") {
      pods.push_back(object["spec"]["template"]["spec"]);
    }
  }
  return pods;
}

TEST(RenderTest, EveryPodIsLockedDownAndProbed) {
  for (const std::string& name : ExampleNames()) {
    DeploymentSpec spec = Example(name);
    for (RenderTarget target :
         {RenderTarget::kGrove, RenderTarget::kLws, RenderTarget::kKubernetes}) {
      std::vector<Json> pods = PodSpecs(Objects(spec, target));
      ASSERT_FALSE(pods.empty());
      for (const Json& pod : pods) {
        EXPECT_EQ(pod["securityContext"]["runAsNonRoot"], true);
        std::vector<Json> containers(pod["containers"].begin(), pod["containers"].end());
        if (pod.contains("initContainers")) {
          containers.insert(containers.end(), pod["initContainers"].begin(),
                            pod["initContainers"].end());
        }
        for (const Json& container : containers) {
          const Json& security = container["securityContext"];
          EXPECT_EQ(security["readOnlyRootFilesystem"], true) << container["name"];
          EXPECT_EQ(security["allowPrivilegeEscalation"], false) << container["name"];
          EXPECT_EQ(security["capabilities"]["drop"], Json::array({"ALL"})) << container["name"];
        }
        const Json& main = pod["containers"][0];
        EXPECT_EQ(main["readinessProbe"]["httpGet"]["path"], "/ready");
        EXPECT_EQ(main["livenessProbe"]["httpGet"]["path"], "/health");
      }
    }
  }
}

TEST(RenderTest, PlannerMayOnlyScaleWhatItScales) {
  DeploymentSpec spec = Example("disagg-8b");
  std::vector<Json> objects = Objects(spec, RenderTarget::kKubernetes);
  const Json* role = Find(objects, "Role", "disagg-8b-planner");
  ASSERT_NE(role, nullptr);
  ASSERT_EQ(role->at("rules").size(), 1u);
  const Json& rule = role->at("rules")[0];
  EXPECT_EQ(rule["apiGroups"], Json::array({"apps"}));
  EXPECT_EQ(rule["resources"], Json::array({"statefulsets/scale"}));
  EXPECT_EQ(rule["resourceNames"], Json::array({"disagg-8b-decode", "disagg-8b-prefill"}));
  EXPECT_EQ(rule["verbs"], Json::array({"get", "patch", "update"}));
  // The router is HPA-scaled, so the planner gets no grant on it and an HPA exists for it.
  EXPECT_NE(Find(objects, "HorizontalPodAutoscaler", "disagg-8b-router"), nullptr);
  EXPECT_EQ(Find(objects, "HorizontalPodAutoscaler", "disagg-8b-decode"), nullptr);

  std::vector<Json> grove = Objects(spec, RenderTarget::kGrove);
  const Json* grove_role = Find(grove, "Role", "disagg-8b-planner");
  ASSERT_NE(grove_role, nullptr);
  EXPECT_EQ(grove_role->at("rules")[0]["resources"], Json::array({"podcliques/scale"}));
  EXPECT_EQ(grove_role->at("rules")[0]["resourceNames"],
            Json::array({"disagg-8b-0-decode", "disagg-8b-0-prefill"}));
}

TEST(RenderTest, ScaleTargetsCountPodsPerUnit) {
  DeploymentSpec grouped = Example("grouped");
  EXPECT_THAT(KubernetesScaleTargets(grouped, RenderTarget::kKubernetes),
              ElementsAre("pd=apps/statefulsets/pd-groups-prefill*2,"
                          "apps/statefulsets/pd-groups-decode*2:1:4"));
  EXPECT_THAT(KubernetesScaleTargets(grouped, RenderTarget::kGrove),
              ElementsAre("pd=grove.io/podcliquescalinggroups/pd-groups-0-pd:1:4"));
  DeploymentSpec multihost = Example("multihost-tp");
  EXPECT_THAT(KubernetesScaleTargets(multihost, RenderTarget::kLws),
              ElementsAre("prefill=apps/deployments/multihost-prefill:1:4",
                          "decode=leaderworkerset.x-k8s.io/leaderworkersets/multihost-decode:1:4"));
}

TEST(RenderTest, MultiHostRoleBecomesLeaderAndWorkerCliquesInAScalingGroup) {
  std::vector<Json> objects = Objects(Example("multihost-tp"), RenderTarget::kGrove);
  const Json* pcs = Find(objects, "PodCliqueSet", "multihost");
  ASSERT_NE(pcs, nullptr);
  const Json& groups = pcs->at("spec")["template"]["podCliqueScalingGroups"];
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(groups[0]["name"], "decode");
  EXPECT_EQ(groups[0]["cliqueNames"], Json::array({"decode-leader", "decode-worker"}));
  EXPECT_EQ(groups[0]["replicas"], 2);
  EXPECT_EQ(groups[0]["topologyConstraint"]["pack"]["required"], "nvlink-domain");
}

TEST(RenderTest, UnexpressibleRequestsAreRefused) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(R"(apiVersion: tandem/v1
name: x
model: m
roles:
  router: {}
  decode:
    gpusPerInstance: 8
    nodesPerInstance: 2
    autoscaling: {min: 1, max: 2, controller: hpa}
)",
                                                  "x.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<std::string> rendered = RenderManifests(*spec, RenderTarget::kKubernetes);
  ASSERT_FALSE(rendered.ok());
  EXPECT_THAT(std::string(rendered.status().message()),
              HasSubstr("x.yaml:6: roles.decode.autoscaling: a HorizontalPodAutoscaler on a "
                        "StatefulSet adds single pods"));
  EXPECT_TRUE(RenderManifests(*spec, RenderTarget::kLws).ok());
  EXPECT_TRUE(RenderManifests(*spec, RenderTarget::kGrove).ok());
}

TEST(RenderTest, ParseRenderTargetNamesTheAllowedTargets) {
  EXPECT_EQ(*ParseRenderTarget("lws"), RenderTarget::kLws);
  absl::StatusOr<RenderTarget> bad = ParseRenderTarget("helm");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.status().message()), HasSubstr("allowed: grove, lws, k8s"));
}

}  // namespace
}  // namespace tandem::deploy
