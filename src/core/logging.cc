#include "core/logging.h"

#include <atomic>
#include <charconv>
#include <cmath>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace tandem {
namespace {

// The format in effect; read on every log call, written once by InitLogging.
std::atomic<LogFormat> g_format{LogFormat::kText};

void AppendJsonString(std::string* out, std::string_view text) {
  out->append(nlohmann::json(std::string(text))
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

bool NeedsQuotes(std::string_view value) {
  if (value.empty()) return true;
  for (char c : value) {
    if (c == ' ' || c == '"' || c == '=' || c == '\\' || static_cast<unsigned char>(c) < 0x20) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::string LogField::FormatNumber(double value) {
  if (!std::isfinite(value)) return std::isnan(value) ? "NaN" : (value > 0 ? "Inf" : "-Inf");
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

absl::Status ParseLogFormat(std::string_view text, LogFormat* format) {
  std::string lower = absl::AsciiStrToLower(std::string(text));
  if (lower == "text") {
    *format = LogFormat::kText;
  } else if (lower == "json") {
    *format = LogFormat::kJson;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("log format '", std::string(text), "' is not known (allowed: text, json)"));
  }
  return absl::OkStatus();
}

absl::Status InitLogging(const LogOptions& options) {
  spdlog::level::level_enum level = spdlog::level::from_str(absl::AsciiStrToLower(options.level));
  // spdlog maps unknown names to "off"; refuse them instead of silencing the process.
  if (level == spdlog::level::off && absl::AsciiStrToLower(options.level) != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("log level '", options.level,
                     "' is not known (allowed: trace, debug, info, warn, error, critical, off)"));
  }
  std::shared_ptr<spdlog::logger> logger;
  try {
    if (options.file.empty()) {
      logger = std::make_shared<spdlog::logger>("tandem",
                                                std::make_shared<spdlog::sinks::stderr_sink_mt>());
    } else {
      logger = std::make_shared<spdlog::logger>(
          "tandem", std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
    }
  } catch (const spdlog::spdlog_ex& e) {
    return absl::UnavailableError(
        absl::StrCat("cannot open log file '", options.file, "': ", e.what()));
  }
  if (options.format == LogFormat::kJson) {
    logger->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v)",
                        spdlog::pattern_time_type::utc);
  } else {
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%L%$ %v", spdlog::pattern_time_type::utc);
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::warn);
  g_format.store(options.format);
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

std::string FormatLogBody(LogFormat format, std::string_view message, LogFields fields) {
  std::string out;
  if (format == LogFormat::kJson) {
    out.append("\"msg\":");
    AppendJsonString(&out, message);
    for (const LogField& field : fields) {
      out.push_back(',');
      AppendJsonString(&out, field.key());
      out.push_back(':');
      if (field.quoted()) {
        AppendJsonString(&out, field.value());
      } else if (field.value() == "NaN" || field.value() == "Inf" || field.value() == "-Inf") {
        AppendJsonString(&out, field.value());  // JSON has no non-finite numbers
      } else {
        out.append(field.value());
      }
    }
    out.push_back('}');
    return out;
  }
  out.append(message);
  for (const LogField& field : fields) {
    absl::StrAppend(&out, " ", std::string(field.key()), "=");
    if (field.quoted() && NeedsQuotes(field.value())) {
      AppendJsonString(&out, field.value());
    } else {
      out.append(field.value());
    }
  }
  return out;
}

void Log(spdlog::level::level_enum level, std::string_view message, LogFields fields) {
  spdlog::logger* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;
  std::string body = FormatLogBody(g_format.load(std::memory_order_relaxed), message, fields);
  logger->log(level, "{}", body);
}

}  // namespace tandem
