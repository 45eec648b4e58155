#include "planner/scale_targets.h"

#include "planner/kubernetes_connector.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::planner {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ScaleTargetTest, ParsesTheCommandLineForm) {
  absl::StatusOr<ScaleTarget> local = ParseScaleTarget("decode=decode:1:8");
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->name, "decode");
  EXPECT_THAT(local->resources, ElementsAre("decode"));
  EXPECT_EQ(local->min_units, 1);
  EXPECT_EQ(local->max_units, 8);
  absl::StatusOr<ScaleTarget> group =
      ParseScaleTarget("pd=apps/statefulsets/x-prefill*2,apps/statefulsets/x-decode*2:1:4");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_THAT(group->resources,
              ElementsAre("apps/statefulsets/x-prefill*2", "apps/statefulsets/x-decode*2"));
  EXPECT_EQ(group->max_units, 4);
}

TEST(ScaleTargetTest, RefusesBadTargetsSayingWhy) {
  const std::pair<const char*, const char*> cases[] = {
      {"decode:1:8", "no NAME= at the start"},
      {"decode=decode", "no :MIN:MAX at the end"},
      {"decode=decode:8", "no :MIN:MAX at the end"},
      {"decode=decode:a:8", "MIN and MAX must be integers"},
      {"decode=decode:3:2", "needs 0 <= MIN <= MAX and MAX >= 1, got MIN 3 and MAX 2"},
      {"decode=decode:0:0", "MAX >= 1"},
      {"decode=decode:-1:2", "got MIN -1"},
      {"decode=:1:2", "no RESOURCE"},
      {"decode=a,,b:1:2", "an empty RESOURCE"},
  };
  for (const auto& [text, message] : cases) {
    absl::StatusOr<ScaleTarget> target = ParseScaleTarget(text);
    ASSERT_FALSE(target.ok()) << text;
    EXPECT_EQ(target.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(target.status().message(), HasSubstr(message)) << text;
    EXPECT_THAT(target.status().message(), HasSubstr("decode=decode:1:8")) << "shows the form";
  }
}

TEST(ScaleTargetTest, BoundsFromTargetsAndUnitsFromDecisions) {
  ScaleTarget prefill = *ParseScaleTarget("prefill=prefill:1:4");
  prefill.composition = *CompositionFromName("prefill");
  ScaleTarget group = *ParseScaleTarget("pd=pd:1:3");
  group.composition = {.prefill = 2, .decode = 1};
  ReplicaBounds bounds;
  ASSERT_TRUE(ApplyTargetBounds({group}, &bounds).ok());
  EXPECT_EQ(bounds.prefill.min_instances, 2);
  EXPECT_EQ(bounds.prefill.max_instances, 6);
  EXPECT_EQ(bounds.decode.min_instances, 1);
  EXPECT_EQ(bounds.decode.max_instances, 3);
  Decision decision;
  decision.prefill.target = 3;  // 2 per unit: 2 units
  decision.decode.target = 1;
  EXPECT_EQ(UnitsFor(group, decision), 2);
  decision.decode.target = 3;  // decode needs 3 units
  EXPECT_EQ(UnitsFor(group, decision), 3);
  decision.decode.target = 10;  // clamped to MAX
  EXPECT_EQ(UnitsFor(group, decision), 3);
  decision.prefill.target = 0;
  decision.decode.target = 0;  // clamped to MIN
  EXPECT_EQ(UnitsFor(group, decision), 1);

  absl::Status twice = ApplyTargetBounds({prefill, group}, &bounds);
  EXPECT_THAT(twice.message(), HasSubstr("'prefill' and 'pd' both hold the prefill role"));
  ScaleTarget empty = *ParseScaleTarget("router=router:1:2");
  EXPECT_THAT(ApplyTargetBounds({empty}, &bounds).message(),
              HasSubstr("holds no prefill or decode instance"));
  EXPECT_THAT(CompositionFromName("gen").status().message(), HasSubstr("--role-of gen="));
  // Bounds that the config's GPU budget cannot meet are refused, naming both.
  ReplicaBounds tight;
  tight.gpu_budget = 2;
  tight.prefill.gpus_per_instance = 2;
  tight.decode.gpus_per_instance = 2;
  ScaleTarget decode = *ParseScaleTarget("decode=decode:2:4");
  decode.composition = *CompositionFromName("decode");
  EXPECT_THAT(ApplyTargetBounds({decode}, &tight).message(),
              HasSubstr("cannot be met with the config's ratio and GPU budget"));
}

TEST(ScaleTargetTest, KubernetesTargetsAreOneRoleEach) {
  ScaleTarget decode = *ParseScaleTarget("decode=apps/statefulsets/x-decode*2:2:8");
  decode.composition = *CompositionFromName("decode");
  absl::StatusOr<std::vector<RoleScaleTargets>> roles = KubernetesTargets({decode});
  ASSERT_TRUE(roles.ok()) << roles.status();
  ASSERT_EQ(roles->size(), 1u);
  EXPECT_EQ((*roles)[0].role, "decode");
  EXPECT_EQ((*roles)[0].objects.at(0).name, "x-decode");
  EXPECT_EQ((*roles)[0].objects.at(0).pods_per_unit, 2);
  ScaleTarget group = *ParseScaleTarget("pd=apps/statefulsets/a,apps/statefulsets/b:1:4");
  group.composition = {.prefill = 1, .decode = 1};
  EXPECT_THAT(KubernetesTargets({group}).status().message(),
              HasSubstr("scales one role per target"));
  ScaleTarget unnamed = *ParseScaleTarget("gen=apps/statefulsets/x-gen:1:2");
  EXPECT_THAT(KubernetesTargets({unnamed}).status().message(), HasSubstr("--role-of gen="));
  ScaleTarget bad = *ParseScaleTarget("decode=statefulsets:1:2");
  bad.composition = *CompositionFromName("decode");
  EXPECT_THAT(KubernetesTargets({bad}).status().message(), HasSubstr("--scale 'decode': "));
}

}  // namespace
}  // namespace tandem::planner
