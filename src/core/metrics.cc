#include "core/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/str_cat.h"

namespace tandem {
namespace {

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "metrics: %s\n", message.c_str());
  std::abort();
}

void AppendEscaped(std::string* out, std::string_view text, bool escape_quotes) {
  for (char c : text) {
    if (c == '\\') {
      out->append("\\\\");
    } else if (c == '\n') {
      out->append("\\n");
    } else if (c == '"' && escape_quotes) {
      out->append("\\\"");
    } else {
      out->push_back(c);
    }
  }
}

void AppendLabels(std::string* out, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, std::string_view extra_name = {},
                  std::string_view extra_value = {}) {
  if (names.empty() && extra_name.empty()) return;
  out->push_back('{');
  bool first = true;
  for (size_t i = 0; i < names.size(); ++i) {
    if (!first) out->push_back(',');
    first = false;
    absl::StrAppend(out, names[i], "=\"");
    AppendEscaped(out, values[i], true);
    out->push_back('"');
  }
  if (!extra_name.empty()) {
    if (!first) out->push_back(',');
    absl::StrAppend(out, std::string(extra_name), "=\"", std::string(extra_value), "\"");
  }
  out->push_back('}');
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void Counter::Increment(double amount) {
  if (!(amount >= 0)) Die(absl::StrCat("counter incremented by ", amount, " (must be >= 0)"));
  value_.fetch_add(amount, std::memory_order_relaxed);
}

Histogram::Histogram(std::vector<double> upper_bounds) : upper_bounds_(std::move(upper_bounds)) {
  for (size_t i = 0; i < upper_bounds_.size(); ++i) {
    if (!std::isfinite(upper_bounds_[i]) || (i > 0 && upper_bounds_[i] <= upper_bounds_[i - 1])) {
      Die("histogram bounds must be finite and strictly increasing");
    }
  }
  buckets_ = std::make_unique<std::atomic<uint64_t>[]>(upper_bounds_.size() + 1);
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double value) {
  // Bucket i counts values <= upper_bounds_[i] (Prometheus' "le").
  size_t index =
      std::lower_bound(upper_bounds_.begin(), upper_bounds_.end(), value) - upper_bounds_.begin();
  if (std::isnan(value)) index = upper_bounds_.size();
  buckets_[index].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Take() const {
  Snapshot snapshot;
  snapshot.upper_bounds = upper_bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= upper_bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    snapshot.cumulative.push_back(running);
  }
  snapshot.count = running;
  snapshot.sum = sum_.load(std::memory_order_relaxed);
  return snapshot;
}

double Histogram::Quantile(double q) const {
  Snapshot s = Take();
  if (s.count == 0 || q < 0 || q > 1) return std::numeric_limits<double>::quiet_NaN();
  double rank = q * static_cast<double>(s.count);
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    if (static_cast<double>(s.cumulative[i]) >= rank) {
      if (i == s.upper_bounds.size()) {
        // In the +Inf bucket: the best known answer is the highest finite bound.
        return s.upper_bounds.empty() ? std::numeric_limits<double>::quiet_NaN()
                                      : s.upper_bounds.back();
      }
      double lower = i == 0 ? 0.0 : s.upper_bounds[i - 1];
      double below = i == 0 ? 0.0 : static_cast<double>(s.cumulative[i - 1]);
      double in_bucket = static_cast<double>(s.cumulative[i]) - below;
      if (in_bucket <= 0) return s.upper_bounds[i];
      return lower + (s.upper_bounds[i] - lower) * (rank - below) / in_bucket;
    }
  }
  return s.upper_bounds.empty() ? std::numeric_limits<double>::quiet_NaN() : s.upper_bounds.back();
}

std::vector<double> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1) Die("bad exponential bucket parameters");
  std::vector<double> bounds;
  double value = start;
  for (int i = 0; i < count; ++i, value *= factor) bounds.push_back(value);
  return bounds;
}

std::vector<double> LinearBuckets(double start, double width, int count) {
  if (!(width > 0) || count < 1) Die("bad linear bucket parameters");
  std::vector<double> bounds;
  for (int i = 0; i < count; ++i) bounds.push_back(start + width * i);
  return bounds;
}

std::vector<double> LatencyBucketsSeconds() { return ExponentialBuckets(0.0005, 2.0, 18); }

template <typename Metric>
Metric& Family<Metric>::GetWithLabels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    Die(absl::StrCat(name_, ": got ", values.size(), " label values for ", label_names_.size(),
                     " label names"));
  }
  absl::MutexLock lock(&mu_);
  auto& slot = children_[values];
  if (slot == nullptr) slot = make_();
  return *slot;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

