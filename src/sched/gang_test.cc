#include "sched/gang.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "deploy/spec.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sched/expand_deployment.h"
#include "sched/test_source.h"

namespace tandem::sched {
namespace {

using ::testing::HasSubstr;

Cluster SmallCluster() {
  return ParseClusterYaml(R"(
topology:
  levels: [zone, rack, {name: nvlink-domain, nodeLabel: nvidia.com/gpu.clique}]
nodes:
  - {name: a, count: 4, gpus: 8, path: z1/r1/v1}
  - {name: b, count: 4, gpus: 8, path: z1/r2/v2}
)",
                          "c.yaml")
      .value();
}

int Find(const PlacementRequest& request, const std::string& path) {
  for (size_t g = 0; g < request.gangs.size(); ++g) {
    if (request.gangs[g].path == path) return static_cast<int>(g);
  }
  return -1;
}

TEST(GangTest, RolesExpandIntoTree) {
  std::string text = ReadSource("examples/place/disagg.yaml");
  ASSERT_FALSE(text.empty());
  absl::StatusOr<PlacementRequest> request = ParsePlacementRequest(text, "disagg.yaml");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->name, "llama-70b");
  EXPECT_EQ(request->priority, 100);
  const Gang& root = request->gangs[0];
  EXPECT_EQ(root.children.size(), 3u);
  EXPECT_EQ(root.min_children, 3);
  int decode = Find(*request, "llama-70b/decode");
  ASSERT_GE(decode, 0);
  EXPECT_EQ(request->gangs[decode].min_children, 2);
  EXPECT_EQ(request->gangs[decode].children.size(), 3u);
  const Gang& instance = request->gangs[request->gangs[decode].children[0]];
  EXPECT_TRUE(instance.leaf);
  EXPECT_EQ(instance.pod_names, (std::vector<std::string>{"decode-0-0", "decode-0-1"}));
  EXPECT_EQ(instance.min_pods, 2);
  EXPECT_EQ(instance.pod_resources.gpus, 8);
  EXPECT_EQ(instance.required.name, "nvlink-domain");
  EXPECT_EQ(request->NumPods(), 2 + 6 + 4);

  Cluster cluster = SmallCluster();
  ASSERT_TRUE(ResolveRequest(cluster, *request).ok());
  EXPECT_EQ(request->gangs[request->gangs[decode].children[0]].required.index, 2);
  int prefill = Find(*request, "llama-70b/prefill");
  EXPECT_EQ(request->gangs[prefill].relations[0].target_gang, decode);
  // Targets are placed first.
  const std::vector<int>& order = request->gangs[0].placement_order;
  EXPECT_LT(std::find(order.begin(), order.end(), decode) - order.begin(),
            std::find(order.begin(), order.end(), prefill) - order.begin());
}

TEST(GangTest, GangTreeForm) {
  std::string text = ReadSource("examples/place/gang-tree.yaml");
  absl::StatusOr<PlacementRequest> request = ParsePlacementRequest(text, "tree.yaml");
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->gangs[0].min_children, 1);
  EXPECT_EQ(request->gangs[0].children.size(), 2u);
  EXPECT_GE(Find(*request, "pairs/pair-1/decode"), 0);
  EXPECT_EQ(request->gangs[Find(*request, "pairs/pair-0/decode")].pod_names[1], "pair-0-decode-1");
  EXPECT_EQ(request->gangs[Find(*request, "pairs/pair-1/prefill")].pod_names[0], "pair-1-prefill");
  Cluster cluster = SmallCluster();
  EXPECT_TRUE(ResolveRequest(cluster, *request).ok());
}

TEST(GangTest, DuplicatePodReferencesAreRejected) {
  absl::StatusOr<PlacementRequest> request = ParsePodGang(
      "kind: PodGang\nmetadata: {name: x}\nspec:\n  podgroups:\n"
      "    - {name: a, minReplicas: 1, podReferences: [{name: p, namespace: n}]}\n"
      "    - {name: b, minReplicas: 1, podReferences: [{name: p, namespace: n}]}\n",
      "p.yaml", {});
  ASSERT_TRUE(request.ok()) << request.status();
  Cluster cluster = SmallCluster();
  absl::Status status = ResolveRequest(cluster, *request);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("pod name 'p' appears twice"));
}

