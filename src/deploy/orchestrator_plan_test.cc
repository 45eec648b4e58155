#include "deploy/orchestrator_plan.h"

#include <algorithm>
#include <random>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::deploy {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

DeploymentSpec Parse(const std::string& text) {
  absl::StatusOr<DeploymentSpec> spec = ParseSpec(text, "test.yaml");
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : DeploymentSpec{};
}

constexpr char kDisaggregated[] = R"(apiVersion: tandem/v1
name: t
model: m.gguf
roles:
  router: {}
  decode:
    replicas: 3
    minAvailable: 2
    startsAfter: [router]
  prefill:
    replicas: 2
    startsAfter: [decode]
)";

constexpr char kGrouped[] = R"(apiVersion: tandem/v1
name: g
model: m.gguf
roles:
  router: {}
  planner: {startsAfter: [prefill]}
  prefill: {replicas: 2, startsAfter: [router]}
  decode: {replicas: 1, startsAfter: [router]}
scalingGroups:
  - name: pd
    roles: [prefill, decode]
    replicas: 3
    minAvailable: 2
    readyTimeoutSeconds: 7
)";

TEST(BuildUnitsTest, OneUnitPerRoleInStartupOrder) {
  std::vector<UnitSpec> units = BuildUnits(Parse(kDisaggregated));
  ASSERT_EQ(units.size(), 3u);
  EXPECT_EQ(units[0].name, "router");
  EXPECT_EQ(units[1].name, "decode");
  EXPECT_EQ(units[2].name, "prefill");
  EXPECT_FALSE(units[1].is_group);
  EXPECT_EQ(units[1].replicas, 3);
  EXPECT_EQ(units[1].min_available, 2);
  EXPECT_THAT(units[1].depends_on, ElementsAre("router"));
  EXPECT_THAT(units[2].depends_on, ElementsAre("decode"));
  EXPECT_THAT(units[0].depends_on, IsEmpty());
}

TEST(BuildUnitsTest, ScalingGroupIsOneGangAfterItsMembersDependencies) {
  std::vector<UnitSpec> units = BuildUnits(Parse(kGrouped));
  ASSERT_EQ(units.size(), 3u);
  EXPECT_EQ(units[0].name, "router");
  EXPECT_EQ(units[1].name, "pd");
  EXPECT_TRUE(units[1].is_group);
  EXPECT_THAT(units[1].roles, UnorderedElementsAre("prefill", "decode"));
  EXPECT_EQ(units[1].replicas, 3);
  EXPECT_EQ(units[1].min_available, 2);
  EXPECT_EQ(units[1].ready_timeout_seconds, 7);
  // Dependencies between members of the group are internal; the router is the only outside one.
  EXPECT_THAT(units[1].depends_on, ElementsAre("router"));
  EXPECT_EQ(units[2].name, "planner");
  EXPECT_THAT(units[2].depends_on, ElementsAre("prefill"));
}

TEST(TemplateKeyTest, ChangesWithWhatTheProcessRunsOnly) {
  DeploymentSpec spec = Parse(kDisaggregated);
  Role role = *spec.FindRole("decode");
  const std::string base = RoleTemplateKey(role);
  Role changed = role;
  changed.args.push_back("--flag");
  EXPECT_NE(RoleTemplateKey(changed), base);
  changed = role;
  changed.env["X"] = "1";
  EXPECT_NE(RoleTemplateKey(changed), base);
  changed = role;
  changed.model = "other.gguf";
  EXPECT_NE(RoleTemplateKey(changed), base);
  changed = role;
  changed.replicas = 7;  // scaling is not a replacement
  changed.resources.cpu = "8";
  EXPECT_EQ(RoleTemplateKey(changed), base);
  // Arguments cannot run together: {"a b"} differs from {"a", "b"}.
  Role one = role, two = role;
  one.args = {"a b"};
  two.args = {"a", "b"};
  EXPECT_NE(RoleTemplateKey(one), RoleTemplateKey(two));
}

TEST(RestartBackoffTest, DoublesUpToTheCap) {
  const absl::Duration base = absl::Milliseconds(500), cap = absl::Seconds(30);
  EXPECT_EQ(RestartBackoff(1, base, cap), absl::Milliseconds(500));
  EXPECT_EQ(RestartBackoff(2, base, cap), absl::Seconds(1));
  EXPECT_EQ(RestartBackoff(3, base, cap), absl::Seconds(2));
  EXPECT_EQ(RestartBackoff(7, base, cap), absl::Seconds(30));  // 32 s capped
  EXPECT_EQ(RestartBackoff(1000, base, cap), absl::Seconds(30));
  EXPECT_EQ(RestartBackoff(0, base, cap), absl::Milliseconds(500));
}

