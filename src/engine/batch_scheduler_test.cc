#include "engine/batch_scheduler.h"

#include <vector>

#include "gtest/gtest.h"

namespace tandem::engine {
namespace {

SchedulerConfig Config(int64_t budget = 64) {
  return {.max_batch_tokens = budget, .max_running = 8, .block_size = 4};
}

TEST(BatchSchedulerTest, DecodesFirstThenChunkedPrefillThenAdmission) {
  std::vector<SchedSequence> running = {
      {.id = 1, .arrival = 1, .tokens = 9, .computed = 8, .blocks_held = 2},  // decode, new block
      {.id = 2, .arrival = 2, .tokens = 100, .computed = 40, .blocks_held = 25},  // prefill
  };
  std::vector<SchedSequence> waiting = {{.id = 3, .arrival = 3, .tokens = 10}};
  StepPlan plan =
      PlanStep(Config(32), {.running = running, .waiting = waiting, .available_blocks = 100});
  ASSERT_EQ(plan.work.size(), 2u);
  EXPECT_EQ(plan.work[0].id, 1u);
  EXPECT_EQ(plan.work[0].count, 1);
  EXPECT_TRUE(plan.work[0].samples);
  EXPECT_EQ(plan.work[0].blocks_after, 3);
  EXPECT_EQ(plan.work[1].id, 2u);
  EXPECT_EQ(plan.work[1].count, 31);
  EXPECT_FALSE(plan.work[1].samples);
  EXPECT_EQ(plan.tokens, 32);
  EXPECT_TRUE(plan.admitted.empty());  // budget spent
}

TEST(BatchSchedulerTest, AdmissionNeedsTheWholePromptAndIsStrictlyFcfs) {
  std::vector<SchedSequence> waiting = {
      {.id = 7, .arrival = 2, .tokens = 4},
      {.id = 5, .arrival = 1, .tokens = 40},  // needs 11 blocks, only 5 available
  };
  StepPlan plan = PlanStep(Config(), {.waiting = waiting, .available_blocks = 5});
  EXPECT_TRUE(plan.work.empty());  // 7 may not overtake 5
  plan = PlanStep(Config(), {.waiting = waiting, .available_blocks = 13});
  ASSERT_EQ(plan.admitted.size(), 2u);
  EXPECT_EQ(plan.admitted[0], 5u);
  EXPECT_EQ(plan.work[0].count, 40);
  EXPECT_EQ(plan.work[0].blocks_after, 10);
  EXPECT_EQ(plan.blocks_allocated, 11);
}

TEST(BatchSchedulerTest, PreemptsLatestArrivalWhenBlocksRunOut) {
  std::vector<SchedSequence> running = {
      {.id = 1, .arrival = 1, .tokens = 9, .computed = 8, .blocks_held = 2},
      {.id = 2, .arrival = 2, .tokens = 9, .computed = 8, .blocks_held = 2},
      {.id = 3, .arrival = 3, .tokens = 5, .computed = 4, .blocks_held = 2},
  };
  StepPlan plan = PlanStep(Config(), {.running = running, .available_blocks = 0});
  // Sequence 1 needs a block: 3 (latest) is preempted, and its two blocks serve 1 and 2.
  EXPECT_EQ(plan.preempted, std::vector<uint64_t>{3});
  ASSERT_EQ(plan.work.size(), 2u);
  EXPECT_EQ(plan.work[0].id, 1u);
  EXPECT_EQ(plan.work[1].id, 2u);
}

TEST(BatchSchedulerTest, PreemptsItselfWhenNothingElseCanGo) {
  std::vector<SchedSequence> running = {
      {.id = 1, .arrival = 1, .tokens = 9, .computed = 8, .blocks_held = 2}};
  StepPlan plan = PlanStep(Config(), {.running = running, .available_blocks = 0});
  EXPECT_EQ(plan.preempted, std::vector<uint64_t>{1});
  EXPECT_TRUE(plan.work.empty());
}

TEST(BatchSchedulerTest, PrefillChunkShrinksToAvailableBlocks) {
  std::vector<SchedSequence> running = {
      {.id = 1, .arrival = 1, .tokens = 40, .computed = 8, .blocks_held = 2}};
  StepPlan plan = PlanStep(Config(), {.running = running, .available_blocks = 3});
  ASSERT_EQ(plan.work.size(), 1u);
  EXPECT_EQ(plan.work[0].count, 12);
  EXPECT_EQ(plan.work[0].blocks_after, 5);
}

TEST(BatchSchedulerTest, UnchunkedPrefillWaitsForItsOwnStep) {
  SchedulerConfig config = Config(16);
  config.chunked_prefill = false;
  std::vector<SchedSequence> running = {
      {.id = 1, .arrival = 1, .tokens = 9, .computed = 8, .blocks_held = 3}};
  std::vector<SchedSequence> waiting = {{.id = 2, .arrival = 2, .tokens = 30}};
  StepPlan plan =
      PlanStep(config, {.running = running, .waiting = waiting, .available_blocks = 100});
  EXPECT_EQ(plan.work.size(), 1u);
  plan = PlanStep(config, {.waiting = waiting, .available_blocks = 100});
  ASSERT_EQ(plan.work.size(), 1u);
  EXPECT_EQ(plan.work[0].count, 30);  // alone, over budget, in one piece
}

TEST(BatchSchedulerTest, RunningLimitBoundsAdmission) {
  SchedulerConfig config = Config();
  config.max_running = 2;
  std::vector<SchedSequence> running = {
      {.id = 1, .arrival = 1, .tokens = 9, .computed = 8, .blocks_held = 3}};
  std::vector<SchedSequence> waiting = {{.id = 2, .arrival = 2, .tokens = 3},
                                        {.id = 3, .arrival = 3, .tokens = 3}};
  StepPlan plan =
      PlanStep(config, {.running = running, .waiting = waiting, .available_blocks = 100});
  EXPECT_EQ(plan.admitted, std::vector<uint64_t>{2});
}

}  // namespace
}  // namespace tandem::engine
