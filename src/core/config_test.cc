#include "core/config.h"

#include "gtest/gtest.h"

namespace tandem {
namespace {

struct Options {
  std::string listen = "127.0.0.1:8000";
  int max_batch_tokens = 512;
  std::vector<std::string> peers;
  bool verbose = false;
  std::string config;
};

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    worker_ = root_.add_subcommand("worker");
    root_.add_subcommand("router");
    worker_->add_option("--listen", options_.listen);
    worker_->add_option("--max-batch-tokens", options_.max_batch_tokens);
    worker_->add_option("--peer", options_.peers);
    worker_->add_flag("--verbose", options_.verbose);
    worker_->add_option("--config", options_.config);
  }

  void Parse(std::vector<std::string> args) {
    args.insert(args.begin(), "worker");
    std::reverse(args.begin(), args.end());  // CLI11 takes a reversed vector
    root_.parse(args);
  }

  CLI::App root_;
  CLI::App* worker_;
  Options options_;
  FakeEnv env_;
};

TEST_F(ConfigTest, FlagsBeatEnvironmentBeatFile) {
  env_.SetFile("c.yaml",
               "listen: 0.0.0.0:1\nmax_batch_tokens: 64\npeer: [a, b]\nverbose: true\n"
               "router: {anything: 1}\n");
  env_.SetVar("TANDEM_MAX_BATCH_TOKENS", "128");
  env_.SetVar("TANDEM_LISTEN", "0.0.0.0:2");
  Parse({"--listen", "0.0.0.0:3"});
  ASSERT_TRUE(ApplyLayeredConfig(*worker_, env_, "c.yaml").ok());
  EXPECT_EQ(options_.listen, "0.0.0.0:3");                          // flag
  EXPECT_EQ(options_.max_batch_tokens, 128);                        // environment
  EXPECT_EQ(options_.peers, (std::vector<std::string>{"a", "b"}));  // file
  EXPECT_TRUE(options_.verbose);                                    // file
}

TEST_F(ConfigTest, SectionOverridesTopLevelAndEnvListsSplitOnCommas) {
  env_.SetFile("c.yaml", "max-batch-tokens: 64\nworker:\n  max-batch-tokens: 32\n");
  env_.SetVar("TANDEM_PEER", "x,y,z");
  Parse({});
  ASSERT_TRUE(ApplyLayeredConfig(*worker_, env_, "c.yaml").ok());
  EXPECT_EQ(options_.max_batch_tokens, 32);
  EXPECT_EQ(options_.peers, (std::vector<std::string>{"x", "y", "z"}));
  EXPECT_EQ(options_.listen, "127.0.0.1:8000");  // default untouched
}

TEST_F(ConfigTest, UnknownKeyNamesLineAndAllowedKeys) {
  env_.SetFile("c.yaml", "listen: a\nmax-batch-tokenz: 3\n");
  Parse({});
  absl::Status status = ApplyLayeredConfig(*worker_, env_, "c.yaml");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("c.yaml:2"), std::string::npos) << status;
  EXPECT_NE(status.message().find("max-batch-tokenz"), std::string::npos) << status;
  EXPECT_NE(status.message().find("max-batch-tokens"), std::string::npos) << status;
}

TEST_F(ConfigTest, BadValuesAndBadFilesAreRefused) {
  env_.SetVar("TANDEM_MAX_BATCH_TOKENS", "lots");
  Parse({});
  absl::Status status = ApplyLayeredConfig(*worker_, env_, "");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("TANDEM_MAX_BATCH_TOKENS"), std::string::npos) << status;

  env_.SetFile("bad.yaml", "listen: [unclosed\n");
  EXPECT_FALSE(ApplyLayeredConfig(*worker_, env_, "bad.yaml").ok());
  env_.SetFile("list.yaml", "- a\n- b\n");
  EXPECT_FALSE(ApplyLayeredConfig(*worker_, env_, "list.yaml").ok());
  env_.SetFile("nested.yaml", "listen: {a: 1}\n");
  EXPECT_FALSE(ApplyLayeredConfig(*worker_, env_, "nested.yaml").ok());
  EXPECT_EQ(ApplyLayeredConfig(*worker_, env_, "missing.yaml").code(), absl::StatusCode::kNotFound);
}

TEST(EnvVarForOptionTest, UpperCaseWithUnderscores) {
  EXPECT_EQ(EnvVarForOption("max-batch-tokens"), "TANDEM_MAX_BATCH_TOKENS");
}

}  // namespace
}  // namespace tandem
