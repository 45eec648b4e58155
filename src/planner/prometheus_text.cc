#include "planner/prometheus_text.h"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace tandem::planner {
namespace {

bool IsNameStart(char c) { return absl::ascii_isalpha(c) || c == '_' || c == ':'; }
bool IsNameChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == ':'; }
bool IsLabelStart(char c) { return absl::ascii_isalpha(c) || c == '_'; }
bool IsLabelChar(char c) { return absl::ascii_isalnum(c) || c == '_'; }
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

void SkipBlanks(std::string_view& text) {
  while (!text.empty() && IsBlank(text.front())) text.remove_prefix(1);
}

std::string_view TakeToken(std::string_view& text) {
  SkipBlanks(text);
  size_t end = 0;
  while (end < text.size() && !IsBlank(text[end])) ++end;
  std::string_view token = text.substr(0, end);
  text.remove_prefix(end);
  return token;
}

// Go's strconv.ParseFloat, which Prometheus uses, accepts these spellings; strtod accepts more
// ("infinity", hex), which is harmless.
bool ParseValue(std::string_view token, double* value) {
  if (token.empty()) return false;
  std::string lower = absl::AsciiStrToLower(std::string(token));
  if (lower == "+inf" || lower == "inf") {
    *value = INFINITY;
    return true;
  }
  if (lower == "-inf") {
    *value = -INFINITY;
    return true;
  }
  if (lower == "nan") {
    *value = NAN;
    return true;
  }
  std::string copy(token);
  char* end = nullptr;
  errno = 0;
  double parsed = std::strtod(copy.c_str(), &end);
  if (end != copy.c_str() + copy.size() || (errno == ERANGE && parsed != 0 && std::isinf(parsed)))
    return false;
  *value = parsed;
  return true;
}

// Parses `{a="x",b="y"}` at the front of `text`; returns an error message or "".
std::string ParseLabels(std::string_view& text, Labels* labels) {
  text.remove_prefix(1);  // '{'
  while (true) {
    SkipBlanks(text);
    if (text.empty()) return "unterminated label set (no '}')";
    if (text.front() == '}') {
      text.remove_prefix(1);
      return "";
    }
    if (!IsLabelStart(text.front())) {
      return absl::StrCat("bad label name at '", std::string(text.substr(0, 20)), "'");
    }
    size_t end = 1;
    while (end < text.size() && IsLabelChar(text[end])) ++end;
    std::string name(text.substr(0, end));
    text.remove_prefix(end);
    SkipBlanks(text);
    if (text.empty() || text.front() != '=') {
      return absl::StrCat("label '", name, "' has no '=' after its name");
    }
    text.remove_prefix(1);
    SkipBlanks(text);
    if (text.empty() || text.front() != '"') {
      return absl::StrCat("label '", name, "': value must be a double-quoted string");
    }
    text.remove_prefix(1);
    std::string value;
    bool closed = false;
    while (!text.empty()) {
      char c = text.front();
      text.remove_prefix(1);
      if (c == '"') {
        closed = true;
        break;
      }
      if (c == '\\') {
        if (text.empty()) break;
        char escaped = text.front();
        text.remove_prefix(1);
        if (escaped == 'n') {
          value.push_back('\n');
        } else if (escaped == '\\' || escaped == '"') {
          value.push_back(escaped);
        } else {
          return absl::StrCat("label '", name, "': unknown escape '\\", std::string(1, escaped),
                              "'");
        }
        continue;
      }
      value.push_back(c);
    }
    if (!closed) return absl::StrCat("label '", name, "': unterminated value");
    if (name.starts_with("__")) {
      return absl::StrCat("label '", name, "': names starting with '__' are reserved");
    }
    if (!labels->emplace(name, std::move(value)).second) {
      return absl::StrCat("label '", name, "' appears twice");
    }
    SkipBlanks(text);
    if (!text.empty() && text.front() == ',') {
      text.remove_prefix(1);
    } else if (text.empty() || text.front() != '}') {
      return absl::StrCat("expected ',' or '}' after label '", name, "'");
    }
  }
}

