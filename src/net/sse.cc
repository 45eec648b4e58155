#include "net/sse.h"

namespace tandem::net {

std::string FormatSseEvent(std::string_view data, std::string_view event) {
  std::string out;
  out.reserve(data.size() + 16);
  if (!event.empty()) {
    out.append("event: ").append(event).append("\n");
  }
  size_t start = 0;
  while (true) {
    size_t end = data.find('\n', start);
    out.append("data: ").append(data.substr(start, end - start)).append("\n");
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  out.append("\n");
  return out;
}

std::string FormatSseComment(std::string_view text) {
  return std::string(": ").append(text).append("\n\n");
}

SseParser::SseParser(Callback callback, size_t max_event_bytes)
    : callback_(std::move(callback)), max_event_bytes_(max_event_bytes) {}

bool SseParser::Feed(std::string_view bytes) {
  if (failed_) return false;
  for (char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the \n of a \r\n pair
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      Line(line_);
      line_.clear();
      if (failed_) return false;
      continue;
    }
    line_.push_back(c);
    if (line_.size() + current_.data.size() > max_event_bytes_) {
      failed_ = true;
      return false;
    }
  }
  return true;
}

void SseParser::Line(std::string_view line) {
  if (line.empty()) {  // dispatch
    if (has_data_) {
      current_.id = last_id_;
      if (current_.event.empty()) current_.event = "message";
      callback_(current_);
    }
    current_ = SseEvent{};
    has_data_ = false;
    return;
  }
  if (line[0] == ':') return;  // comment
  size_t colon = line.find(':');
  std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) current_.data.push_back('\n');
    current_.data.append(value);
    has_data_ = true;
    if (current_.data.size() > max_event_bytes_) failed_ = true;
  } else if (field == "event") {
    current_.event = std::string(value);
  } else if (field == "id") {
    if (value.find('\0') == std::string_view::npos) last_id_ = std::string(value);
  }
  // "retry" and unknown fields are ignored, as the specification says.
}

}  // namespace tandem::net
