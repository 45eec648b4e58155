#include "deploy/state.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace tandem::deploy {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  char pattern[] = "/tmp/tandem-state-test-XXXXXX";
  char* dir = ::mkdtemp(pattern);
  EXPECT_NE(dir, nullptr);
  return dir != nullptr ? dir : "/tmp";
}

TEST(StatusJsonTest, RoundTrips) {
  DeploymentStatus status;
  status.name = "local";
  status.phase = "running";
  status.generation = 3;
  status.good_generation = 2;
  status.update = {3, "in_progress", "decode: args changed", {"decode: args changed"}};
  status.units.push_back({"decode", false, 2, 1, 2, 1});
  RoleStatus role{"decode", "decode", "decode", 2, 1, 1, {}};
  InstanceStatus instance;
  instance.id = "decode/4";
  instance.role = "decode";
  instance.ordinal = 4;
  instance.member = 9;
  instance.generation = 3;
  instance.state = "ready";
  instance.restarts = 1;
  instance.processes.push_back({0, 1234, "127.0.0.1:1", "127.0.0.1:2", "x.log", true, "e1"});
  role.instances.push_back(instance);
  status.roles.push_back(role);
  absl::StatusOr<DeploymentStatus> back = StatusFromJson(StatusToJson(status));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(StatusToJson(*back), StatusToJson(status));
  ASSERT_NE(back->FindRole("decode"), nullptr);
  EXPECT_EQ(back->FindRole("decode")->instances[0].processes[0].epoch, "e1");
  EXPECT_THAT(FormatStatus(*back), HasSubstr("decode/4"));
  EXPECT_FALSE(StatusFromJson(nlohmann::json{{"name", 1}}).ok());
}

TEST(StateFileTest, WrittenPrivateAndFound) {
  const std::string root = TempDir();
  EXPECT_EQ(FindDeployment(root, "").status().code(), absl::StatusCode::kNotFound);
  StateFile state;
  state.name = "local";
  state.run_dir = root + "/local";
  ASSERT_EQ(::mkdir(state.run_dir.c_str(), 0755), 0);
  state.supervisor_pid = 42;
  state.control_url = "http://127.0.0.1:1";
  state.token = "secret";
  state.process_groups = {7, 8};
  ASSERT_TRUE(WriteStateFile(state).ok());
  struct stat info {};
  ASSERT_EQ(::stat(StateFilePath(state.run_dir).c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0600u);  // it holds the control token
  absl::StatusOr<StateFile> found = FindDeployment(root, "");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->token, "secret");
  EXPECT_EQ(found->process_groups, (std::vector<pid_t>{7, 8}));
  EXPECT_TRUE(FindDeployment(root, "local").ok());
  EXPECT_EQ(FindDeployment(root, "other").status().code(), absl::StatusCode::kNotFound);

  StateFile second = state;
  second.name = "second";
  second.run_dir = root + "/second";
  ASSERT_EQ(::mkdir(second.run_dir.c_str(), 0755), 0);
  ASSERT_TRUE(WriteStateFile(second).ok());
  absl::StatusOr<StateFile> ambiguous = FindDeployment(root, "");
  EXPECT_EQ(ambiguous.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ambiguous.status().message(), HasSubstr("local, second"));

  ASSERT_EQ(::truncate(StateFilePath(second.run_dir).c_str(), 3), 0);
  EXPECT_EQ(FindDeployment(root, "second").status().code(), absl::StatusCode::kDataLoss);
  std::system(("rm -rf " + root).c_str());
}

}  // namespace
}  // namespace tandem::deploy
