#include "bench/stats.h"

#include <algorithm>
#include <vector>

#include "bench/random.h"
#include "gtest/gtest.h"

namespace tandem::bench {
namespace {

TEST(LatencyDigestTest, PercentilesWithinOnePercentOfExact) {
  const uint64_t seed = 99;
  Random rng(seed);
  LatencyDigest digest;
  std::vector<double> exact;
  for (int i = 0; i < 100000; ++i) {
    double v = rng.LogNormal(std::log(0.05), 1.0);
    digest.Add(v);
    exact.push_back(v);
  }
  std::sort(exact.begin(), exact.end());
  for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9}) {
    double truth = exact[static_cast<size_t>(std::ceil(p / 100 * exact.size())) - 1];
    EXPECT_NEAR(digest.Percentile(p) / truth, 1.0, 0.011) << "p" << p << " seed " << seed;
  }
  EXPECT_DOUBLE_EQ(digest.Percentile(100), exact.back());
  EXPECT_DOUBLE_EQ(digest.min(), exact.front());
  EXPECT_EQ(digest.count(), 100000u);
}

TEST(LatencyDigestTest, MergeEqualsAddingEverything) {
  LatencyDigest a, b, all;
  for (int i = 1; i <= 1000; ++i) {
    (i % 2 ? a : b).Add(i * 1e-3);
    all.Add(i * 1e-3);
  }
  a.Merge(b);
  EXPECT_EQ(a.count(), all.count());
  EXPECT_DOUBLE_EQ(a.Percentile(50), all.Percentile(50));
  EXPECT_DOUBLE_EQ(a.sum(), all.sum());
  EXPECT_NEAR(a.FractionAtOrBelow(0.25), 0.25, 0.01);
  LatencyDigest weighted;
  weighted.Add(0.5, 3);
  weighted.Add(1.0);
  EXPECT_EQ(weighted.count(), 4u);
  EXPECT_DOUBLE_EQ(weighted.sum(), 2.5);
  EXPECT_NEAR(weighted.Percentile(50), 0.5, 0.01);
  LatencyDigest empty;
  EXPECT_EQ(empty.Percentile(50), 0);
  EXPECT_EQ(empty.mean(), 0);
}

TEST(SloTest, ParseAndMeet) {
  auto slo = ParseSlo("ttft=500,tpot=50");
  ASSERT_TRUE(slo.ok()) << slo.status();
  EXPECT_DOUBLE_EQ(slo->ttft_s, 0.5);
  EXPECT_DOUBLE_EQ(slo->tpot_s, 0.05);
  EXPECT_TRUE(MeetsSlo(*slo, 0.5, 0.05, 100));
  EXPECT_FALSE(MeetsSlo(*slo, 0.51, 0.01, 1));
  EXPECT_FALSE(MeetsSlo(*slo, 0.1, 0.06, 1));
  EXPECT_FALSE(ParseSlo("ttft=-1").ok());
  EXPECT_FALSE(ParseSlo("latency=5").ok());
  EXPECT_FALSE(ParseSlo("ttft").ok());
}

}  // namespace
}  // namespace tandem::bench
