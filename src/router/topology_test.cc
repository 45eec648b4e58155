#include "router/topology.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::router {
namespace {

using ::testing::HasSubstr;

TEST(TopologyTest, DistanceByHostThenRack) {
  LocationInterner names;
  const Location a = names.Intern("node-1", "rack-a");
  const Location b = names.Intern("node-1", "rack-a");
  const Location c = names.Intern("node-2", "rack-a");
  const Location d = names.Intern("node-3", "rack-b");
  const Location unknown;
  EXPECT_EQ(Distance(a, b), LinkDistance::kSameHost);
  EXPECT_EQ(Distance(a, c), LinkDistance::kSameRack);
  EXPECT_EQ(Distance(a, d), LinkDistance::kCrossRack);
  EXPECT_EQ(Distance(unknown, unknown), LinkDistance::kCrossRack);
  EXPECT_EQ(Distance(a, unknown), LinkDistance::kCrossRack);
  const Location rack_only = names.Intern("", "rack-b");
  EXPECT_EQ(rack_only.host, -1);
  EXPECT_EQ(Distance(rack_only, d), LinkDistance::kSameRack);
}

TEST(TopologyTest, TransferSecondsIsLatencyPlusBytesOverBandwidth) {
  LinkTable links;
  links.same_rack = {10e9, 20e-6};
  EXPECT_DOUBLE_EQ(links.TransferSeconds(LinkDistance::kSameRack, 1e9), 0.1 + 20e-6);
  EXPECT_EQ(links.TransferSeconds(LinkDistance::kSameWorker, 1e9), 0);
  EXPECT_EQ(links.TransferSeconds(LinkDistance::kCrossRack, 0), 0);
  EXPECT_DOUBLE_EQ(links.SlowdownVsSameHost(LinkDistance::kCrossRack), 50e9 / 6.25e9);
}

TEST(TopologyTest, ParsesAFullTable) {
  auto links = ParseLinkTable(R"(
links:
  same_host: {gigabytes_per_second: 100, latency_us: 2}
  same_rack: {gigabytes_per_second: 40}
  cross_rack: {gigabytes_per_second: 10, latency_us: 80}
)",
                              "test.yaml");
  ASSERT_TRUE(links.ok()) << links.status();
  EXPECT_DOUBLE_EQ(links->same_host.bytes_per_second, 100e9);
  EXPECT_DOUBLE_EQ(links->same_host.latency_seconds, 2e-6);
  EXPECT_DOUBLE_EQ(links->same_rack.bytes_per_second, 40e9);
  EXPECT_DOUBLE_EQ(links->same_rack.latency_seconds, LinkTable{}.same_rack.latency_seconds);
  EXPECT_DOUBLE_EQ(links->cross_rack.latency_seconds, 80e-6);
}

TEST(TopologyTest, EmptyTextGivesDefaults) {
  auto links = ParseLinkTable("", "empty.yaml");
  ASSERT_TRUE(links.ok()) << links.status();
  EXPECT_DOUBLE_EQ(links->cross_rack.bytes_per_second, LinkTable{}.cross_rack.bytes_per_second);
}

TEST(TopologyTest, BadTablesAreRefusedWithTheirPlace) {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"links: {same_host: {gigabytes_per_second: fast}}", "not a number"},
      {"links: {same_host: {gigabytes_per_second: -1}}", "expected a positive"},
      {"links: {same_rack: {latency_us: -5}}", "latency_us"},
      {"links: {same_host: {gigabytes_per_second: 1}}", "must not grow with distance"},
      {"links: {near: {gigabytes_per_second: 1}}", "unknown link 'near'"},
      {"links: {same_host: {bandwidth: 1}}", "unknown key links.same_host.bandwidth"},
      {"links: {same_host: 5}", "must be a mapping"},
      {"links: [1, 2]", "links must be a mapping"},
      {"- a\n- b", "expected a mapping"},
      {"links: {same_host: {gigabytes_per_second: [1]}}", "not a number"},
      {"links: {same_host: {", "test.yaml:"},
  };
  for (const Case& c : cases) {
    auto links = ParseLinkTable(c.yaml, "test.yaml");
    ASSERT_FALSE(links.ok()) << c.yaml;
    EXPECT_EQ(links.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(links.status().message(), HasSubstr(c.message)) << c.yaml;
    EXPECT_THAT(links.status().message(), HasSubstr("test.yaml")) << c.yaml;
  }
}

}  // namespace
}  // namespace tandem::router
