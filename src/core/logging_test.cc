#include "core/logging.h"

#include <cstdio>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace tandem {
namespace {

TEST(LoggingTest, TextBodyQuotesOnlyWhenNeeded) {
  std::string body = FormatLogBody(LogFormat::kText, "request done",
                                   {{"id", "abc"},
                                    {"path", "/v1/chat completions"},
                                    {"status", 200},
                                    {"ok", true},
                                    {"ttft", 0.25}});
  EXPECT_EQ(body,
            R"(request done id=abc path="/v1/chat completions" status=200 ok=true ttft=0.25)");
}

TEST(LoggingTest, JsonBodyIsValidJsonWithTypedFields) {
  std::string line =
      "{\"ts\":\"x\",\"level\":\"info\"," +
      FormatLogBody(
          LogFormat::kJson, "say \"hi\"\n",
          {{"n", 3}, {"ratio", 0.5}, {"name", "a\tb"}, {"nan", 0.0 / 0.0}, {"flag", false}});
  nlohmann::json parsed = nlohmann::json::parse(line);
  EXPECT_EQ(parsed["msg"], "say \"hi\"\n");
  EXPECT_EQ(parsed["n"], 3);
  EXPECT_EQ(parsed["ratio"], 0.5);
  EXPECT_EQ(parsed["name"], "a\tb");
  EXPECT_EQ(parsed["nan"], "NaN");
  EXPECT_EQ(parsed["flag"], false);
}

TEST(LoggingTest, FileSinkJsonLinesAndLevels) {
  std::string path = ::testing::TempDir() + "/tandem_logging_test.log";
  std::remove(path.c_str());
  ASSERT_TRUE(InitLogging({.level = "info", .format = LogFormat::kJson, .file = path}).ok());
  LogDebug("hidden");
  LogInfo("shown", {{"k", 1}});
  LogError("bad", {{"why", "x y"}});
  spdlog::default_logger()->flush();
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> lines;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["msg"], "shown");
  EXPECT_EQ(lines[0]["level"], "info");
  EXPECT_EQ(lines[0]["k"], 1);
  EXPECT_EQ(lines[1]["level"], "error");
  EXPECT_TRUE(lines[1]["ts"].get<std::string>().ends_with("Z"));
  std::remove(path.c_str());
  ASSERT_TRUE(InitLogging({}).ok());
}

TEST(LoggingTest, BadOptionsAreRefused) {
  EXPECT_EQ(InitLogging({.level = "loud"}).code(), absl::StatusCode::kInvalidArgument);
  LogFormat format;
  EXPECT_FALSE(ParseLogFormat("xml", &format).ok());
  EXPECT_TRUE(ParseLogFormat("JSON", &format).ok());
  EXPECT_EQ(format, LogFormat::kJson);
  // A log file under a regular file cannot be created.
  std::string blocker = ::testing::TempDir() + "/tandem_logging_blocker";
  std::ofstream(blocker) << "x";
  EXPECT_FALSE(InitLogging({.file = blocker + "/y.log"}).ok());
  std::remove(blocker.c_str());
}

}  // namespace
}  // namespace tandem