UnitSpec Unit(int replicas, int min_available, const std::string& key = "new") {
  UnitSpec unit;
  unit.name = "decode";
  unit.replicas = replicas;
  unit.min_available = min_available;
  unit.template_key = key;
  return unit;
}

MemberView M(int64_t id, const std::string& key, MemberPhase phase = MemberPhase::kReady) {
  return {id, key, phase};
}

TEST(PlanUnitTest, StartsEverythingMissingAtOnce) {
  UnitPlan plan = PlanUnit(Unit(3, 2), {});
  EXPECT_EQ(plan.start, 3);
  EXPECT_THAT(plan.drain, IsEmpty());
  plan = PlanUnit(Unit(3, 2), {M(1, "new"), M(2, "new", MemberPhase::kStarting)});
  EXPECT_EQ(plan.start, 1);
}

TEST(PlanUnitTest, ScaleDownRetiresNotReadyFirstThenNewestReady) {
  UnitPlan plan = PlanUnit(
      Unit(2, 1), {M(1, "new"), M(2, "new"), M(3, "new"), M(4, "new", MemberPhase::kStarting)});
  EXPECT_THAT(plan.stop, ElementsAre(4));
  EXPECT_THAT(plan.drain, ElementsAre(3));
  EXPECT_EQ(plan.start, 0);
}

TEST(PlanUnitTest, ScaleDownNeverDrainsBelowMinAvailable) {
  // Two members are not ready: only one ready member may go while keeping 2 ready.
  UnitPlan plan = PlanUnit(Unit(0, 2), {M(1, "new"), M(2, "new"), M(3, "new")});
  EXPECT_THAT(plan.drain, ElementsAre(3));
}

TEST(PlanUnitTest, DrainingMembersAreIgnored) {
  UnitPlan plan = PlanUnit(Unit(2, 1), {M(1, "new"), M(2, "new", MemberPhase::kDraining)});
  EXPECT_EQ(plan.start, 1);
  EXPECT_THAT(plan.drain, IsEmpty());
}

TEST(PlanUnitTest, RollingUpdateSurgesBeforeDraining) {
  UnitSpec unit = Unit(2, 2);
  UnitPlan plan = PlanUnit(unit, {M(1, "old"), M(2, "old")});
  EXPECT_EQ(plan.start, 1);  // surge one
  EXPECT_THAT(plan.drain, IsEmpty());
  plan = PlanUnit(unit, {M(1, "old"), M(2, "old"), M(3, "new", MemberPhase::kStarting)});
  EXPECT_EQ(plan.start, 0);  // wait for it
  EXPECT_THAT(plan.drain, IsEmpty());
  plan = PlanUnit(unit, {M(1, "old"), M(2, "old"), M(3, "new")});
  // The oldest goes once the new one is ready, and the next surge starts: still one extra.
  EXPECT_THAT(plan.drain, ElementsAre(1));
  EXPECT_EQ(plan.start, 1);
  plan = PlanUnit(unit, {M(2, "old"), M(3, "new"), M(4, "new", MemberPhase::kStarting),
                         M(1, "old", MemberPhase::kDraining)});
  EXPECT_EQ(plan.start, 0);
  EXPECT_THAT(plan.drain, IsEmpty());  // 2 must stay: only 1 new member is ready
  plan = PlanUnit(unit, {M(2, "old"), M(3, "new"), M(4, "new")});
  EXPECT_THAT(plan.drain, ElementsAre(2));
  EXPECT_EQ(plan.start, 0);
}

TEST(PlanUnitTest, OldMembersThatServeNothingStopAtOnce) {
  UnitPlan plan = PlanUnit(Unit(2, 1), {M(1, "old"), M(2, "old", MemberPhase::kRestarting),
                                        M(3, "mid", MemberPhase::kStarting)});
  EXPECT_THAT(plan.stop, UnorderedElementsAre(2, 3));
  EXPECT_EQ(plan.start, 1);  // fill the missing one, then surge the next later
}

