#include "deploy/spec.h"

#include <string>
#include <vector>

#include "deploy/command_line.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::deploy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kMinimal[] = R"(apiVersion: tandem/v1
name: demo
model: models/demo.gguf
roles:
  router: {}
  prefill:
    startsAfter: [router]
  decode:
    replicas: 3
    minAvailable: 2
    startsAfter: [router]
)";

TEST(ParseSpecTest, MinimalSpecGetsDefaultsAndStartupOrder) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(kMinimal, "demo.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "demo");
  ASSERT_EQ(spec->roles.size(), 3u);
  EXPECT_EQ(spec->roles[0].name, "router");  // everything starts after it
  const Role* decode = spec->FindRole("decode");
  ASSERT_NE(decode, nullptr);
  EXPECT_EQ(decode->kind, RoleKind::kDecode);
  EXPECT_EQ(decode->replicas, 3);
  EXPECT_EQ(decode->min_available, 2);
  EXPECT_EQ(decode->model, "models/demo.gguf");
  EXPECT_EQ(decode->port, 8080);
  EXPECT_EQ(decode->TensorParallelSize(), 1);
  EXPECT_EQ(spec->FindRole("router")->port, 8000);
  EXPECT_EQ(spec->FindRole("prefill")->min_available, 1);
  EXPECT_EQ(decode->line, 8);
}

TEST(ParseSpecTest, StartupOrderFollowsStartsAfterChains) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(R"(apiVersion: tandem/v1
name: chain
model: m
roles:
  zeta: {kind: decode, startsAfter: [alpha]}
  alpha: {kind: prefill, startsAfter: [router]}
  router: {}
)",
                                                  "chain.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  std::vector<std::string> order;
  for (const Role& role : spec->roles) order.push_back(role.name);
  EXPECT_THAT(order, ElementsAre("router", "alpha", "zeta"));
}

TEST(ParseSpecTest, MultiHostRoleDerivesGpusPerPod) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(R"(apiVersion: tandem/v1
name: big
model: m
roles:
  router: {}
  worker: {gpusPerInstance: 16, nodesPerInstance: 2}
)",
                                                  "big.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const Role* worker = spec->FindRole("worker");
  EXPECT_TRUE(worker->MultiHost());
  EXPECT_EQ(worker->resources.gpu, 8);
  EXPECT_EQ(worker->TensorParallelSize(), 16);
}

TEST(ParseSpecTest, AutoscalingControllerDefaultsToPlannerWhenOneExists) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(R"(apiVersion: tandem/v1
name: scaled
model: m
roles:
  router: {autoscaling: {min: 1, max: 3}}
  planner: {}
  decode: {autoscaling: {min: 1, max: 3}}
)",
                                                  "scaled.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->FindRole("decode")->autoscaling->controller, ScalingController::kPlanner);
  // The planner does not scale the router; it gets an HPA on CPU.
  EXPECT_EQ(spec->FindRole("router")->autoscaling->controller, ScalingController::kHpa);
  EXPECT_EQ(spec->FindRole("router")->autoscaling->cpu_utilization, 80);
  EXPECT_THAT(LocalScaleTargets(*spec), ElementsAre("decode=decode:1:3"));
}

TEST(ParseSpecTest, TopologyLevelsGetNodeLabels) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(R"(apiVersion: tandem/v1
name: topo
model: m
topology:
  levels: [zone, {name: rack, nodeLabel: example.com/rack}, host]
roles:
  router: {}
  decode: {topology: {packRequired: rack, packPreferred: host}}
)",
                                                  "topo.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->levels.size(), 3u);
  EXPECT_EQ(spec->levels[0].node_label, "topology.kubernetes.io/zone");
  EXPECT_EQ(spec->levels[1].node_label, "example.com/rack");
  EXPECT_EQ(spec->levels[2].node_label, "kubernetes.io/hostname");
  EXPECT_EQ(spec->FindRole("decode")->topology.required, "rack");
}

