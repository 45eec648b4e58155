#include "net/sse.h"

#include <vector>

#include "gtest/gtest.h"

namespace tandem::net {
namespace {

std::vector<SseEvent> ParseAll(const std::string& text, size_t split) {
  std::vector<SseEvent> events;
  SseParser parser([&](const SseEvent& e) { events.push_back(e); });
  for (size_t i = 0; i < text.size(); i += split)
    parser.Feed(std::string_view(text).substr(i, split));
  return events;
}

TEST(SseTest, FormatThenParseRoundTripsAtEverySplit) {
  std::string wire = FormatSseEvent("{\"a\":1}") + FormatSseComment("keep-alive") +
                     FormatSseEvent("line one\nline two", "update") + FormatSseEvent("");
  for (size_t split = 1; split <= wire.size(); ++split) {
    auto events = ParseAll(wire, split);
    ASSERT_EQ(events.size(), 3u) << "split " << split;
    EXPECT_EQ(events[0].data, "{\"a\":1}");
    EXPECT_EQ(events[0].event, "message");
    EXPECT_EQ(events[1].data, "line one\nline two");
    EXPECT_EQ(events[1].event, "update");
    EXPECT_EQ(events[2].data, "");
  }
}

TEST(SseTest, HandlesCrLfIdsAndUnknownFields) {
  auto events = ParseAll("id: 7\r\nretry: 10\r\nfoo: bar\r\ndata:x\r\n\r\ndata: y\r\r", 3);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].data, "x");
  EXPECT_EQ(events[0].id, "7");
  EXPECT_EQ(events[1].data, "y");
  EXPECT_EQ(events[1].id, "7");  // the last id carries over
}

TEST(SseTest, OversizedEventStopsTheParser) {
  SseParser parser([](const SseEvent&) {}, 100);
  EXPECT_TRUE(parser.Feed("data: short\n\n"));
  EXPECT_FALSE(parser.Feed("data: " + std::string(200, 'x')));
  EXPECT_FALSE(parser.Feed("\n\n"));
}

}  // namespace
}  // namespace tandem::net