TEST(GangTest, ErrorsNameLineFieldAndChoices) {
  Cluster cluster = SmallCluster();
  auto error = [&](const std::string& text) -> std::string {
    absl::StatusOr<PlacementRequest> request = ParsePlacementRequest(text, "r.yaml");
    if (!request.ok()) return std::string(request.status().message());
    absl::Status status = ResolveRequest(cluster, *request);
    EXPECT_FALSE(status.ok());
    return std::string(status.message());
  };
  EXPECT_THAT(error("name: x\nroles:\n  p:\n    topology: {packRequired: rak}\n"),
              HasSubstr("r.yaml:4: roles.p.topology.packRequired: unknown level 'rak'; the "
                        "cluster's levels are: zone, rack, nvlink-domain, node"));
  EXPECT_THAT(error("name: x\nroles:\n  p:\n    resources: {gpu: -8}\n"),
              HasSubstr("r.yaml:4: roles.p.resources.gpu: -8 is out of range"));
  EXPECT_THAT(error("name: x\nroles:\n  p: {replicas: 2, minAvailable: 3}\n"),
              HasSubstr("minAvailable: 3 is more than replicas (2)"));
  EXPECT_THAT(error("name: x\nroles:\n  p: {replica: 2}\n"),
              HasSubstr("roles.p.replica: unknown field"));
  EXPECT_THAT(error("name: x\nroles: {p: {relations: [{sameDomainAs: q, level: rack}]}}\n"),
              HasSubstr("relation target 'q' is not a sibling"));
  EXPECT_THAT(error("name: x\nroles:\n  p: {relations: [{sameDomainAs: q, level: rack}]}\n"
                    "  q: {relations: [{spreadFrom: p, level: zone}]}\n"),
              HasSubstr("form a cycle"));
  EXPECT_THAT(
      error("name: x\nroles:\n  p: {topology: {packRequired: node, packPreferred: zone}}\n"),
      HasSubstr("broader than the required level"));
  EXPECT_THAT(error("name: x\nroles: [\n"), HasSubstr("r.yaml:"));
  EXPECT_THAT(error("roles: {p: {}}\n"), HasSubstr("name: missing"));
  EXPECT_THAT(error("name: x\n"), HasSubstr("exactly one of `roles` or `gang`"));
  EXPECT_THAT(error("name: x\ngang: {children: [{name: a}]}\n"),
              HasSubstr("exactly one of `children` (inner) or `pods` (leaf)"));
  EXPECT_THAT(error("name: x\nroles:\n  p: {replicas: 300000}\n"),
              HasSubstr("r.yaml:3: roles.p: the request grows past 200000 gangs"));
  EXPECT_THAT(error("name: x\ngang:\n  children:\n    - {name: a, replicas: 1000, children: [\n"
                    "        {name: b, replicas: 1000, pods: 1}]}\n"),
              HasSubstr("grows past 200000 gangs"));
  // host is an alias of the node level.
  absl::StatusOr<PlacementRequest> ok =
      ParsePlacementRequest("name: x\nroles: {p: {topology: {packRequired: host}}}\n", "r.yaml");
  ASSERT_TRUE(ok.ok());
  ASSERT_TRUE(ResolveRequest(cluster, *ok).ok());
  EXPECT_EQ(ok->gangs[2].required.index, cluster.node_level());
}