TEST(CommandLineTest, WorkerCommandLineCarriesAddressesAndArgsLast) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(R"(apiVersion: tandem/v1
name: cmd
model: m.gguf
roles:
  router: {}
  decode: {gpusPerInstance: 4, nodesPerInstance: 2, args: [--max-batch, "64"]}
)",
                                                  "cmd.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  InstanceContext context;
  context.listen = "127.0.0.1:8101";
  context.advertise = "127.0.0.1:8101";
  context.kv_listen = "127.0.0.1:9101";
  context.router_url = "http://127.0.0.1:8000";
  context.node_rank = "1";
  context.leader = "127.0.0.1:8100";
  EXPECT_THAT(
      RoleCommandLine(*spec, *spec->FindRole("decode"), context),
      ElementsAre("tandem", "worker", "--role", "decode", "--model", "m.gguf", "--listen",
                  "127.0.0.1:8101", "--advertise", "127.0.0.1:8101", "--kv-listen",
                  "127.0.0.1:9101", "--router", "http://127.0.0.1:8000", "--tp", "4", "--nodes",
                  "2", "--node-rank", "1", "--leader", "127.0.0.1:8100", "--max-batch", "64"));
  InstanceContext router_context;
  router_context.listen = "127.0.0.1:8000";
  EXPECT_THAT(RoleCommandLine(*spec, *spec->FindRole("router"), router_context),
              ElementsAre("tandem", "router", "--listen", "127.0.0.1:8000", "--model", "m.gguf"));
  router_context.planner_url = "http://127.0.0.1:8300";  // the dashboard's planner panel
  EXPECT_THAT(RoleCommandLine(*spec, *spec->FindRole("router"), router_context),
              ElementsAre("tandem", "router", "--listen", "127.0.0.1:8000", "--model", "m.gguf",
                          "--planner", "http://127.0.0.1:8300"));
}

// Each bad spec must be refused with a message naming the line, the field and what is allowed.
struct BadSpec {
  const char* name;
  const char* yaml;
  std::vector<const char*> expected;  // substrings of the error message
};

constexpr char kHead[] = "apiVersion: tandem/v1\nname: bad\nmodel: m\n";

std::string WithHead(const char* body) { return std::string(kHead) + body; }

