#include "router/load_forecast.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::router {
namespace {

using ::testing::Pair;
using ::testing::UnorderedElementsAre;

TEST(LoadForecastTest, CountsUntilReleased) {
  LoadForecast forecast;
  const std::vector<BlockHash> prompt = {1, 2, 3};
  ASSERT_TRUE(forecast
                  .OnRouted(10, {.decode_worker = 1,
                                 .decode_blocks = 20,
                                 .prefill_worker = 2,
                                 .prefill_tokens = 300,
                                 .prompt_blocks = prompt})
                  .ok());
  ASSERT_TRUE(forecast.OnRouted(11, {.decode_worker = 1, .decode_blocks = 5}).ok());
  EXPECT_EQ(forecast.DecodeBlocks(1), 25);
  EXPECT_EQ(forecast.PrefillRequests(2), 1);
  EXPECT_EQ(forecast.PrefillTokens(2), 300);
  EXPECT_EQ(forecast.InFlight(), 2u);

  forecast.OnPrefillDone(10);
  forecast.OnPrefillDone(10);  // twice is harmless
  EXPECT_EQ(forecast.PrefillRequests(2), 0);
  EXPECT_EQ(forecast.PrefillTokens(2), 0);
  EXPECT_EQ(forecast.DecodeBlocks(1), 25);

  forecast.OnFinished(10);
  forecast.OnFinished(10);
  forecast.OnFinished(999);  // unknown
  EXPECT_EQ(forecast.DecodeBlocks(1), 5);
  forecast.OnFinished(11);
  EXPECT_EQ(forecast.DecodeBlocks(1), 0);
  EXPECT_EQ(forecast.InFlight(), 0u);
}

TEST(LoadForecastTest, FinishingReleasesAPendingPrefill) {
  LoadForecast forecast;
  ASSERT_TRUE(
      forecast
          .OnRouted(
              1,
              {.decode_worker = 1, .decode_blocks = 1, .prefill_worker = 2, .prefill_tokens = 50})
          .ok());
  forecast.OnFinished(1);  // cancelled before its first token
  EXPECT_EQ(forecast.PrefillRequests(2), 0);
  EXPECT_EQ(forecast.PrefillTokens(2), 0);
}

TEST(LoadForecastTest, RoutingAnIdTwiceIsRefused) {
  LoadForecast forecast;
  ASSERT_TRUE(forecast.OnRouted(1, {.decode_worker = 1, .decode_blocks = 3}).ok());
  absl::Status again = forecast.OnRouted(1, {.decode_worker = 2, .decode_blocks = 3});
  EXPECT_EQ(again.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(forecast.DecodeBlocks(2), 0);
  forecast.OnFinished(1);
  EXPECT_TRUE(forecast.OnRouted(1, {.decode_worker = 2, .decode_blocks = 3}).ok());  // migration
}

std::vector<BlockHash> Chain(std::initializer_list<std::pair<BlockHash, BlockHash>> ranges) {
  std::vector<BlockHash> hashes;
  for (auto [first, last] : ranges) {
    for (BlockHash h = first; h <= last; ++h) hashes.push_back(h);
  }
  return hashes;
}

TEST(LoadForecastTest, PredictsThePrefixesInFlightRequestsLeaveBehind) {
  static_assert(LoadForecast::kAnchorStride == 4, "the expectations below assume stride 4");
  LoadForecast forecast;
  const std::vector<BlockHash> a = Chain({{1, 12}});            // anchors: blocks 4, 8, 12
  const std::vector<BlockHash> b = Chain({{1, 6}, {99, 100}});  // anchors: blocks 4, 8
  ASSERT_TRUE(forecast.OnRouted(1, {.decode_worker = 5, .prompt_blocks = a}).ok());
  ASSERT_TRUE(
      forecast
          .OnRouted(
              2,
              {.decode_worker = 6, .prefill_worker = 7, .prefill_tokens = 10, .prompt_blocks = b})
          .ok());
  OverlapScores scores;
  scores.blocks = {{5, 1}, {8, 3}};  // what the index knows
  // Shares 10 blocks with a and 6 with b; predictions are exact at anchors (4, 8) and stop
  // at the first anchor nobody holds (block 12 of the query, hash 78).
  const std::vector<BlockHash> query = Chain({{1, 10}, {77, 78}});
  forecast.MergePredictedOverlap(query, &scores);
  EXPECT_THAT(scores.blocks, UnorderedElementsAre(Pair(5, 8), Pair(6, 4), Pair(7, 4), Pair(8, 3)));

  // The whole of a, and a prompt shorter than one stride (its last block is its anchor).
  scores.Clear();
  forecast.MergePredictedOverlap(a, &scores);
  EXPECT_THAT(scores.blocks, UnorderedElementsAre(Pair(5, 12), Pair(6, 4), Pair(7, 4)));
  ASSERT_TRUE(forecast.OnRouted(3, {.decode_worker = 9, .prompt_blocks = Chain({{1, 2}})}).ok());
  scores.Clear();
  const std::vector<BlockHash> short_query = Chain({{1, 2}});
  forecast.MergePredictedOverlap(short_query, &scores);
  EXPECT_THAT(scores.blocks, UnorderedElementsAre(Pair(9, 2)));

  forecast.OnFinished(1);
  forecast.OnFinished(3);
  scores.Clear();
  forecast.MergePredictedOverlap(query, &scores);
  EXPECT_THAT(scores.blocks, UnorderedElementsAre(Pair(6, 4), Pair(7, 4)));
  forecast.OnFinished(2);
  scores.Clear();
  forecast.MergePredictedOverlap(query, &scores);
  EXPECT_TRUE(scores.blocks.empty());
}

TEST(LoadForecastTest, SharedPromptBlocksCountOncePerDecodeWorker) {
  LoadForecast forecast;
  const std::vector<BlockHash> prompt = Chain({{1, 100}});
  // 100 prompt blocks + 10 more each (tail and output).
  ASSERT_TRUE(
      forecast.OnRouted(1, {.decode_worker = 1, .decode_blocks = 110, .prompt_blocks = prompt})
          .ok());
  ASSERT_TRUE(
      forecast.OnRouted(2, {.decode_worker = 1, .decode_blocks = 110, .prompt_blocks = prompt})
          .ok());
  ASSERT_TRUE(
      forecast.OnRouted(3, {.decode_worker = 2, .decode_blocks = 110, .prompt_blocks = prompt})
          .ok());
  EXPECT_EQ(forecast.DecodeBlocks(1), 100 + 10 + 10);
  EXPECT_EQ(forecast.DecodeBlocks(2), 110);
  forecast.OnFinished(1);
  EXPECT_EQ(forecast.DecodeBlocks(1), 110);  // request 2 still holds the prompt
  forecast.OnFinished(2);
  forecast.OnFinished(3);
  EXPECT_EQ(forecast.DecodeBlocks(1), 0);
  EXPECT_EQ(forecast.DecodeBlocks(2), 0);
}

}  // namespace
}  // namespace tandem::router
