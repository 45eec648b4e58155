#include "router/stop_matcher.h"

#include "bench/random.h"
#include "gtest/gtest.h"

namespace tandem::router {
namespace {

TEST(StopMatcherTest, HoldsBackPossibleStartsAndStopsAcrossPieces) {
  StopMatcher matcher({"\n\n", "END"});
  auto r = matcher.Feed("Hello EN");
  EXPECT_EQ(r.text, "Hello ");
  EXPECT_FALSE(r.stopped);
  r = matcher.Feed("D and more");
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(r.stopped);
  EXPECT_TRUE(matcher.Feed("x").stopped);
  EXPECT_EQ(matcher.Flush(), "");
}

TEST(StopMatcherTest, FalseStartIsReleased) {
  StopMatcher matcher({"END"});
  EXPECT_EQ(matcher.Feed("E").text, "");
  EXPECT_EQ(matcher.Feed("N").text, "");
  EXPECT_EQ(matcher.Feed("X").text, "ENX");
  EXPECT_EQ(matcher.Feed("EN").text, "");
  EXPECT_EQ(matcher.Flush(), "EN");
}

TEST(StopMatcherTest, EarliestStopWins) {
  StopMatcher matcher({"cd", "b"});
  auto r = matcher.Feed("abcd");
  EXPECT_EQ(r.text, "a");
  EXPECT_TRUE(r.stopped);
}

// Property: for random texts split at random points, the concatenated output equals the text
// cut before the first stop occurrence.
TEST(StopMatcherTest, SplittingNeverChangesTheAnswer) {
  const uint64_t seed = 2024;
  bench::Random rng(seed);
  const std::vector<std::string> stops = {"ab", "bba", "c"};
  for (int trial = 0; trial < 2000; ++trial) {
    std::string text;
    int length = static_cast<int>(rng.UniformInt(0, 20));
    for (int i = 0; i < length; ++i) text.push_back("abcd"[rng.UniformInt(0, 3)]);
    size_t cut = std::string::npos;
    for (const auto& s : stops) cut = std::min(cut, text.find(s));
    std::string expected = text.substr(0, cut);
    StopMatcher matcher(stops);
    std::string out;
    size_t pos = 0;
    while (pos < text.size()) {
      size_t n = static_cast<size_t>(rng.UniformInt(1, 4));
      out += matcher.Feed(std::string_view(text).substr(pos, n)).text;
      pos += n;
    }
    out += matcher.Flush();
    ASSERT_EQ(out, expected) << "text '" << text << "' seed " << seed << " trial " << trial;
    ASSERT_EQ(matcher.stopped(), cut != std::string::npos);
  }
}

}  // namespace
}  // namespace tandem::router
