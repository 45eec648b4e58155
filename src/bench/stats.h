// Latency statistics with bounded memory, and SLO goodput.
//
// LatencyDigest keeps a log-linear histogram (about 1% relative precision from 1 µs to
// hours) so millions of samples cost a few kilobytes; it answers percentiles, mean, min and
// max, and two digests merge. SloCounter counts requests that met their TTFT/TPOT targets.
//
//   LatencyDigest ttft;
//   ttft.Add(0.120);
//   double p99 = ttft.Percentile(99);
//
// Thread-safety: not thread-safe; merge per-thread digests.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace tandem::bench {

class LatencyDigest {
 public:
  LatencyDigest();
  void Add(double seconds);
  // Adds `count` samples of the same value (e.g. one decode step's gap for every sequence).
  void Add(double seconds, uint64_t count);
  void Merge(const LatencyDigest& other);

  uint64_t count() const { return count_; }
  double mean() const { return count_ == 0 ? 0 : sum_ / static_cast<double>(count_); }
  double min() const { return count_ == 0 ? 0 : min_; }
  double max() const { return count_ == 0 ? 0 : max_; }
  double sum() const { return sum_; }
  // p in [0, 100]; 0 when empty. Within ~1% of the exact order statistic.
  double Percentile(double p) const;
  // The fraction of samples <= seconds.
  double FractionAtOrBelow(double seconds) const;

 private:
  static int Bucket(double seconds);
  static double BucketValue(int bucket);

  std::vector<uint64_t> buckets_;
  uint64_t count_ = 0;
  double sum_ = 0;
  double min_ = std::numeric_limits<double>::infinity();
  double max_ = 0;
};

// Service-level objectives per request; 0 disables a target.
struct Slo {
  double ttft_s = 0;
  double tpot_s = 0;  // mean time per output token after the first
  double e2e_s = 0;
};

// Parses "ttft=MS,tpot=MS[,e2e=MS]" (milliseconds).
absl::StatusOr<Slo> ParseSlo(const std::string& text);

// True when a finished request met every enabled target.
bool MeetsSlo(const Slo& slo, double ttft_s, double tpot_s, double e2e_s);

}  // namespace tandem::bench
