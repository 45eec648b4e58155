// Structured logging on spdlog: one process-wide logger, text or JSON lines, with levels.
//
//   InitLogging({.level = "info", .format = LogFormat::kJson});
//   LogInfo("request finished", {{"request_id", id}, {"status", 200}, {"ttft_ms", 12.5}});
//
// Text:  2026-11-24T21:00:00.123Z INFO request finished request_id=abc status=200 ttft_ms=12.5
// JSON:  {"ts":"2026-11-24T21:00:00.123Z","level":"info","msg":"request finished",
//         "request_id":"abc","status":200,"ttft_ms":12.5}
//
// Thread-safety: all functions may be called from any thread; InitLogging is meant to be called
// once at start-up, before other threads log.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <type_traits>

#include "absl/status/status.h"
#include "spdlog/spdlog.h"

namespace tandem {

enum class LogFormat { kText, kJson };

struct LogOptions {
  std::string level = "info";  // trace, debug, info, warn, error, critical, off
  LogFormat format = LogFormat::kText;
  std::string file;  // empty: stderr
};

// Parses "text" / "json".
absl::Status ParseLogFormat(std::string_view text, LogFormat* format);

absl::Status InitLogging(const LogOptions& options);

// One key=value field of a structured log line.
class LogField {
 public:
  LogField(std::string_view key, std::string_view value) : key_(key), value_(value) {}
  LogField(std::string_view key, const std::string& value) : key_(key), value_(value) {}
  LogField(std::string_view key, const char* value) : key_(key), value_(value) {}
  LogField(std::string_view key, bool value)
      : key_(key), value_(value ? "true" : "false"), quoted_(false) {}
  template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
  LogField(std::string_view key, T value)
      : key_(key), value_(FormatNumber(value)), quoted_(false) {}

  std::string_view key() const { return key_; }
  const std::string& value() const { return value_; }
  bool quoted() const { return quoted_; }

 private:
  static std::string FormatNumber(double value);
  static std::string FormatNumber(int64_t value) { return std::to_string(value); }
  static std::string FormatNumber(uint64_t value) { return std::to_string(value); }
  template <typename T>
  static std::string FormatNumber(T value) {
    if constexpr (std::is_floating_point_v<T>) {
      return FormatNumber(static_cast<double>(value));
    } else if constexpr (std::is_signed_v<T>) {
      return FormatNumber(static_cast<int64_t>(value));
    } else {
      return FormatNumber(static_cast<uint64_t>(value));
    }
  }

  std::string_view key_;
  std::string value_;
  bool quoted_ = true;
};

using LogFields = std::initializer_list<LogField>;

void Log(spdlog::level::level_enum level, std::string_view message, LogFields fields = {});

inline void LogDebug(std::string_view message, LogFields fields = {}) {
  Log(spdlog::level::debug, message, fields);
}
inline void LogInfo(std::string_view message, LogFields fields = {}) {
  Log(spdlog::level::info, message, fields);
}
inline void LogWarn(std::string_view message, LogFields fields = {}) {
  Log(spdlog::level::warn, message, fields);
}
inline void LogError(std::string_view message, LogFields fields = {}) {
  Log(spdlog::level::err, message, fields);
}

// Formats one line as InitLogging's format would (without the timestamp and level prefix for
// text). Exposed for tests.
std::string FormatLogBody(LogFormat format, std::string_view message, LogFields fields);

}  // namespace tandem
