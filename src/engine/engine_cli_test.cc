// `tandem generate` and `tandem profile` end to end, as processes (the binary comes from the
// TANDEM_BINARY variable CTest sets).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "core/latency_profile.h"
#include "gtest/gtest.h"

namespace tandem::engine {
namespace {

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr together
};

Result RunTandem(const std::string& arguments) {
  const char* binary = std::getenv("TANDEM_BINARY");
  Result result;
  if (binary == nullptr) return result;
  const std::string command = std::string(binary) + " " + arguments + " 2>&1";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t got;
  while ((got = fread(buffer, 1, sizeof(buffer), pipe)) > 0) result.output.append(buffer, got);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class EngineCliTest : public testing::Test {
 protected:
  void SetUp() override {
    if (std::getenv("TANDEM_BINARY") == nullptr) GTEST_SKIP() << "TANDEM_BINARY is not set";
  }
};

TEST_F(EngineCliTest, GenerateStreamsTokensAndIsReproducible) {
  const std::string args =
      "generate --model random:tiny:f32 --prompt-ids 5,6,7 --max-tokens 6 --show-ids "
      "--temperature 0.8 --seed 11 --threads 1 --kv-budget-mb 8";
  Result first = RunTandem(args);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_NE(first.output.find("6 generated"), std::string::npos) << first.output;
  Result second = RunTandem(args);
  EXPECT_EQ(first.output.substr(0, first.output.find('[')),
            second.output.substr(0, second.output.find('[')));
  Result text = RunTandem("generate --model random:tiny --prompt \"Hello world\" --max-tokens 4");
  EXPECT_EQ(text.exit_code, 0) << text.output;
}

TEST_F(EngineCliTest, GenerateRefusesBadInputWithAClearMessage) {
  Result bad_p = RunTandem("generate --model random:tiny --prompt-ids 1,2 --top-p 2");
  EXPECT_EQ(bad_p.exit_code, 2);
  EXPECT_NE(bad_p.output.find("top_p"), std::string::npos) << bad_p.output;
  Result bad_ids = RunTandem("generate --model random:tiny --prompt-ids 1,x");
  EXPECT_NE(bad_ids.exit_code, 0);
  EXPECT_NE(bad_ids.output.find("not a token id"), std::string::npos) << bad_ids.output;
  Result bad_shape = RunTandem("generate --model random:huge --prompt-ids 1");
  EXPECT_NE(bad_shape.output.find("qwen2.5-0.5b"), std::string::npos) << bad_shape.output;
  Result no_model = RunTandem("generate --prompt hi");
  EXPECT_NE(no_model.exit_code, 0);
  for (const char* command :
       {"generate --model random:tiny --prompt-ids 1", "worker --model random:tiny",
        "profile --model random:tiny --out x"}) {
    Result bad_kv = RunTandem(std::string(command) + " --kv-dtype fp8");
    EXPECT_NE(bad_kv.exit_code, 0) << command;
    EXPECT_NE(bad_kv.output.find("--kv-dtype"), std::string::npos) << bad_kv.output;
    EXPECT_NE(bad_kv.output.find("'fp8' is not one of auto"), std::string::npos) << bad_kv.output;
  }
}

// Either KV element type serves a model; for F32 weights F32 KV is the default.
TEST_F(EngineCliTest, GenerateTakesAKvDtype) {
  const std::string args =
      "generate --model random:tiny:f32 --prompt-ids 5,6,7 --max-tokens 6 --show-ids --threads 1 "
      "--kv-budget-mb 8 --temperature 0";
  Result automatic = RunTandem(args);
  Result f32 = RunTandem(args + " --kv-dtype f32");
  Result bf16 = RunTandem(args + " --kv-dtype bf16");
  ASSERT_EQ(automatic.exit_code, 0) << automatic.output;
  ASSERT_EQ(f32.exit_code, 0) << f32.output;
  ASSERT_EQ(bf16.exit_code, 0) << bf16.output;
  EXPECT_EQ(automatic.output.substr(0, automatic.output.find('[')),
            f32.output.substr(0, f32.output.find('[')));
  EXPECT_NE(bf16.output.find("6 generated"), std::string::npos) << bf16.output;
}

TEST_F(EngineCliTest, ProfileWritesAProfileTheLatencyModelReads) {
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("tandem-profile-" + std::to_string(getpid()) + ".json"))
                               .string();
  Result result = RunTandem("profile --model random:tiny:f32 --out " + path +
                            " --threads 1 --repeats 1 --prefill-tokens 8,32 --batch-sizes 1,2 "
                            "--contexts 16 --quiet");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  std::filesystem::remove(path);
  auto profile = ParseLatencyProfile(text.str(), path);
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->decode.size(), 2u);
  EXPECT_TRUE(LatencyModel::Create(*profile).ok());
}

}  // namespace
}  // namespace tandem::engine
