#include "bench/stats.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tandem::bench {
namespace {

// Buckets: 1 µs .. ~1e5 s, 64 per factor of 2; everything below 1 µs is bucket 0.
constexpr double kMinSeconds = 1e-6;
constexpr int kSubBuckets = 64;  // per doubling: 2^(1/64) ≈ 1.1% wide
constexpr int kDoublings = 37;   // 1e-6 * 2^37 ≈ 1.4e5 s
constexpr int kBuckets = kSubBuckets * kDoublings + 2;

}  // namespace

LatencyDigest::LatencyDigest() : buckets_(kBuckets, 0) {}

int LatencyDigest::Bucket(double seconds) {
  if (!(seconds > kMinSeconds)) return 0;
  int bucket = 1 + static_cast<int>(std::floor(std::log2(seconds / kMinSeconds) * kSubBuckets));
  return std::min(bucket, kBuckets - 1);
}

double LatencyDigest::BucketValue(int bucket) {
  if (bucket == 0) return kMinSeconds;
  // Geometric middle of the bucket.
  return kMinSeconds * std::exp2((bucket - 0.5) / kSubBuckets);
}

void LatencyDigest::Add(double seconds) {
  if (std::isnan(seconds)) return;
  ++buckets_[Bucket(seconds)];
  ++count_;
  sum_ += seconds;
  min_ = std::min(min_, seconds);
  max_ = std::max(max_, seconds);
}

void LatencyDigest::Add(double seconds, uint64_t count) {
  if (std::isnan(seconds) || count == 0) return;
  buckets_[Bucket(seconds)] += count;
  count_ += count;
  sum_ += seconds * static_cast<double>(count);
  min_ = std::min(min_, seconds);
  max_ = std::max(max_, seconds);
}

void LatencyDigest::Merge(const LatencyDigest& other) {
  for (int i = 0; i < kBuckets; ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  min_ = std::min(min_, other.min_);
  max_ = std::max(max_, other.max_);
}

double LatencyDigest::Percentile(double p) const {
  if (count_ == 0) return 0;
  p = std::clamp(p, 0.0, 100.0);
  if (p == 0) return min_;
  if (p == 100) return max_;
  uint64_t rank = static_cast<uint64_t>(std::ceil(p / 100 * static_cast<double>(count_)));
  rank = std::max<uint64_t>(rank, 1);
  uint64_t seen = 0;
  for (int i = 0; i < kBuckets; ++i) {
    seen += buckets_[i];
    if (seen >= rank) return std::clamp(BucketValue(i), min_, max_);
  }
  return max_;
}

double LatencyDigest::FractionAtOrBelow(double seconds) const {
  if (count_ == 0) return 0;
  int limit = Bucket(seconds);
  uint64_t seen = 0;
  for (int i = 0; i <= limit; ++i) seen += buckets_[i];
  return static_cast<double>(seen) / static_cast<double>(count_);
}

absl::StatusOr<Slo> ParseSlo(const std::string& text) {
  Slo slo;
  for (absl::string_view item : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    std::vector<std::string> kv = absl::StrSplit(item, absl::MaxSplits('=', 1));
    double ms;
    if (kv.size() != 2 || !absl::SimpleAtod(kv[1], &ms) || !(ms > 0)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SLO '", item, "' must be NAME=MILLISECONDS with a positive number (e.g. ttft=500)"));
    }
    std::string name = absl::AsciiStrToLower(kv[0]);
    if (name == "ttft") {
      slo.ttft_s = ms / 1000;
    } else if (name == "tpot" || name == "itl") {
      slo.tpot_s = ms / 1000;
    } else if (name == "e2e" || name == "e2el") {
      slo.e2e_s = ms / 1000;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("SLO '", name, "' is not known (allowed: ttft, tpot, e2e)"));
    }
  }
  return slo;
}

bool MeetsSlo(const Slo& slo, double ttft_s, double tpot_s, double e2e_s) {
  if (slo.ttft_s > 0 && ttft_s > slo.ttft_s) return false;
  if (slo.tpot_s > 0 && tpot_s > slo.tpot_s) return false;
  if (slo.e2e_s > 0 && e2e_s > slo.e2e_s) return false;
  return true;
}

}  // namespace tandem::bench