const std::vector<BadSpec>& BadSpecs() {
  static const auto* cases = new std::vector<BadSpec>{
      {"UnknownTopLevelField",
       "rolez: {}\nroles:\n  router: {}\n  worker: {}\n",
       {"bad.yaml:4: rolez: unknown field (did you mean 'roles'?)", "allowed: apiVersion"}},
      {"UnknownRoleField",
       "roles:\n  router: {}\n  decode:\n    replica: 2\n",
       {"bad.yaml:7: roles.decode.replica: unknown field (did you mean 'replicas'?)"}},
      {"SnakeCaseField",
       "roles:\n  router: {}\n  decode:\n    min_available: 1\n",
       {"roles.decode.min_available: unknown field (did you mean 'minAvailable'?)"}},
      {"MinAvailableAboveReplicas",
       "roles:\n  router: {}\n  decode:\n    replicas: 3\n    minAvailable: 5\n",
       {"bad.yaml:8: roles.decode.minAvailable: 5 is more than replicas (3); allowed: "
        "0..replicas"}},
      {"StartsAfterCycle",
       "roles:\n  router: {startsAfter: [decode]}\n  decode: {startsAfter: [prefill]}\n"
       "  prefill: {startsAfter: [router]}\n",
       {"startup order has a cycle", "router -> decode -> prefill -> router"}},
      {"StartsAfterUnknownRole",
       "roles:\n  router: {}\n  decode: {startsAfter: [ruoter]}\n",
       {"bad.yaml:6: roles.decode.startsAfter: unknown role 'ruoter' (did you mean 'router'?)"}},
      {"StartsAfterSelf",
       "roles:\n  router: {}\n  decode: {startsAfter: [decode]}\n",
       {"roles.decode.startsAfter: role 'decode' cannot start after itself"}},
      {"TpNotDividingHosts",
       "roles:\n  router: {}\n  decode:\n    gpusPerInstance: 6\n    nodesPerInstance: 4\n",
       {"bad.yaml:8: roles.decode.nodesPerInstance: TP size 6 (gpusPerInstance) does not divide "
        "evenly across 4 hosts"}},
      {"GpuPerPodMismatch",
       "roles:\n  router: {}\n  decode:\n    gpusPerInstance: 8\n    nodesPerInstance: 2\n"
       "    resources: {gpu: 8}\n",
       {"roles.decode.resources.gpu: 8 GPUs per pod does not match gpusPerInstance 8 over "
        "nodesPerInstance 2; allowed: 4"}},
      {"MultiHostWithoutGpus",
       "roles:\n  router: {}\n  decode: {nodesPerInstance: 2}\n",
       {"roles.decode.nodesPerInstance: 2 hosts need gpusPerInstance"}},
      {"UnknownTopologyLevel",
       "topology:\n  levels: [zone, rack]\nroles:\n  router: {}\n"
       "  decode: {topology: {packRequired: rakc}}\n",
       {"bad.yaml:8: roles.decode.topology.packRequired: unknown topology level 'rakc' (did you "
        "mean 'rack'?); allowed: zone, rack"}},
      {"TopologyWithoutLevels",
       "roles:\n  router: {}\n  decode: {topology: {packRequired: rack}}\n",
       {"unknown topology level 'rack'; no levels are declared"}},
      {"DuplicateTopologyLevel",
       "topology:\n  levels: [zone, zone]\nroles:\n  router: {}\n"
       "  decode: {}\n",
       {"topology.levels[1]: level 'zone' is declared twice"}},
      {"InvalidLevelName",
       "topology:\n  levels: [Rack]\nroles:\n  router: {}\n  decode: {}\n",
       {"topology.levels[0]: 'Rack' is not a valid name"}},
      {"RoleBroaderThanGroup",
       "topology:\n  levels: [zone, rack]\nroles:\n  router: {}\n  prefill: {}\n"
       "  decode: {topology: {packRequired: zone}}\n"
       "scalingGroups:\n  - {name: pd, roles: [prefill, decode], topology: {packRequired: rack}}\n",
       {"roles.decode.topology.packRequired: 'zone' is broader than scaling group 'pd''s "
        "packRequired 'rack'"}},
      {"UnknownKind",
       "roles:\n  router: {}\n  gen: {kind: generator}\n",
       {"roles.gen.kind: 'generator' is not a role kind; allowed: router, prefill, decode, "
        "planner, worker"}},
      {"RoleNameNeedsKind",
       "roles:\n  router: {}\n  fast: {}\n",
       {"role name 'fast' is not a role kind, so the role needs `kind:`"}},
      {"ReplicasNotInteger",
       "roles:\n  router: {}\n  decode: {replicas: three}\n",
       {"roles.decode.replicas: 'three' is not an integer; allowed: 0..10000"}},
      {"ReplicasQuoted",
       "roles:\n  router: {}\n  decode: {replicas: \"3\"}\n",
       {"roles.decode.replicas: '3' is not an integer"}},
      {"NegativeReplicas",
       "roles:\n  router: {}\n  decode: {replicas: -1}\n",
       {"roles.decode.replicas: -1 is out of range; allowed: 0..10000"}},
      {"AutoscalingMinAboveMax",
       "roles:\n  router: {}\n  decode: {autoscaling: {min: 4, max: 2, controller: hpa}}\n",
       {"roles.decode.autoscaling: min 4 is more than max 2"}},
      {"ReplicasOutsideBounds",
       "roles:\n  router: {}\n  decode: {replicas: 9, autoscaling: {min: 1, max: 4}}\n",
       {"roles.decode.autoscaling: replicas 9 is outside the bounds 1..4"}},
      {"AutoscalingBelowGang",
       "roles:\n  router: {}\n  decode:\n    replicas: 3\n    minAvailable: 2\n"
       "    autoscaling: {min: 1, max: 4}\n",
       {"roles.decode.autoscaling.min: 1 is less than minAvailable (2)"}},
      {"PlannerControllerWithoutPlanner",
       "roles:\n  router: {}\n  decode: {autoscaling: {min: 1, max: 4, controller: planner}}\n",
       {"roles.decode.autoscaling.controller: planner, but the deployment has no planner role"}},
      {"RouterWithGpus",
       "roles:\n  router: {gpusPerInstance: 1}\n  decode: {}\n",
       {"roles.router: a router runs no model; allowed: gpusPerInstance 0"}},
      {"NoRouter",
       "roles:\n  decode: {}\n",
       {"bad.yaml: roles: no roles of kind router; allowed: exactly one"}},
      {"PrefillWithoutDecode",
       "roles:\n  router: {}\n  prefill: {}\n",
       {"no role that generates tokens"}},
      {"TwoPlanners",
       "roles:\n  router: {}\n  planner: {}\n  other: {kind: planner}\n"
       "  decode: {}\n",
       {"2 roles of kind planner; allowed: at most one"}},
      {"GroupUnknownRole",
       "roles:\n  router: {}\n  decode: {}\nscalingGroups:\n  - {name: pd, roles: [decode, "
       "prefil]}\n",
       {"bad.yaml:8: scalingGroups[0].roles: unknown role 'prefil'"}},
      {"RoleInTwoGroups",
       "roles:\n  router: {}\n  decode: {}\nscalingGroups:\n  - {name: a, roles: [decode]}\n"
       "  - {name: b, roles: [decode]}\n",
       {"scalingGroups[1].roles: role 'decode' is already in scaling group 'a'"}},
      {"GroupedRoleWithOwnAutoscaling",
       "roles:\n  router: {}\n  decode: {autoscaling: {min: 1, max: 2, controller: hpa}}\n"
       "scalingGroups:\n  - {name: g, roles: [decode]}\n",
       {"roles.decode.autoscaling: role 'decode' is scaled with its scaling group 'g'"}},
      {"RouterInGroup",
       "roles:\n  router: {}\n  decode: {}\nscalingGroups:\n  - {name: g, roles: [router]}\n",
       {"scalingGroups[0].roles: 'router' is a router; allowed: prefill, decode and worker"}},
      {"DuplicateKey",
       "roles:\n  router: {}\n  decode:\n    replicas: 1\n    replicas: 2\n",
       {"bad.yaml:8: roles.decode.replicas: appears twice"}},
      {"InvalidQuantity",
       "roles:\n  router: {}\n  decode: {resources: {memory: 16GB}}\n",
       {"roles.decode.resources.memory: '16GB' is not a Kubernetes quantity"}},
      {"InvalidDeploymentName",
       "roles:\n  router: {}\n  decode: {}\n",
       {"name: 'Bad_Name' is not a valid name"}},
      {"MissingModel", "roles:\n  router: {}\n  decode: {}\n", {"roles.decode.model: no model"}},
      {"WrongApiVersion",
       "roles:\n  router: {}\n  decode: {}\n",
       {"apiVersion: 'tandem/v2' is not supported; allowed: tandem/v1"}},
      {"NotYaml", "roles: [unclosed\n", {"not valid YAML"}},
      {"EmptyDocument", "", {"empty; a spec needs at least apiVersion, name and roles"}},
      {"UnknownKubernetesField",
       "roles:\n  router: {}\n  decode: {}\nkubernetes: {imag: x}\n",
       {"kubernetes.imag: unknown field (did you mean 'image'?)"}},
      {"BadPrometheusMode",
       "roles:\n  router: {}\n  decode: {}\nkubernetes: {prometheus: scrape}\n",
       {"kubernetes.prometheus: 'scrape' is not a scrape mode; allowed: annotations, podMonitor, "
        "none"}},
      {"MultiHostInGroupWithManyReplicas",
       "roles:\n  router: {}\n  decode: {replicas: 2, gpusPerInstance: 8, nodesPerInstance: 2}\n"
       "scalingGroups:\n  - {name: g, roles: [decode]}\n",
       {"roles.decode.replicas: 2 multi-host TP groups per replica of scaling group 'g'; allowed: "
        "1"}},
      {"PreferredNotNarrower",
       "topology:\n  levels: [zone, rack]\nroles:\n  router: {}\n"
       "  decode: {topology: {packRequired: rack, packPreferred: zone}}\n",
       {"roles.decode.topology.packPreferred: 'zone' is not narrower than packRequired 'rack'"}},
  };
  return *cases;
}

