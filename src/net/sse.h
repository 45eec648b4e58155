// Server-Sent Events: formatting events for the server side and an incremental parser for the
// client side (https://html.spec.whatwg.org/multipage/server-sent-events.html).
//
//   std::string wire = FormatSseEvent("{\"token\": 5}");         // "data: {...}\n\n"
//   SseParser parser([](const SseEvent& e) { ... });
//   parser.Feed(bytes_from_the_network);                         // any split, any line ending
//
// Thread-safety: SseParser is used by one thread.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace tandem::net {

struct SseEvent {
  std::string event;  // "message" when the stream gave no event name
  std::string data;   // data lines joined with '\n'
  std::string id;
};

// One event; multi-line data becomes several `data:` lines.
std::string FormatSseEvent(std::string_view data, std::string_view event = {});
std::string FormatSseComment(std::string_view text);

class SseParser {
 public:
  using Callback = std::function<void(const SseEvent&)>;
  // `max_event_bytes` bounds the memory a hostile or broken stream can make the parser hold.
  explicit SseParser(Callback callback, size_t max_event_bytes = 8 << 20);

  // Returns false (and stops) when an event grew past the limit.
  bool Feed(std::string_view bytes);

 private:
  void Line(std::string_view line);

  Callback callback_;
  size_t max_event_bytes_;
  std::string line_;
  bool last_was_cr_ = false;
  bool has_data_ = false;
  SseEvent current_;
  std::string last_id_;
  bool failed_ = false;
};

}  // namespace tandem::net