// Simulates whole rolling updates step by step with random readiness delays and checks the
// invariants: ready members never drop below min_available, at most one member beyond the
// larger of the old and new replica counts exists at a time, and the unit converges to `replicas`
// members of the new template.
TEST(PlanUnitTest, SimulatedRollingUpdatesKeepMinAvailable) {
  const uint32_t seed = 20261124;
  std::mt19937 random(seed);
  for (int trial = 0; trial < 200; ++trial) {
    const int old_replicas = 1 + static_cast<int>(random() % 4);
    const int replicas = 1 + static_cast<int>(random() % 4);
    const int min_available =
        static_cast<int>(random() % (static_cast<uint32_t>(std::min(old_replicas, replicas)) + 1));
    SCOPED_TRACE(testing::Message() << "seed " << seed << " trial " << trial << ": " << old_replicas
                                    << " -> " << replicas << " min " << min_available);
    struct Sim {
      MemberView view;
      int ticks_to_ready;
      int ticks_to_exit;
    };
    std::vector<Sim> members;
    int64_t next_id = 1;
    for (int i = 0; i < old_replicas; ++i) members.push_back({M(next_id++, "old"), 0, -1});
    UnitSpec unit = Unit(replicas, min_available);
    int steps = 0;
    for (; steps < 500; ++steps) {
      std::vector<MemberView> views;
      for (const Sim& sim : members) views.push_back(sim.view);
      UnitPlan plan = PlanUnit(unit, views);
      int pending_new = 0;
      for (auto& sim : members) {
        if (std::count(plan.stop.begin(), plan.stop.end(), sim.view.id) ||
            std::count(plan.drain.begin(), plan.drain.end(), sim.view.id)) {
          sim.view.phase = MemberPhase::kDraining;
          sim.ticks_to_exit = static_cast<int>(random() % 3);
        }
      }
      for (int i = 0; i < plan.start; ++i) {
        members.push_back(
            {M(next_id++, "new", MemberPhase::kStarting), static_cast<int>(random() % 4), -1});
      }
      // The invariant, right after the decisions took effect.
      int ready = 0;
      for (const Sim& sim : members) {
        ready += sim.view.phase == MemberPhase::kReady ? 1 : 0;
        pending_new += sim.view.phase == MemberPhase::kStarting ? 1 : 0;
      }
      ASSERT_GE(ready, std::min(min_available, old_replicas)) << "step " << steps;
      int serving_or_starting = 0;
      for (const Sim& sim : members) {
        serving_or_starting += sim.view.phase != MemberPhase::kDraining ? 1 : 0;
      }
      ASSERT_LE(serving_or_starting, std::max(replicas, old_replicas) + 1) << "surge over one";
      // Time passes.
      for (auto& sim : members) {
        if (sim.view.phase == MemberPhase::kStarting && sim.ticks_to_ready-- <= 0) {
          sim.view.phase = MemberPhase::kReady;
        }
      }
      members.erase(std::remove_if(members.begin(), members.end(),
                                   [](Sim& sim) {
                                     return sim.view.phase == MemberPhase::kDraining &&
                                            sim.ticks_to_exit-- <= 0;
                                   }),
                    members.end());
      bool converged =
          static_cast<int>(members.size()) == replicas &&
          std::all_of(members.begin(), members.end(), [](const Sim& sim) {
            return sim.view.template_key == "new" && sim.view.phase == MemberPhase::kReady;
          });
      if (converged) break;
    }
    EXPECT_LT(steps, 500) << "did not converge";
  }
}

TEST(DiffSpecsTest, NamesWhatChanges) {
  DeploymentSpec running = Parse(kDisaggregated);
  EXPECT_THAT(DiffSpecs(running, running), IsEmpty());
  std::string text = kDisaggregated;
  text.replace(text.find("replicas: 3"), 11, "replicas: 4");
  text.replace(text.find("    startsAfter: [decode]"), 25,
               "    startsAfter: [decode]\n    args: [--x]");
  text += "  planner: {startsAfter: [router]}\n";
  DeploymentSpec next = Parse(text);
  std::vector<std::string> diff = DiffSpecs(running, next);
  EXPECT_THAT(diff, UnorderedElementsAre("decode: replicas 3 -> 4",
                                         "prefill: args changed; rolling replacement",
                                         HasSubstr("planner: added")));
  EXPECT_THAT(DiffSpecs(next, running), ::testing::Contains("planner: removed"));
}

}  // namespace
}  // namespace tandem::deploy
