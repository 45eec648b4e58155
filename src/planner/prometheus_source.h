// PrometheusMetricsSource: observations from a Prometheus server that scrapes the roles (the
// Kubernetes setup: `prometheus: annotations` or a PodMonitor, docs/deploy-spec.md), through its
// HTTP API instead of scraping the roles directly.
//
//   GET /api/v1/query?query=EXPR                              one observation, now
//   GET /api/v1/query_range?query=EXPR&start=S&end=E&step=D   a history, to warm the planner up
//
// The expressions mirror ObservationBuilder (metrics_scraper.h) over a rate window `window`:
//   prompt tokens/s      sum(rate(tandem_router_prompt_tokens_total[W]))
//   prefix hit rate      sum(rate(..._cached_prompt_tokens_total[W])) / the above
//   mean prompt          the prompt rate / sum(rate(tandem_router_ttft_seconds_count[W]))
//   generated tokens/s   sum(rate(tandem_router_generated_tokens_total[W]))
//   mean TTFT, ITL       sum(rate(X_sum[W])) / sum(rate(X_count[W]))
//   sequences decoding   sum(tandem_worker_running_requests and on(instance) decode workers)
//   instances            count(tandem_worker_info{role="prefill"}), ... {role="decode"}
//   per-instance load    tandem_worker_prefill_queue_tokens (prefill) and
//                        tandem_worker_active_kv_blocks (decode), each with that instance's
//                        mean TTFT or ITL over the window, joined on the `instance` label
// with the workers' own counters when no router series exists. `selector` (e.g.
// `namespace="serving"`) is added to every series selector.
//
//   PrometheusMetricsSource source({.url = "http://prometheus:9090", .window_seconds = 60});
//   absl::StatusOr<Observation> observation = source.Collect(now_seconds);
//
// Thread-safety: used from the planner's loop thread only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "planner/interfaces.h"
#include "planner/planner.h"

namespace tandem::planner {

struct PrometheusOptions {
  std::string url;             // http://host:9090
  double window_seconds = 60;  // the rate window (at least two of Prometheus' scrape intervals)
  std::string selector;        // extra label matchers, without braces
  absl::Duration timeout = absl::Seconds(5);
};

// One series of an instant vector, or one (time, value) sequence of a range matrix.
struct PrometheusSeries {
  std::map<std::string, std::string> labels;
  std::vector<std::pair<double, double>> points;  // (unix seconds, value); one for a vector
};

// Parses an /api/v1/query or /api/v1/query_range answer (resultType vector, matrix or scalar).
// kInvalidArgument with Prometheus' own message for {"status": "error"}, kDataLoss for anything
// that is not such an answer.
absl::StatusOr<std::vector<PrometheusSeries>> ParsePrometheusResponse(std::string_view json);

class PrometheusMetricsSource : public MetricsSource {
 public:
  explicit PrometheusMetricsSource(PrometheusOptions options);

  // Evaluated at the server's "now"; `now_seconds` only stamps the observation.
  absl::StatusOr<Observation> Collect(double now_seconds) override;

  // Observations every `step_seconds` over the last `seconds`, oldest first, stamped on the
  // planner's clock (`now_seconds` is the server's now). For Planner::Learn at start-up.
  absl::StatusOr<std::vector<Observation>> History(double now_seconds, double seconds,
                                                   double step_seconds);

  std::vector<std::string> notes() const override { return notes_; }
  std::vector<std::string> unreadable() const override { return unreadable_; }

  // The expression for one of the observation's fields (for docs and tests).
  std::string Expression(const std::string& field) const;

 private:
  // Runs `expression` as an instant query (step 0) or a range query over [start, end] (unix s).
  absl::StatusOr<std::vector<PrometheusSeries>> Query(const std::string& expression,
                                                      double start_seconds, double end_seconds,
                                                      double step_seconds);
  // Every field: now (step 0), or at each step of [start, end]; one observation per time.
  absl::StatusOr<std::vector<Observation>> Evaluate(double start, double end, double step);

  PrometheusOptions options_;
  std::vector<std::string> notes_;
  std::vector<std::string> unreadable_;
};

}  // namespace tandem::planner
