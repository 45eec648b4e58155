#include "core/env.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

namespace tandem {
namespace {

TEST(FakeEnvTest, TimeMovesOnlyWhenTold) {
  FakeEnv env;
  absl::Time start = env.Now();
  int64_t micros = env.NowMicros();
  env.Advance(absl::Seconds(2));
  EXPECT_EQ(env.Now() - start, absl::Seconds(2));
  EXPECT_EQ(env.NowMicros() - micros, 2'000'000);
  env.SleepFor(absl::Milliseconds(5));
  EXPECT_EQ(env.NowMicros() - micros, 2'005'000);
}

TEST(FakeEnvTest, FilesAndVariables) {
  FakeEnv env;
  EXPECT_FALSE(env.FileExists("a.yaml"));
  EXPECT_EQ(env.ReadFile("a.yaml").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(env.WriteFile("a.yaml", "x: 1").ok());
  EXPECT_EQ(*env.ReadFile("a.yaml"), "x: 1");
  EXPECT_FALSE(env.GetVar("TANDEM_X").has_value());
  env.SetVar("TANDEM_X", "7");
  EXPECT_EQ(env.GetVar("TANDEM_X").value(), "7");
}

TEST(PosixEnvTest, WriteReadRoundTripAndErrors) {
  Env& env = Env::Default();
  std::string dir = ::testing::TempDir();
  std::string path = dir + "/tandem_env_test.txt";
  ASSERT_TRUE(env.WriteFile(path, std::string("bytes\0with nul", 14)).ok());
  absl::StatusOr<std::string> back = env.ReadFile(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->size(), 14u);
  EXPECT_TRUE(env.FileExists(path));
  std::remove(path.c_str());
  EXPECT_EQ(env.ReadFile(path).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(env.WriteFile(dir + "/no/such/dir/file", "x").ok());
  int64_t a = env.NowMicros();
  int64_t b = env.NowMicros();
  EXPECT_LE(a, b);
}

}  // namespace
}  // namespace tandem
