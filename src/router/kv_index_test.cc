#include "router/kv_index.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::router {
namespace {

using ::testing::HasSubstr;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

KvEvent Stored(uint64_t epoch, uint64_t id, std::vector<BlockHash> hashes) {
  return {.type = KvEvent::Type::kStored,
          .epoch = epoch,
          .event_id = id,
          .block_hashes = std::move(hashes)};
}
KvEvent Removed(uint64_t epoch, uint64_t id, std::vector<BlockHash> hashes) {
  return {.type = KvEvent::Type::kRemoved,
          .epoch = epoch,
          .event_id = id,
          .block_hashes = std::move(hashes)};
}
KvEvent Cleared(uint64_t epoch, uint64_t id) {
  return {.type = KvEvent::Type::kCleared, .epoch = epoch, .event_id = id};
}

ApplyOutcome MustApply(KvIndex& index, WorkerId worker, const KvEvent& event) {
  auto outcome = index.Apply(worker, event);
  EXPECT_TRUE(outcome.ok()) << outcome.status();
  return outcome.value_or(ApplyOutcome::kStaleEpoch);
}

std::vector<std::pair<WorkerId, int32_t>> Overlap(const KvIndex& index,
                                                  std::vector<BlockHash> prompt) {
  OverlapScores scores;
  index.FindOverlap(prompt, &scores);
  return scores.blocks;
}

TEST(KvIndexTest, OverlapCountsLeadingBlocksPerWorker) {
  KvIndex index;
  EXPECT_EQ(MustApply(index, 1, Stored(1, 1, {10, 11, 12, 13})), ApplyOutcome::kApplied);
  EXPECT_EQ(MustApply(index, 2, Stored(1, 1, {10, 11})), ApplyOutcome::kApplied);
  EXPECT_EQ(MustApply(index, 3, Stored(1, 1, {99})), ApplyOutcome::kApplied);
  EXPECT_THAT(Overlap(index, {10, 11, 12, 13, 14}), UnorderedElementsAre(Pair(1, 4), Pair(2, 2)));
  EXPECT_THAT(Overlap(index, {10, 11, 12, 13}), UnorderedElementsAre(Pair(1, 4), Pair(2, 2)));
  EXPECT_THAT(Overlap(index, {99}), UnorderedElementsAre(Pair(3, 1)));
  EXPECT_TRUE(Overlap(index, {42, 10}).empty());
  EXPECT_TRUE(Overlap(index, {}).empty());
  EXPECT_EQ(index.DistinctBlocks(), 5u);
  EXPECT_EQ(index.BlockCount(1), 4);
}

TEST(KvIndexTest, PrefixMatchStopsAtTheFirstMissingBlock) {
  KvIndex index;
  MustApply(index, 1, Stored(1, 1, {10, 12, 13}));  // lacks 11
  EXPECT_THAT(Overlap(index, {10, 11, 12, 13}), UnorderedElementsAre(Pair(1, 1)));
}

TEST(KvIndexTest, RemovedAndClearedDropBlocks) {
  KvIndex index;
  MustApply(index, 1, Stored(1, 1, {10, 11, 12}));
  MustApply(index, 2, Stored(1, 1, {10, 11, 12}));
  EXPECT_EQ(MustApply(index, 1, Removed(1, 2, {11})), ApplyOutcome::kApplied);
  EXPECT_THAT(Overlap(index, {10, 11, 12}), UnorderedElementsAre(Pair(1, 1), Pair(2, 3)));
  EXPECT_FALSE(index.Holds(1, 11));
  EXPECT_TRUE(index.Holds(2, 11));
  EXPECT_EQ(MustApply(index, 2, Cleared(1, 2)), ApplyOutcome::kApplied);
  EXPECT_THAT(Overlap(index, {10, 11, 12}), UnorderedElementsAre(Pair(1, 1)));
  EXPECT_EQ(index.BlockCount(2), 0);
  EXPECT_EQ(index.DistinctBlocks(), 2u);  // 10 and 12 on worker 1
  MustApply(index, 1, Removed(1, 3, {77}));
  EXPECT_EQ(index.stats().removed_unknown, 1u);
}

TEST(KvIndexTest, DuplicatesAreIgnored) {
  KvIndex index;
  MustApply(index, 1, Stored(1, 1, {10}));
  MustApply(index, 1, Removed(1, 2, {10}));
  EXPECT_EQ(MustApply(index, 1, Stored(1, 1, {10})), ApplyOutcome::kDuplicate);
  EXPECT_FALSE(index.Holds(1, 10));
  EXPECT_EQ(index.stats().duplicates, 1u);
}

TEST(KvIndexTest, GapAsksForResyncAndSnapshotReplaysTheBuffer) {
  KvIndex index;
  MustApply(index, 1, Stored(1, 1, {10}));
  MustApply(index, 1, Stored(1, 2, {11}));
  // Event 3 is lost.
  EXPECT_EQ(MustApply(index, 1, Stored(1, 4, {13})), ApplyOutcome::kNeedsResync);
  EXPECT_EQ(MustApply(index, 1, Removed(1, 5, {10})), ApplyOutcome::kNeedsResync);
  EXPECT_TRUE(index.NeedsResync(1));
  ASSERT_EQ(index.PendingResyncs().size(), 1u);
  EXPECT_EQ(index.PendingResyncs()[0].worker, 1u);
  EXPECT_EQ(index.PendingResyncs()[0].epoch, 1u);
  EXPECT_EQ(index.PendingResyncs()[0].last_applied_event_id, 2u);
  // Until the snapshot, the worker answers with what it had before the gap.
  EXPECT_THAT(Overlap(index, {10, 11}), UnorderedElementsAre(Pair(1, 2)));

  // The snapshot was taken after event 4: it has 10, 11, 12 (from the lost event 3) and 13.
  ASSERT_TRUE(
      index.ApplySnapshot(1, {.epoch = 1, .event_id = 4, .block_hashes = {10, 11, 12, 13}}).ok());
  EXPECT_FALSE(index.NeedsResync(1));
  EXPECT_EQ(index.CursorOf(1)->last_applied_event_id, 5u);  // event 5 replayed
  EXPECT_FALSE(index.Holds(1, 10));
  EXPECT_TRUE(index.Holds(1, 12));
  EXPECT_EQ(index.BlockCount(1), 3);
  EXPECT_EQ(MustApply(index, 1, Stored(1, 6, {14})), ApplyOutcome::kApplied);
  EXPECT_EQ(index.stats().gaps, 1u);
  EXPECT_EQ(index.stats().snapshots_applied, 1u);
}

TEST(KvIndexTest, ASnapshotOlderThanTheBufferFindsTheGapAgain) {
  KvIndex index;
  MustApply(index, 1, Stored(1, 1, {10}));
  MustApply(index, 1, Stored(1, 5, {14}));  // gap: 2..4 lost
  ASSERT_TRUE(index.ApplySnapshot(1, {.epoch = 1, .event_id = 2, .block_hashes = {10, 11}}).ok());
  EXPECT_TRUE(index.NeedsResync(1));  // 3 and 4 are still missing
  EXPECT_EQ(index.CursorOf(1)->last_applied_event_id, 2u);
  ASSERT_TRUE(
      index.ApplySnapshot(1, {.epoch = 1, .event_id = 4, .block_hashes = {10, 11, 12, 13}}).ok());
  EXPECT_FALSE(index.NeedsResync(1));
  EXPECT_TRUE(index.Holds(1, 14));
}

TEST(KvIndexTest, BufferIsBoundedDroppingTheOldest) {
  KvIndex index({.max_workers = 4, .max_buffered_events = 2});
  MustApply(index, 1, Stored(1, 1, {10}));
  MustApply(index, 1, Stored(1, 3, {12}));
  MustApply(index, 1, Stored(1, 4, {13}));
  MustApply(index, 1, Stored(1, 5, {14}));
  EXPECT_EQ(index.CursorOf(1)->buffered_events, 2u);
  EXPECT_EQ(index.stats().buffered_events_dropped, 1u);
  // A snapshot at 2 cannot be completed from the buffer (3 was dropped): resync again.
  ASSERT_TRUE(index.ApplySnapshot(1, {.epoch = 1, .event_id = 2, .block_hashes = {10, 11}}).ok());
  EXPECT_TRUE(index.NeedsResync(1));
}

TEST(KvIndexTest, ANewEpochDropsTheOldIncarnationsBlocks) {
  KvIndex index;
  MustApply(index, 1, Stored(7, 1, {10, 11}));
  MustApply(index, 2, Stored(1, 1, {10}));
  EXPECT_EQ(MustApply(index, 1, Stored(8, 1, {20})), ApplyOutcome::kApplied);
  EXPECT_FALSE(index.Holds(1, 10));
  EXPECT_TRUE(index.Holds(1, 20));
  EXPECT_TRUE(index.Holds(2, 10));
  EXPECT_EQ(index.stats().epoch_changes, 1u);
  // Messages from the dead incarnation are ignored.
  EXPECT_EQ(MustApply(index, 1, Stored(7, 3, {30})), ApplyOutcome::kStaleEpoch);
  EXPECT_FALSE(index.Holds(1, 30));
  auto stale = index.ApplySnapshot(1, {.epoch = 7, .event_id = 9, .block_hashes = {30}});
  EXPECT_EQ(stale.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(stale.message(), HasSubstr("epoch 7"));
}

TEST(KvIndexTest, ANewEpochStartingMidStreamNeedsResync) {
  KvIndex index;
  MustApply(index, 1, Stored(1, 1, {10}));
  EXPECT_EQ(MustApply(index, 1, Stored(2, 6, {20})), ApplyOutcome::kNeedsResync);
  EXPECT_FALSE(index.Holds(1, 10));  // dropped at once: the old incarnation is gone
  EXPECT_EQ(index.PendingResyncs()[0].epoch, 2u);
  ASSERT_TRUE(index.ApplySnapshot(1, {.epoch = 2, .event_id = 5, .block_hashes = {19}}).ok());
  EXPECT_TRUE(index.Holds(1, 19));
  EXPECT_TRUE(index.Holds(1, 20));
}

TEST(KvIndexTest, ARouterJoiningLateResyncsFirst) {
  KvIndex index;
  EXPECT_EQ(MustApply(index, 1, Stored(3, 40, {10})), ApplyOutcome::kNeedsResync);
  EXPECT_TRUE(index.NeedsResync(1));
}

TEST(KvIndexTest, WorkerCapacityAndRemoval) {
  KvIndex index({.max_workers = 2});
  MustApply(index, 1, Stored(1, 1, {10}));
  MustApply(index, 2, Stored(1, 1, {10}));
  auto refused = index.Apply(3, Stored(1, 1, {10}));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(refused.status().message(), HasSubstr("max_workers"));
  index.RemoveWorker(1);
  EXPECT_FALSE(index.CursorOf(1).has_value());
  EXPECT_EQ(MustApply(index, 3, Stored(1, 1, {10})), ApplyOutcome::kApplied);
  EXPECT_THAT(Overlap(index, {10}), UnorderedElementsAre(Pair(2, 1), Pair(3, 1)));
}

TEST(KvIndexTest, UnknownEventTypeIsRefused) {
  KvIndex index;
  KvEvent event = Stored(1, 1, {10});
  event.type = static_cast<KvEvent::Type>(9);
  auto outcome = index.Apply(1, event);
  EXPECT_EQ(outcome.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(outcome.status().message(), HasSubstr("unknown type 9"));
}

TEST(KvIndexTest, OptionsAreValidated) {
  EXPECT_THAT(KvIndex::ValidateOptions({.max_workers = 0}).message(), HasSubstr("max_workers"));
  EXPECT_THAT(KvIndex::ValidateOptions({.max_workers = 5000}).message(), HasSubstr("1..4096"));
  EXPECT_FALSE(KvIndex::ValidateOptions({.max_workers = 8, .max_buffered_events = 0}).ok());
  EXPECT_TRUE(KvIndex::ValidateOptions({.max_workers = 4096}).ok());
}

// Random event streams against a plain reference model, for inline (<= 64 workers) and arena
// (wider) worker sets.
class KvIndexModelTest : public ::testing::TestWithParam<int> {};

TEST_P(KvIndexModelTest, MatchesAReferenceModel) {
  const int max_workers = GetParam();
  const uint64_t seed = 20240611 + max_workers;
  SCOPED_TRACE(testing::Message() << "seed " << seed << ", max_workers " << max_workers);
  std::mt19937_64 rng(seed);
  KvIndex index({.max_workers = max_workers});
  const int workers = std::min(max_workers, 150);
  std::map<WorkerId, std::set<BlockHash>> model;
  std::map<WorkerId, uint64_t> next_id;
  // A small hash universe of chains so prompts really share prefixes.
  auto chain = [](int root, int length) {
    std::vector<BlockHash> hashes;
    for (int i = 0; i < length; ++i) hashes.push_back(uint64_t(root) * 1000 + i + 1);
    return hashes;
  };
  for (int step = 0; step < 20000; ++step) {
    const WorkerId worker = 100 + rng() % workers;
    uint64_t& id = next_id[worker];
    const int op = static_cast<int>(rng() % 100);
    if (op < 60) {
      auto hashes = chain(static_cast<int>(rng() % 20), 1 + static_cast<int>(rng() % 12));
      ASSERT_EQ(MustApply(index, worker, Stored(1, ++id, hashes)), ApplyOutcome::kApplied);
      model[worker].insert(hashes.begin(), hashes.end());
    } else if (op < 97) {
      std::vector<BlockHash> hashes = {uint64_t(rng() % 20) * 1000 + 1 + rng() % 12};
      ASSERT_EQ(MustApply(index, worker, Removed(1, ++id, hashes)), ApplyOutcome::kApplied);
      model[worker].erase(hashes[0]);
    } else if (op < 99) {
      ASSERT_EQ(MustApply(index, worker, Cleared(1, ++id)), ApplyOutcome::kApplied);
      model[worker].clear();
    } else {
      index.RemoveWorker(worker);
      model.erase(worker);
      id = 0;
    }
    if (step % 50 == 0) {
      const auto prompt = chain(static_cast<int>(rng() % 20), 12);
      std::map<WorkerId, int32_t> expected;
      for (const auto& [w, blocks] : model) {
        int32_t n = 0;
        while (n < 12 && blocks.count(prompt[n])) ++n;
        if (n > 0) expected[w] = n;
      }
      const auto got = Overlap(index, prompt);
      const std::map<WorkerId, int32_t> got_map(got.begin(), got.end());
      ASSERT_EQ(got_map, expected) << "step " << step;
      ASSERT_EQ(got.size(), got_map.size()) << "a worker reported twice";
      for (const auto& [w, blocks] : model) ASSERT_EQ(index.BlockCount(w), int64_t(blocks.size()));
    }
  }
  std::set<BlockHash> all;
  for (const auto& [w, blocks] : model) {
    all.insert(blocks.begin(), blocks.end());
    auto listed = index.BlocksOf(w);
    EXPECT_EQ(std::set<BlockHash>(listed.begin(), listed.end()), blocks);
  }
  EXPECT_EQ(index.DistinctBlocks(), all.size());
}

INSTANTIATE_TEST_SUITE_P(Widths, KvIndexModelTest, ::testing::Values(8, 64, 65, 200));

}  // namespace
}  // namespace tandem::router
