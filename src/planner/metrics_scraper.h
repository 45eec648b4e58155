// Observations from the roles' own /metrics (names: docs/metrics.md).
//
// ObservationBuilder is the pure part: given what each process exposed at one scrape, it turns
// counters and histograms into an Observation over the interval since the previous scrape:
//   - rates from counter deltas (prompt, cached and generated tokens, requests), per target and
//     per series, where a counter that went down, or a worker whose `epoch` changed, restarted
//     from zero (the delta is its new value, as Prometheus' rate() does);
//   - mean TTFT and ITL from histogram _sum / _count deltas;
//   - per-instance load for load mode: `tandem_worker_prefill_queue_tokens` with the worker's
//     own mean TTFT (prefill), `tandem_worker_active_kv_blocks` with its mean ITL (decode).
// Cluster rates come from the router(s) when one was read, else from the workers themselves.
// A target seen for the first time has no baseline, so the very first scrape yields kUnavailable.
//
// ScrapingMetricsSource does the I/O: it discovers workers from the router (`GET /v1/workers`),
// adds static targets (their role read from `tandem_worker_info`), fetches every /metrics in
// parallel with a timeout and feeds the builder. A target that cannot be read is reported and
// left out of that interval; its baseline is kept, so the next rate spans both intervals.
//
//   ScrapingMetricsSource source({.router_url = "http://127.0.0.1:8000"});
//   absl::StatusOr<Observation> observation = source.Collect(now_seconds);
//
// Thread-safety: both are used from the planner's loop thread only.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "planner/interfaces.h"
#include "planner/planner.h"
#include "planner/prometheus_text.h"

namespace tandem::planner {

// One process's /metrics at one scrape.
struct TargetScrape {
  std::string url;      // base URL, http://host:port
  std::string role;     // "router", "prefill", "decode", "both"; "" = read tandem_worker_info
  absl::Status status;  // why it could not be read; OK otherwise
  Exposition metrics;
};

// The role of a scraped process: `role` when set, else the `role` label of tandem_worker_info,
// "router" for a process exposing tandem_router_* series, "" when none of these says.
std::string RoleOf(const TargetScrape& target);

class ObservationBuilder {
 public:
  // The observation over the interval since the previous call. Instance counts are the workers
  // of each role in `targets` (readable or not). kUnavailable when no target could be read, or
  // when none has a baseline yet (the first scrape).
  absl::StatusOr<Observation> Build(double now_seconds, const std::vector<TargetScrape>& targets);

  // What the last Build could not use, one line each (unreadable targets, malformed lines,
  // missing series); for logs.
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  struct Baseline {
    double time_seconds = 0;
    std::string epoch;
    std::map<std::string, double> values;  // by series key
  };
  // What one target contributed over the interval.
  struct Deltas {
    double seconds = 0;
    bool restarted = false;
    const Baseline* before = nullptr;
    const Exposition* now = nullptr;
    // Increase of the counter `name` (summed over its series matching `match`).
    double Increase(const std::string& name, const Labels& match = {}) const;
    // Mean of a histogram over the interval: increase of _sum / increase of _count, 0 if none.
    double Mean(const std::string& histogram) const;
  };

  std::map<std::string, Baseline> baselines_;  // by target URL
  std::vector<std::string> notes_;
};

struct ScrapeOptions {
  // The router: its /metrics for the cluster rates and its `GET /v1/workers` for discovery.
  std::string router_url;
  // Processes scraped besides the discovered ones (base URL or full /metrics URL).
  std::vector<std::string> static_targets;
  absl::Duration timeout = absl::Seconds(2);
  // Sent as `Authorization: Bearer` to the router's /v1/workers when it requires an API key.
  std::string router_api_key;
};

// The router's `GET /v1/workers` answer: a JSON array of workers, or {"workers": [...]}, each
// with "url" and "role" ("prefill", "decode", "both") and optionally "ready" / "draining" /
// "state"; workers that are draining or not ready are left out. Returns (url, role) pairs.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseWorkerList(
    std::string_view json);

// "host:port", "http://host:port" or "http://host:port/metrics" -> the base URL and the
// /metrics URL.
absl::StatusOr<std::pair<std::string, std::string>> NormalizeScrapeUrl(const std::string& text);

class ScrapingMetricsSource : public MetricsSource {
 public:
  explicit ScrapingMetricsSource(ScrapeOptions options);
  absl::StatusOr<Observation> Collect(double now_seconds) override;

  // Reads every target once (discovery included) without building an observation.
  std::vector<TargetScrape> ScrapeAll();
  // What the last Collect could not use (discovery problems, then the builder's notes).
  std::vector<std::string> notes() const override;
  std::vector<std::string> unreadable() const override { return unreadable_; }

 private:
  ScrapeOptions options_;
  ObservationBuilder builder_;
  std::vector<std::string> unreadable_;
  std::vector<std::string> discovery_notes_;
  bool discovery_missing_logged_ = false;
};

}  // namespace tandem::planner
