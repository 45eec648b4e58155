#include "bench/report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/svg_plot.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {
namespace {

MetricSummary Summarize(std::vector<double> values, const std::vector<double>& percentiles) {
  MetricSummary summary;
  if (values.empty()) {
    for (double p : percentiles) summary.percentiles[p] = 0;
    return summary;
  }
  std::sort(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  summary.mean = sum / values.size();
  double squares = 0;
  for (double v : values) squares += (v - summary.mean) * (v - summary.mean);
  summary.stddev = std::sqrt(squares / values.size());
  auto at = [&](double p) {
    // Linear interpolation between order statistics (numpy's default, as vllm uses).
    double rank = p / 100 * (values.size() - 1);
    size_t low = static_cast<size_t>(std::floor(rank));
    size_t high = std::min(values.size() - 1, low + 1);
    return values[low] + (values[high] - values[low]) * (rank - low);
  };
  summary.median = at(50);
  for (double p : percentiles) summary.percentiles[p] = at(p);
  return summary;
}

std::string PercentileName(double p) {
  std::string name = absl::StrFormat("%g", p);
  std::replace(name.begin(), name.end(), '.', '_');
  return name;
}

}  // namespace

double Tpot(const RequestRecord& record) {
  if (record.output_tokens <= 1) return 0;
  return (record.e2e_s - record.ttft_s) / static_cast<double>(record.output_tokens - 1);
}

BenchSummary Summarize(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo,
                       const std::vector<double>& percentiles) {
  BenchSummary s;
  s.slo = slo;
  s.has_slo = slo.ttft_s > 0 || slo.tpot_s > 0 || slo.e2e_s > 0;
  s.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2e;
  for (const RequestRecord& r : records) {
    ++s.requests;
    if (!r.ok) {
      ++s.failed;
      ++s.failures[r.error.empty() ? "unknown" : r.error];
      continue;
    }
    ++s.completed;
    s.total_input_tokens += r.input_tokens;
    s.total_output_tokens += r.output_tokens;
    ttft.push_back(r.ttft_s);
    e2e.push_back(r.e2e_s);
    if (r.output_tokens > 1) tpot.push_back(Tpot(r));
    itl.insert(itl.end(), r.itl_s.begin(), r.itl_s.end());
    if (MeetsSlo(slo, r.ttft_s, Tpot(r), r.e2e_s)) ++s.good;
  }
  s.ttft = Summarize(ttft, percentiles);
  s.tpot = Summarize(tpot, percentiles);
  s.itl = Summarize(itl, percentiles);
  s.e2e = Summarize(e2e, percentiles);
  if (duration_s > 0) {
    s.request_throughput = s.completed / duration_s;
    s.output_throughput = s.total_output_tokens / duration_s;
    s.total_token_throughput = (s.total_input_tokens + s.total_output_tokens) / duration_s;
    s.goodput = s.good / duration_s;
  }
  s.slo_attainment = s.requests == 0 ? 0 : static_cast<double>(s.good) / s.requests;
  return s;
}

std::string FormatTable(const BenchSummary& s) {
  std::string out;
  absl::StrAppendFormat(&out, "%-34s %12d\n", "Requests sent:", s.requests);
  absl::StrAppendFormat(&out, "%-34s %12d\n", "Successful requests:", s.completed);
  absl::StrAppendFormat(&out, "%-34s %12d\n", "Failed requests:", s.failed);
  for (const auto& [reason, count] : s.failures) {
    absl::StrAppendFormat(&out, "  %-32s %12d\n", reason + ":", count);
  }
  absl::StrAppendFormat(&out, "%-34s %12.2f\n", "Benchmark duration (s):", s.duration_s);
  absl::StrAppendFormat(&out, "%-34s %12d\n", "Total input tokens:", s.total_input_tokens);
  absl::StrAppendFormat(&out, "%-34s %12d\n", "Total generated tokens:", s.total_output_tokens);
  absl::StrAppendFormat(&out, "%-34s %12.2f\n",
                        "Request throughput (req/s):", s.request_throughput);
  absl::StrAppendFormat(&out, "%-34s %12.2f\n",
                        "Output token throughput (tok/s):", s.output_throughput);
  absl::StrAppendFormat(&out, "%-34s %12.2f\n",
                        "Total token throughput (tok/s):", s.total_token_throughput);
  if (s.has_slo) {
    absl::StrAppendFormat(&out, "%-34s %12.2f\n", "Request goodput (req/s):", s.goodput);
    absl::StrAppendFormat(&out, "%-34s %11.1f%%\n", "SLO attainment:", 100 * s.slo_attainment);
  }
  auto metric = [&](const char* title, const MetricSummary& m) {
    absl::StrAppendFormat(&out, "%s\n", title);
    absl::StrAppendFormat(&out, "  %-32s %12.2f\n", "Mean (ms):", m.mean * 1e3);
    absl::StrAppendFormat(&out, "  %-32s %12.2f\n", "Median (ms):", m.median * 1e3);
    for (const auto& [p, v] : m.percentiles) {
      absl::StrAppendFormat(&out, "  %-32s %12.2f\n", absl::StrFormat("P%g (ms):", p), v * 1e3);
    }
  };
  metric("Time to first token", s.ttft);
  metric("Time per output token (excl. 1st)", s.tpot);
  metric("Inter-token latency", s.itl);
  metric("End-to-end latency", s.e2e);
  return out;
}

std::string ToJson(const BenchSummary& s, const std::map<std::string, std::string>& extra) {
  nlohmann::json out;
  for (const auto& [key, value] : extra) out[key] = value;
  out["num_prompts"] = s.requests;
  out["completed"] = s.completed;
  out["failed"] = s.failed;
  out["failures"] = s.failures;
  out["duration"] = s.duration_s;
  out["total_input_tokens"] = s.total_input_tokens;
  out["total_output_tokens"] = s.total_output_tokens;
  out["request_throughput"] = s.request_throughput;
  out["output_throughput"] = s.output_throughput;
  out["total_token_throughput"] = s.total_token_throughput;
  if (s.has_slo) {
    out["request_goodput"] = s.goodput;
    out["slo_attainment"] = s.slo_attainment;
    out["slo"] = {{"ttft_ms", s.slo.ttft_s * 1e3},
                  {"tpot_ms", s.slo.tpot_s * 1e3},
                  {"e2el_ms", s.slo.e2e_s * 1e3}};
  }
  auto metric = [&](const char* name, const MetricSummary& m) {
    out[absl::StrCat("mean_", name, "_ms")] = m.mean * 1e3;
    out[absl::StrCat("median_", name, "_ms")] = m.median * 1e3;
    out[absl::StrCat("std_", name, "_ms")] = m.stddev * 1e3;
    for (const auto& [p, v] : m.percentiles) {
      out[absl::StrCat("p", PercentileName(p), "_", name, "_ms")] = v * 1e3;
    }
  };
  metric("ttft", s.ttft);
  metric("tpot", s.tpot);
  metric("itl", s.itl);
  metric("e2el", s.e2e);
  return out.dump(2);
}

std::string PlotSvg(const std::vector<RequestRecord>& records, const std::string& title) {
  std::vector<double> ttft_ms, itl_ms, e2e_s;
  Series ttft_time{"TTFT (ms)", {}, false};
  Series itl_time{"mean ITL of request (ms)", {}, false};
  for (const RequestRecord& r : records) {
    if (!r.ok) continue;
    ttft_ms.push_back(r.ttft_s * 1e3);
    e2e_s.push_back(r.e2e_s);
    double itl_sum = 0;
    for (double v : r.itl_s) {
      itl_ms.push_back(v * 1e3);
      itl_sum += v;
    }
    ttft_time.points.emplace_back(r.start_s, r.ttft_s * 1e3);
    if (!r.itl_s.empty()) itl_time.points.emplace_back(r.start_s, itl_sum / r.itl_s.size() * 1e3);
  }
  auto by_x = [](Series& s) { std::sort(s.points.begin(), s.points.end()); };
  by_x(ttft_time);
  by_x(itl_time);
  Chart cdf{.title = title + ": latency CDFs", .x_label = "milliseconds", .y_label = "fraction"};
  cdf.series.push_back(CdfSeries("TTFT", ttft_ms));
  cdf.series.push_back(CdfSeries("ITL", itl_ms));
  cdf.log_x = true;
  Chart timeline{
      .title = title + ": over the run", .x_label = "request start (s)", .y_label = "milliseconds"};
  timeline.series.push_back(ttft_time);
  timeline.series.push_back(itl_time);
  return RenderSvg({cdf, timeline});
}

double GoodputKnee(const std::vector<SweepPoint>& points, double attainment) {
  double knee = 0;
  for (const SweepPoint& point : points) {
    if (point.summary.slo_attainment >= attainment) knee = std::max(knee, point.rate);
  }
  return knee;
}

}  // namespace tandem::bench
