// Metrics registry: counters, gauges and histograms with labels, rendered in the Prometheus text
// exposition format (version 0.0.4).
//
//   MetricsRegistry registry;
//   auto& requests = registry.AddCounter("tandem_router_requests_total",
//                                        "Requests by outcome.", {"outcome"});
//   auto& ttft = registry.AddHistogram("tandem_router_ttft_seconds", "Time to first token.",
//                                      LatencyBucketsSeconds());
//   requests.Get("ok").Increment();
//   ttft.Get().Observe(0.042);
//   std::string text = registry.RenderPrometheus();
//
// Metric and label names follow Prometheus rules (checked; a bad name is a programming error and
// aborts). Families and their children live as long as the registry, so callers may keep the
// references Get() returns on hot paths.
//
// Thread-safety: everything is safe to call concurrently. Updates to a child are lock-free;
// Get() takes the family's lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace tandem {

class Counter {
 public:
  // `amount` must be >= 0 (counters only go up).
  void Increment(double amount = 1.0);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double amount) { value_.fetch_add(amount, std::memory_order_relaxed); }
  void Sub(double amount) { value_.fetch_sub(amount, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

class Histogram {
 public:
  // `upper_bounds` must be strictly increasing and finite; +Inf is implicit.
  explicit Histogram(std::vector<double> upper_bounds);

  void Observe(double value);

  struct Snapshot {
    std::vector<double> upper_bounds;  // without +Inf
    std::vector<uint64_t> cumulative;  // one per bound, then one for +Inf (== count)
    uint64_t count = 0;
    double sum = 0.0;
  };
  Snapshot Take() const;

  // Estimates the q-quantile (0 <= q <= 1) by linear interpolation inside the bucket, as
  // Prometheus' histogram_quantile does. Returns NaN when empty.
  double Quantile(double q) const;

 private:
  std::vector<double> upper_bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // non-cumulative, last = +Inf
  std::atomic<double> sum_{0.0};
};

// Bucket helpers.
std::vector<double> ExponentialBuckets(double start, double factor, int count);
std::vector<double> LinearBuckets(double start, double width, int count);
// 0.5 ms .. ~65 s, for request latencies in seconds.
std::vector<double> LatencyBucketsSeconds();

enum class MetricType { kCounter, kGauge, kHistogram };

// All children of one metric name, one per distinct label-value tuple.
template <typename Metric>
class Family {
 public:
  // The child for these label values (one per label name, in order), created on first use.
  template <typename... Values>
  Metric& Get(const Values&... values) {
    return GetWithLabels({std::string(values)...});
  }
  Metric& GetWithLabels(const std::vector<std::string>& values);

 private:
  friend class MetricsRegistry;
  Family(std::string name, std::vector<std::string> label_names,
         std::function<std::unique_ptr<Metric>()> make)
      : name_(std::move(name)), label_names_(std::move(label_names)), make_(std::move(make)) {}

  std::string name_;
  std::vector<std::string> label_names_;
  std::function<std::unique_ptr<Metric>()> make_;
  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Metric>> children_ ABSL_GUARDED_BY(mu_);
};

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Registering a name again with the same type and labels returns the existing family;
  // with a different type or labels it aborts (two owners disagree about a metric).
  Family<Counter>& AddCounter(std::string_view name, std::string_view help,
                              std::vector<std::string> label_names = {});
  Family<Gauge>& AddGauge(std::string_view name, std::string_view help,
                          std::vector<std::string> label_names = {});
  Family<Histogram>& AddHistogram(std::string_view name, std::string_view help,
                                  std::vector<double> upper_bounds,
                                  std::vector<std::string> label_names = {});
  // A gauge whose value is read by `read` at render time (e.g. pool occupancy). `read` runs on
  // the rendering thread and must be thread-safe.
  void AddCallbackGauge(std::string_view name, std::string_view help, std::function<double()> read);

  std::string RenderPrometheus() const;

 private:
  struct Entry {
    MetricType type;
    std::string help;
    std::vector<std::string> label_names;
    std::unique_ptr<Family<Counter>> counters;
    std::unique_ptr<Family<Gauge>> gauges;
    std::unique_ptr<Family<Histogram>> histograms;
    std::function<double()> callback;
  };
  Entry& AddEntry(std::string_view name, std::string_view help, MetricType type,
                  const std::vector<std::string>& label_names, bool* created)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_ ABSL_GUARDED_BY(mu_);
};

// Formats a sample value as Prometheus does: shortest round-trip decimal, "+Inf", "-Inf", "NaN".
std::string FormatMetricValue(double value);

// True when `name` is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*).
bool IsValidMetricName(std::string_view name);
// True when `name` is a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__").
bool IsValidLabelName(std::string_view name);

}  // namespace tandem