// Parses one sample line; returns an error message or "".
std::string ParseSample(std::string_view line, MetricSample* sample) {
  if (!IsNameStart(line.front())) {
    return absl::StrCat("bad metric name at '", std::string(line.substr(0, 20)), "'");
  }
  size_t end = 1;
  while (end < line.size() && IsNameChar(line[end])) ++end;
  sample->name = std::string(line.substr(0, end));
  line.remove_prefix(end);
  SkipBlanks(line);
  if (!line.empty() && line.front() == '{') {
    std::string error = ParseLabels(line, &sample->labels);
    if (!error.empty()) return absl::StrCat(sample->name, ": ", error);
  }
  std::string_view value = TakeToken(line);
  if (value.empty()) return absl::StrCat(sample->name, ": no value");
  if (!ParseValue(value, &sample->value)) {
    return absl::StrCat(sample->name, ": value '", std::string(value), "' is not a number");
  }
  std::string_view timestamp = TakeToken(line);
  if (!timestamp.empty()) {
    int64_t ms = 0;
    if (!absl::SimpleAtoi(std::string(timestamp), &ms)) {
      return absl::StrCat(sample->name, ": timestamp '", std::string(timestamp),
                          "' is not an integer");
    }
    sample->timestamp_ms = ms;
  }
  SkipBlanks(line);
  if (!line.empty())
    return absl::StrCat(sample->name, ": unexpected text '", std::string(line), "'");
  return "";
}

}  // namespace

std::string MetricSample::SeriesKey() const {
  std::string key = name;
  key.push_back('{');
  bool first = true;
  for (const auto& [label, value] : labels) {
    if (!first) key.push_back(',');
    first = false;
    absl::StrAppend(&key, label, "=\"", value, "\"");
  }
  key.push_back('}');
  return key;
}

std::vector<const MetricSample*> Exposition::Find(std::string_view name,
                                                  const Labels& match) const {
  std::vector<const MetricSample*> found;
  for (const MetricSample& sample : samples) {
    if (sample.name != name) continue;
    bool matches = true;
    for (const auto& [label, value] : match) {
      auto it = sample.labels.find(label);
      if (it == sample.labels.end() || it->second != value) {
        matches = false;
        break;
      }
    }
    if (matches) found.push_back(&sample);
  }
  return found;
}

double Exposition::Sum(std::string_view name, const Labels& match) const {
  double sum = 0;
  for (const MetricSample* sample : Find(name, match)) sum += sample->value;
  return sum;
}

std::optional<std::string> Exposition::Label(std::string_view name, std::string_view label) const {
  for (const MetricSample* sample : Find(name)) {
    auto it = sample->labels.find(label);
    if (it != sample->labels.end()) return it->second;
  }
  return std::nullopt;
}

Exposition ParsePrometheusText(std::string_view text) {
  Exposition exposition;
  std::set<std::string> seen;
  int line_number = 0;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    SkipBlanks(line);
    if (line.empty()) continue;
    if (line.front() == '#') {
      line.remove_prefix(1);
      std::string_view keyword = TakeToken(line);
      if (keyword == "TYPE") {
        std::string_view name = TakeToken(line);
        std::string_view type = TakeToken(line);
        if (name.empty() || type.empty()) {
          exposition.errors.push_back(absl::StrCat("line ", line_number,
                                                   ": '# TYPE' needs a "
                                                   "metric name and a type"));
        } else {
          exposition.types[std::string(name)] = std::string(type);
        }
      }
      continue;  // HELP, EOF and free comments carry nothing the planner reads
    }
    MetricSample sample;
    std::string error = ParseSample(line, &sample);
    if (!error.empty()) {
      exposition.errors.push_back(absl::StrCat("line ", line_number, ": ", error));
      continue;
    }
    if (!seen.insert(sample.SeriesKey()).second) {
      exposition.errors.push_back(
          absl::StrCat("line ", line_number, ": series ", sample.SeriesKey(), " appears twice"));
      continue;
    }
    exposition.samples.push_back(std::move(sample));
  }
  return exposition;
}

}  // namespace tandem::planner
