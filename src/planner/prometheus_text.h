// A parser for the Prometheus text exposition format (version 0.0.4), for reading the roles'
// /metrics: every sample with its labels, the declared metric types, and one error per line that
// could not be parsed. A bad line never hides the good ones, so one malformed series from a role
// costs only that series.
//
//   Exposition metrics = ParsePrometheusText(body);
//   for (const std::string& error : metrics.errors) LogWarn(...);
//   double queued = metrics.Sum("tandem_worker_prefill_queue_tokens");
//   std::optional<std::string> role = metrics.Label("tandem_worker_info", "role");
//
// Accepted: `# HELP` / `# TYPE` lines, other comments, blank lines, CRLF line ends, samples
// `name{label="value",...} value [timestamp]` with the escapes \\ \" \n in label values, a
// trailing comma in the label set, values in any float syntax including +Inf, -Inf and NaN, and
// OpenMetrics' `# EOF`. Refused, line by line: a bad metric or label name, an unterminated label
// value or set, a repeated label, a missing or non-numeric value, a bad timestamp, trailing text,
// and a series that appears twice.
//
// Thread-safety: a parsed Exposition is a plain value; the parser is stateless.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tandem::planner {

// Label name -> value, sorted by name (so equal label sets compare equal).
using Labels = std::map<std::string, std::string, std::less<>>;

struct MetricSample {
  std::string name;  // as exposed, e.g. "tandem_worker_ttft_seconds_sum"
  Labels labels;
  double value = 0;
  std::optional<int64_t> timestamp_ms;

  // "name{a=\"1\",b=\"2\"}": a key that identifies the series.
  std::string SeriesKey() const;
};

struct Exposition {
  std::vector<MetricSample> samples;
  std::map<std::string, std::string, std::less<>> types;  // from `# TYPE` lines
  std::vector<std::string> errors;                        // "line N: what is wrong"

  // Samples of `name` whose labels include every pair of `match`.
  std::vector<const MetricSample*> Find(std::string_view name, const Labels& match = {}) const;
  bool Has(std::string_view name) const { return !Find(name).empty(); }
  // The sum over the matching series (0 when there is none).
  double Sum(std::string_view name, const Labels& match = {}) const;
  // The value of label `label` on the first series of `name`, if any.
  std::optional<std::string> Label(std::string_view name, std::string_view label) const;
};

Exposition ParsePrometheusText(std::string_view text);

}  // namespace tandem::planner