bool IsValidMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsValidLabelName(std::string_view name) {
  if (name.empty() || name.substr(0, 2) == "__") return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

std::string FormatMetricValue(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

MetricsRegistry::Entry& MetricsRegistry::AddEntry(std::string_view name, std::string_view help,
                                                  MetricType type,
                                                  const std::vector<std::string>& label_names,
                                                  bool* created) {
  if (!IsValidMetricName(std::string(name)))
    Die(absl::StrCat("invalid metric name '", std::string(name), "'"));
  for (const std::string& label : label_names) {
    if (!IsValidLabelName(label) || (type == MetricType::kHistogram && label == "le")) {
      Die(absl::StrCat(std::string(name), ": invalid label name '", label, "'"));
    }
  }
  auto it = entries_.find(name);
  if (it != entries_.end()) {
    if (it->second.type != type || it->second.label_names != label_names) {
      Die(absl::StrCat("metric '", std::string(name),
                       "' registered twice with different type or labels"));
    }
    *created = false;
    return it->second;
  }
  Entry& entry = entries_[std::string(name)];
  entry.type = type;
  entry.help = std::string(help);
  entry.label_names = label_names;
  *created = true;
  return entry;
}

Family<Counter>& MetricsRegistry::AddCounter(std::string_view name, std::string_view help,
                                             std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  bool created;
  Entry& entry = AddEntry(name, help, MetricType::kCounter, label_names, &created);
  if (created) {
    entry.counters.reset(new Family<Counter>(std::string(name), label_names,
                                             [] { return std::make_unique<Counter>(); }));
  }
  if (entry.counters == nullptr)
    Die(absl::StrCat("metric '", std::string(name), "' is a callback gauge"));
  return *entry.counters;
}

Family<Gauge>& MetricsRegistry::AddGauge(std::string_view name, std::string_view help,
                                         std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  bool created;
  Entry& entry = AddEntry(name, help, MetricType::kGauge, label_names, &created);
  if (created) {
    entry.gauges.reset(new Family<Gauge>(std::string(name), label_names,
                                         [] { return std::make_unique<Gauge>(); }));
  }
  if (entry.gauges == nullptr)
    Die(absl::StrCat("metric '", std::string(name), "' is a callback gauge"));
  return *entry.gauges;
}

Family<Histogram>& MetricsRegistry::AddHistogram(std::string_view name, std::string_view help,
                                                 std::vector<double> upper_bounds,
                                                 std::vector<std::string> label_names) {
  absl::MutexLock lock(&mu_);
  bool created;
  Entry& entry = AddEntry(name, help, MetricType::kHistogram, label_names, &created);
  if (created) {
    Histogram probe(upper_bounds);  // validates the bounds now rather than at first use
    entry.histograms.reset(new Family<Histogram>(
        std::string(name), label_names,
        [bounds = std::move(upper_bounds)] { return std::make_unique<Histogram>(bounds); }));
  }
  return *entry.histograms;
}

void MetricsRegistry::AddCallbackGauge(std::string_view name, std::string_view help,
                                       std::function<double()> read) {
  absl::MutexLock lock(&mu_);
  bool created;
  Entry& entry = AddEntry(name, help, MetricType::kGauge, {}, &created);
  if (!created) Die(absl::StrCat("callback gauge '", std::string(name), "' registered twice"));
  entry.callback = std::move(read);
}

std::string MetricsRegistry::RenderPrometheus() const {
  std::string out;
  absl::MutexLock lock(&mu_);
  for (const auto& [name, entry] : entries_) {
    absl::StrAppend(&out, "# HELP ", name, " ");
    AppendEscaped(&out, entry.help, false);
    absl::StrAppend(&out, "\n# TYPE ", name, " ", TypeName(entry.type), "\n");
    if (entry.callback) {
      absl::StrAppend(&out, name, " ", FormatMetricValue(entry.callback()), "\n");
    } else if (entry.counters) {
      absl::MutexLock family_lock(&entry.counters->mu_);
      for (const auto& [values, counter] : entry.counters->children_) {
        out.append(name);
        AppendLabels(&out, entry.label_names, values);
        absl::StrAppend(&out, " ", FormatMetricValue(counter->Value()), "\n");
      }
    } else if (entry.gauges) {
      absl::MutexLock family_lock(&entry.gauges->mu_);
      for (const auto& [values, gauge] : entry.gauges->children_) {
        out.append(name);
        AppendLabels(&out, entry.label_names, values);
        absl::StrAppend(&out, " ", FormatMetricValue(gauge->Value()), "\n");
      }
    } else if (entry.histograms) {
      absl::MutexLock family_lock(&entry.histograms->mu_);
      for (const auto& [values, histogram] : entry.histograms->children_) {
        Histogram::Snapshot s = histogram->Take();
        for (size_t i = 0; i < s.cumulative.size(); ++i) {
          std::string le = i < s.upper_bounds.size() ? FormatMetricValue(s.upper_bounds[i])
                                                     : std::string("+Inf");
          absl::StrAppend(&out, name, "_bucket");
          AppendLabels(&out, entry.label_names, values, "le", le);
          absl::StrAppend(&out, " ", s.cumulative[i], "\n");
        }
        absl::StrAppend(&out, name, "_sum");
        AppendLabels(&out, entry.label_names, values);
        absl::StrAppend(&out, " ", FormatMetricValue(s.sum), "\n");
        absl::StrAppend(&out, name, "_count");
        AppendLabels(&out, entry.label_names, values);
        absl::StrAppend(&out, " ", s.count, "\n");
      }
    }
  }
  return out;
}

}  // namespace tandem
