#include "sched/cluster.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sched/test_source.h"

namespace tandem::sched {
namespace {

using ::testing::HasSubstr;

constexpr char kCluster[] = R"(
apiVersion: tandem/v1
kind: Cluster
topology:
  levels:
    - {name: zone, bandwidthGbps: 100}
    - {name: rack, bandwidthGbps: 400}
    - {name: nvlink-domain, nodeLabel: nvidia.com/gpu.clique}
nodes:
  - {name: n, count: 3, gpus: 8, cpu: "64", memory: 1Ti, path: z1/rack-10/nvl-1}
  - {name: m, count: 2, gpus: 4, path: z1/rack-2/nvl-1}
  - name: k
    gpus: 8
    labels: {topology.kubernetes.io/zone: z0, topology.tandem.io/rack: r, nvidia.com/gpu.clique: c}
  - {name: lonely, gpus: 2, path: {zone: z1, rack: rack-2}}
)";

TEST(ClusterTest, ParsesYamlIntoAContiguousTree) {
  absl::StatusOr<Cluster> cluster = ParseClusterYaml(kCluster, "c.yaml");
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  EXPECT_EQ(cluster->num_nodes(), 7);
  EXPECT_EQ(cluster->num_levels(), 4);  // node level appended
  EXPECT_EQ(cluster->levels().back().name, "node");
  EXPECT_EQ(cluster->LevelIndex("rack"), 1);
  EXPECT_EQ(cluster->LevelIndex("nope"), -1);
  EXPECT_EQ(cluster->total_gpus(), 3 * 8 + 2 * 4 + 8 + 2);
  EXPECT_EQ(cluster->max_node_gpus(), 8);
  // z0 sorts first; rack-2 before rack-10 (natural order).
  EXPECT_EQ(cluster->node(0).name, "k");
  int rack = cluster->LevelIndex("rack");
  EXPECT_EQ(cluster->domain(cluster->NodeDomain(1, rack)).path, "z1/rack-2");
  // Every domain covers a contiguous node range matching NodeDomain.
  for (int d = 1; d < cluster->num_domains(); ++d) {
    const Domain& domain = cluster->domain(d);
    for (int n = domain.node_begin; n < domain.node_end; ++n) {
      EXPECT_EQ(cluster->NodeDomain(n, domain.level), d);
    }
  }
  // A node without an NVLink domain is alone at that level.
  int lonely = cluster->FindNode("lonely");
  ASSERT_GE(lonely, 0);
  int nvl = cluster->LevelIndex("nvlink-domain");
  EXPECT_EQ(cluster->domain(cluster->NodeDomain(lonely, nvl)).node_end -
                cluster->domain(cluster->NodeDomain(lonely, nvl)).node_begin,
            1);
  int n0 = cluster->FindNode("n-0");
  ASSERT_GE(n0, 0);
  EXPECT_EQ(cluster->node(n0).capacity.memory_bytes, int64_t{1} << 40);
  EXPECT_EQ(cluster->node(n0).capacity.cpu_millis, 64000);
  auto [first, last] = cluster->DescendantsAt(Cluster::kRoot, nvl);
  EXPECT_EQ(last - first + 1, 4);  // c, rack-2/nvl-1, (lonely), rack-10/nvl-1
}

TEST(ClusterTest, BadInputNamesLineAndField) {
  auto error = [](const std::string& text) {
    absl::StatusOr<Cluster> cluster = ParseClusterYaml(text, "bad.yaml");
    EXPECT_FALSE(cluster.ok());
    return std::string(cluster.status().message());
  };
  EXPECT_THAT(error("nodes:\n  - {name: a, gpus: -1}\n"),
              HasSubstr("bad.yaml:2: nodes[0].gpus: -1 is negative"));
  EXPECT_THAT(error("topology:\n  levels: [zone]\nnodes:\n  - {name: a, path: {rak: x}}\n"),
              HasSubstr("bad.yaml:4: nodes[0].path.rak: unknown level; expected one of: zone"));
  EXPECT_THAT(error("nodes:\n  - {name: a\n  - b\n"), HasSubstr("bad.yaml:4:1: malformed YAML"));
  EXPECT_THAT(error("nodes:\n  - {name: a, memory: lots}\n"),
              HasSubstr("nodes[0].memory: 'lots' is not a Kubernetes quantity"));
  EXPECT_THAT(error("nodes:\n  - {name: a}\n  - {name: a}\n"), HasSubstr("listed twice"));
  EXPECT_THAT(error("nodes:\n  - {name: a, gpu: 8}\n"), HasSubstr("nodes[0].gpu: unknown field"));
  EXPECT_THAT(error("topology:\n  levels: [zone, zone]\nnodes: [{name: a}]\n"),
              HasSubstr("declared twice"));
  EXPECT_THAT(error(""), HasSubstr("empty"));
  EXPECT_THAT(error("nodes:\n  - {name: a, count: 200000}\n"),
              HasSubstr("nodes[0].count: 200000 is out of range; expected 1..100000"));
  EXPECT_THAT(error("topology:\n  levels: [zone, rack]\nnodes:\n  - {name: a, path: a/b/c}\n"),
              HasSubstr("has 3 parts; expected 2"));
}

TEST(ClusterTest, Quantities) {
  EXPECT_EQ(ParseCpuMillis("500m").value(), 500);
  EXPECT_EQ(ParseCpuMillis("2.5").value(), 2500);
  EXPECT_EQ(ParseCpuMillis("4").value(), 4000);
  EXPECT_EQ(ParseBytes("16Gi").value(), int64_t{16} << 30);
  EXPECT_EQ(ParseBytes("1G").value(), 1'000'000'000);
  EXPECT_EQ(ParseBytes("2113350592Ki").value(), int64_t{2113350592} * 1024);
  EXPECT_FALSE(ParseBytes("-1Gi").ok());
  EXPECT_FALSE(ParseBytes("Gi").ok());
  EXPECT_FALSE(ParseCpuMillis("1e400").ok());
  EXPECT_EQ(FormatBytes(int64_t{16} << 30), "16Gi");
  EXPECT_EQ(FormatCpu(1500), "1500m");
}

TEST(ClusterTest, LoadsKubectlNodesJson) {
  std::string text = ReadSource("tests/sched/nodes.json");
  ASSERT_FALSE(text.empty()) << "set TANDEM_SOURCE_DIR";
  absl::StatusOr<Cluster> cluster = ParseKubernetesNodes(text, "nodes.json");
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  // Levels found on the nodes: region, zone, rack, nvlink-domain (+ node); no block label.
  EXPECT_EQ(cluster->LevelNames(), "region, zone, rack, nvlink-domain, node");
  EXPECT_EQ(cluster->num_nodes(), 7);
  int node = cluster->FindNode("gpu-a-01");
  ASSERT_GE(node, 0);
  EXPECT_EQ(cluster->node(node).capacity.gpus, 8);
  EXPECT_EQ(cluster->node(node).capacity.cpu_millis, 190000);
  EXPECT_TRUE(cluster->node(cluster->FindNode("gpu-a-04")).unschedulable);
  int nvl = cluster->LevelIndex("nvlink-domain");
  EXPECT_EQ(cluster->domain(cluster->NodeDomain(node, nvl)).path,
            "us-east-1/us-east-1a/rack-1/clique-a1");
  EXPECT_EQ(cluster->node(cluster->FindNode("cpu-a-01")).capacity.gpus, 0);

  // Explicit levels, and the auto-detecting entry point.
  absl::StatusOr<std::vector<Level>> levels =
      ParseLevelList("zone,nvlink-domain=nvidia.com/gpu.clique");
  ASSERT_TRUE(levels.ok());
  absl::StatusOr<Cluster> two = ParseAnyCluster(text, "nodes.json", *levels);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->LevelNames(), "zone, nvlink-domain, node");
  EXPECT_FALSE(ParseLevelList("zone,=x").ok());
}

TEST(ClusterTest, KubectlErrorsNameTheItem) {
  absl::StatusOr<Cluster> cluster = ParseKubernetesNodes(
      R"({"kind": "List", "items": [{"kind": "Node", "metadata": {"name": "a"},
          "status": {"allocatable": {"nvidia.com/gpu": "-2"}}}]})",
      "n.json");
  ASSERT_FALSE(cluster.ok());
  EXPECT_THAT(cluster.status().message(),
              HasSubstr("items[0].status.allocatable.nvidia.com/gpu: '-2'"));
  EXPECT_FALSE(ParseKubernetesNodes(R"({"items": 3})", "n.json").ok());
  EXPECT_FALSE(ParseKubernetesNodes(R"({"items": [{"kind": "Pod"}]})", "n.json").ok());
}

TEST(ClusterTest, ExampleClustersParse) {
  for (const char* path :
       {"examples/clusters/small.yaml", "examples/clusters/tiny.yaml",
        "examples/clusters/blocks.yaml", "examples/clusters/kubectl-nodes.json"}) {
    std::string text = ReadSource(path);
    ASSERT_FALSE(text.empty()) << path;
    absl::StatusOr<Cluster> cluster = ParseAnyCluster(text, path);
    EXPECT_TRUE(cluster.ok()) << path << ": " << cluster.status();
  }
}

}  // namespace
}  // namespace tandem::sched