class BadSpecTest : public ::testing::TestWithParam<BadSpec> {};

TEST_P(BadSpecTest, IsRefusedWithAClearMessage) {
  const BadSpec& bad = GetParam();
  std::string text = WithHead(bad.yaml);
  if (std::string(bad.name) == "InvalidDeploymentName") {
    text = "apiVersion: tandem/v1\nname: Bad_Name\nmodel: m\n" + std::string(bad.yaml);
  } else if (std::string(bad.name) == "MissingModel") {
    text = "apiVersion: tandem/v1\nname: bad\n" + std::string(bad.yaml);
  } else if (std::string(bad.name) == "WrongApiVersion") {
    text = "apiVersion: tandem/v2\nname: bad\nmodel: m\n" + std::string(bad.yaml);
  } else if (std::string(bad.name) == "EmptyDocument") {
    text = "";
  }
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(text, "bad.yaml");
  ASSERT_FALSE(spec.ok()) << "accepted:\n" << text;
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  for (const char* expected : bad.expected) {
    EXPECT_THAT(std::string(spec.status().message()), HasSubstr(expected)) << "spec:\n" << text;
  }
}

INSTANTIATE_TEST_SUITE_P(Table, BadSpecTest, ::testing::ValuesIn(BadSpecs()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ParseSpecTest, ReportsEveryProblemInLineOrder) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(R"(apiVersion: tandem/v1
name: many
model: m
roles:
  router: {replicas: x}
  decode: {replicaz: 1}
)",
                                                  "many.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("many.yaml:5: roles.router.replicas: 'x' is not an integer"));
  EXPECT_THAT(std::string(spec.status().message()),
              HasSubstr("\nmany.yaml:6: roles.decode.replicaz: unknown field"));
}

TEST(LoadSpecTest, MissingFileNamesThePath) {
  FakeEnv env;
  absl::StatusOr<DeploymentSpec> spec = LoadSpec(env, "nowhere.yaml");
  ASSERT_FALSE(spec.ok());
  EXPECT_THAT(std::string(spec.status().message()), HasSubstr("nowhere.yaml"));
  env.SetFile("here.yaml", kMinimal);
  EXPECT_TRUE(LoadSpec(env, "here.yaml").ok());
}

}  // namespace
}  // namespace tandem::deploy
