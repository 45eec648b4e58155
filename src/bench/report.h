// Benchmark results: per-request records summarized into the figures operators judge a serving
// system by (TTFT, TPOT, ITL, E2E latency, throughput, goodput under SLOs, failures by reason),
// printed as a table, written as JSON (field names compatible with `vllm bench serve` where they
// overlap) and drawn as SVG (latency CDFs and a timeline).
//
//   std::vector<RequestRecord> records = ...;   // one per request sent
//   BenchSummary summary = Summarize(records, duration_s, slo, {50, 90, 99});
//   std::cout << FormatTable(summary);
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "bench/stats.h"

namespace tandem::bench {

struct RequestRecord {
  uint64_t index = 0;
  bool ok = false;
  std::string error;          // failure reason when !ok (e.g. "http_429", "timeout")
  double start_s = 0;         // send time relative to the start of the run
  double ttft_s = 0;          // first token
  std::vector<double> itl_s;  // gaps between later tokens
  double e2e_s = 0;           // whole request
  int64_t input_tokens = 0;
  int64_t output_tokens = 0;
  std::string generated_text;  // kept only when asked (tests compare texts)
};

struct MetricSummary {
  double mean = 0;
  double median = 0;
  double stddev = 0;
  std::map<double, double> percentiles;  // p -> seconds
};

struct BenchSummary {
  uint64_t requests = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;
  std::map<std::string, uint64_t> failures;  // reason -> count
  double duration_s = 0;
  int64_t total_input_tokens = 0;
  int64_t total_output_tokens = 0;
  double request_throughput = 0;  // completed / duration
  double output_throughput = 0;   // output tokens / duration
  double total_token_throughput = 0;
  MetricSummary ttft, tpot, itl, e2e;  // seconds
  Slo slo;
  bool has_slo = false;
  uint64_t good = 0;          // completed and within every SLO target
  double goodput = 0;         // good / duration (requests/s)
  double slo_attainment = 0;  // good / requests
};

BenchSummary Summarize(const std::vector<RequestRecord>& records, double duration_s, const Slo& slo,
                       const std::vector<double>& percentiles);

// Time per output token after the first; 0 for requests with one output token.
double Tpot(const RequestRecord& record);

std::string FormatTable(const BenchSummary& summary);
// `extra` fields (backend, model, rate, ...) are added at the top level.
std::string ToJson(const BenchSummary& summary, const std::map<std::string, std::string>& extra);
std::string PlotSvg(const std::vector<RequestRecord>& records, const std::string& title);

// One point of a --sweep over request rates.
struct SweepPoint {
  double rate = 0;  // offered requests/s
  BenchSummary summary;
};
// The goodput knee: the highest offered rate whose SLO attainment is still >= `attainment`
// (0.9 by default); 0 when none qualifies.
double GoodputKnee(const std::vector<SweepPoint>& points, double attainment = 0.9);

}  // namespace tandem::bench
