#include "worker/options.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "gtest/gtest.h"

namespace tandem::worker {
namespace {

TEST(OptionsTest, ParsesRolesPoliciesAndAddresses) {
  EXPECT_EQ(*ParseRole("prefill"), Role::kPrefill);
  EXPECT_EQ(*ParseRole("decode"), Role::kDecode);
  EXPECT_EQ(*ParseRole("both"), Role::kBoth);
  EXPECT_FALSE(ParseRole("router").ok());
  EXPECT_EQ(*ParsePrefillFallback("fail"), PrefillFallback::kFail);
  EXPECT_FALSE(ParsePrefillFallback("maybe").ok());

  absl::StatusOr<HostPort> v4 = ParseHostPort("10.0.0.5:8101", "--listen");
  ASSERT_TRUE(v4.ok());
  EXPECT_EQ(v4->host, "10.0.0.5");
  EXPECT_EQ(v4->port, 8101);
  absl::StatusOr<HostPort> v6 = ParseHostPort("[::1]:9", "--listen");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "[::1]:9");
  for (const char* bad : {"8101", ":8101", "host:", "host:70000", "host:x", "[::1:5"}) {
    absl::StatusOr<HostPort> parsed = ParseHostPort(bad, "--listen");
    EXPECT_FALSE(parsed.ok()) << bad;
    if (!parsed.ok()) {
      EXPECT_NE(parsed.status().message().find("--listen"), std::string::npos);
    }
  }
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
}

TEST(OptionsTest, ParsesLocations) {
  absl::StatusOr<Location> location = ParseLocation("host=h1, rack=r2");
  ASSERT_TRUE(location.ok());
  EXPECT_EQ(location->host, "h1");
  EXPECT_EQ(location->rack, "r2");
  EXPECT_TRUE(ParseLocation("").ok());
  EXPECT_FALSE(ParseLocation("zone=z").ok());
}

TEST(OptionsTest, ClusterTokenDefaultsOnlyOnLoopback) {
  const std::string home =
      std::filesystem::temp_directory_path() / ("tandem-token-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(home);
  // The default token file is read through the real file system; FakeEnv only supplies HOME.
  struct RealFiles : FakeEnv {
    absl::StatusOr<std::string> ReadFile(const std::string& path) override {
      return Env::Default().ReadFile(path);
    }
  } env;
  env.SetVar("HOME", home);

  EXPECT_EQ(*ResolveClusterToken("given", false, env), "given");
  absl::StatusOr<std::string> refused = ResolveClusterToken("", false, env);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("TANDEM_CLUSTER_TOKEN"), std::string::npos);

  absl::StatusOr<std::string> first = ResolveClusterToken("", true, env);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->size(), 64u);
  EXPECT_EQ(*ResolveClusterToken("", true, env), *first);  // the same token every time
  struct stat info {};
  ASSERT_EQ(::stat((home + "/.tandem/cluster-token").c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);

  // A token file others can read is refused.
  ::chmod((home + "/.tandem/cluster-token").c_str(), 0644);
  EXPECT_FALSE(ResolveClusterToken("", true, env).ok());
  std::filesystem::remove_all(home);
}

}  // namespace
}  // namespace tandem::worker