TEST(GangTest, PodGangExpands) {
  std::string text = ReadSource("tests/sched/podgang.yaml");
  ASSERT_FALSE(text.empty());
  absl::StatusOr<PlacementRequest> request = ParsePodGang(text, "podgang.yaml", {8, 0, 0});
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->name, "llama-disagg-0");
  int pair = Find(*request, "llama-disagg-0/kv-pair");
  ASSERT_GE(pair, 0);
  int decode = Find(*request, "llama-disagg-0/kv-pair/decode");
  ASSERT_GE(decode, 0);
  EXPECT_EQ(request->gangs[decode].min_pods, 2);
  EXPECT_EQ(request->gangs[Find(*request, "llama-disagg-0/kv-pair/prefill")].min_pods, 1);
  EXPECT_EQ(request->gangs[pair].min_children, 2);
  EXPECT_TRUE(request->gangs[decode].required.by_label);
  EXPECT_EQ(request->gangs[decode].pod_names[1], "llama-disagg-0-decode-1");

  absl::StatusOr<Cluster> cluster = ParseKubernetesNodes(ReadSource("tests/sched/nodes.json"), "n");
  ASSERT_TRUE(cluster.ok());
  ASSERT_TRUE(ResolveRequest(*cluster, *request).ok());
  EXPECT_EQ(request->gangs[decode].required.index, cluster->LevelIndex("nvlink-domain"));

  // A topology key the cluster has no level for is named with the keys it has.
  Cluster small = ParseClusterYaml("topology: {levels: [rack]}\nnodes: [{name: a}]\n", "c").value();
  absl::StatusOr<PlacementRequest> again = ParsePodGang(text, "podgang.yaml", {8, 0, 0});
  absl::Status status = ResolveRequest(small, *again);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("topology key 'topology.kubernetes.io/zone'"));

  EXPECT_FALSE(
      ParsePodGang("kind: PodGang\nmetadata: {name: x}\nspec: {podgroups: []}\n", "p", {}).ok());
  EXPECT_THAT(ParsePodGang("kind: PodGang\nmetadata: {name: x}\nspec:\n  podgroups:\n"
                           "    - {name: a, minReplicas: 3, podReferences: []}\n",
                           "p.yaml", {})
                  .status()
                  .message(),
              HasSubstr("p.yaml:5: spec.podgroups[0].minReplicas: 3 is out of range"));
}

TEST(GangTest, DeploymentSpecExpands) {
  constexpr char kSpec[] = R"(apiVersion: tandem/v1
name: multihost
model: /models/m
topology:
  levels: [zone, rack, {name: nvlink-domain, nodeLabel: nvidia.com/gpu.clique}, host]
  packPreferred: zone
roles:
  router: {replicas: 2, resources: {cpu: "4", memory: 8Gi}}
  prefill:
    replicas: 2
    gpusPerInstance: 8
    startsAfter: [router]
    topology: {packPreferred: rack}
  decode:
    replicas: 3
    minAvailable: 1
    gpusPerInstance: 16
    nodesPerInstance: 2
    startsAfter: [router]
    topology: {packRequired: nvlink-domain}
)";
  absl::StatusOr<deploy::DeploymentSpec> spec = deploy::ParseSpec(kSpec, "spec.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  absl::StatusOr<PlacementRequest> request = ExpandDeploymentSpec(*spec, 7);
  ASSERT_TRUE(request.ok()) << request.status();
  EXPECT_EQ(request->priority, 7);
  EXPECT_EQ(request->gangs[0].min_children, 3);
  EXPECT_EQ(request->gangs[0].preferred.name, "zone");
  int decode = Find(*request, "multihost/decode");
  ASSERT_GE(decode, 0);
  EXPECT_EQ(request->gangs[decode].min_children, 1);
  const Gang& instance = request->gangs[request->gangs[decode].children[2]];
  EXPECT_EQ(instance.pod_names, (std::vector<std::string>{"decode-2-0", "decode-2-1"}));
  EXPECT_EQ(instance.pod_resources.gpus, 8);
  EXPECT_EQ(instance.required.name, "nvlink-domain");
  const Gang& router =
      request->gangs[request->gangs[Find(*request, "multihost/router")].children[0]];
  EXPECT_EQ(router.pod_resources.cpu_millis, 4000);
  EXPECT_EQ(router.pod_resources.gpus, 0);
  Cluster cluster = SmallCluster();
  EXPECT_TRUE(ResolveRequest(cluster, *request).ok());

  // The same text through the kind-detecting entry point.
  absl::StatusOr<PlacementRequest> any = ParseAnyRequest(kSpec, "spec.yaml", {}, 0);
  ASSERT_TRUE(any.ok()) << any.status();
  EXPECT_EQ(any->NumPods(), request->NumPods());
}

}  // namespace
}  // namespace tandem::sched
