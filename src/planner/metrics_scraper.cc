#include "planner/metrics_scraper.h"

#include <cmath>
#include <future>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"
#include "planner/internal/finite.h"

namespace tandem::planner {
namespace {

constexpr size_t kMaxNotedLines = 3;  // malformed lines noted per target and scrape

bool IsWorkerRole(const std::string& role) {
  return role == "prefill" || role == "decode" || role == "both";
}

using internal::FiniteOrZero;

}  // namespace

std::string RoleOf(const TargetScrape& target) {
  if (!target.role.empty()) return target.role;
  if (std::optional<std::string> role = target.metrics.Label("tandem_worker_info", "role")) {
    return *role;
  }
  for (const MetricSample& sample : target.metrics.samples) {
    if (sample.name.starts_with("tandem_router_")) return "router";
  }
  return "";
}

double ObservationBuilder::Deltas::Increase(const std::string& name, const Labels& match) const {
  double increase = 0;
  for (const MetricSample* sample : now->Find(name, match)) {
    if (!std::isfinite(sample->value)) continue;
    auto it = before->values.find(sample->SeriesKey());
    // A series new since the baseline, or one that went down, started from zero in between.
    if (restarted || it == before->values.end() || sample->value < it->second) {
      increase += sample->value;
    } else {
      increase += sample->value - it->second;
    }
  }
  return increase;
}

double ObservationBuilder::Deltas::Mean(const std::string& histogram) const {
  const double count = Increase(histogram + "_count");
  return count > 0 ? Increase(histogram + "_sum") / count : 0;
}

absl::StatusOr<Observation> ObservationBuilder::Build(double now_seconds,
                                                      const std::vector<TargetScrape>& targets) {
  notes_.clear();
  Observation o;
  o.time_seconds = now_seconds;
  struct Readable {
    const TargetScrape* target;
    std::string role;
    std::optional<Deltas> deltas;
  };
  std::vector<Readable> readable;
  std::map<std::string, Baseline> next;
  std::vector<std::string> unreadable;
  for (const TargetScrape& target : targets) {
    const std::string role = RoleOf(target);
    if (role == "prefill") ++o.prefill_instances;
    if (role == "decode") ++o.decode_instances;
    auto previous = baselines_.find(target.url);
    if (!target.status.ok()) {
      unreadable.push_back(target.url);
      notes_.push_back(absl::StrCat(target.url, ": not read: ", target.status.message()));
      if (previous != baselines_.end()) next[target.url] = previous->second;
      continue;
    }
    for (size_t i = 0; i < target.metrics.errors.size() && i < kMaxNotedLines; ++i) {
      notes_.push_back(absl::StrCat(target.url, "/metrics: ", target.metrics.errors[i]));
    }
    if (target.metrics.errors.size() > kMaxNotedLines) {
      notes_.push_back(absl::StrCat(target.url,
                                    "/metrics: ", target.metrics.errors.size() - kMaxNotedLines,
                                    " more malformed lines"));
    }
    if (role.empty()) {
      notes_.push_back(absl::StrCat(target.url,
                                    ": neither tandem_worker_info nor router series; "
                                    "its role is unknown, left out"));
    }
    Baseline baseline;
    baseline.time_seconds = now_seconds;
    baseline.epoch = target.metrics.Label("tandem_worker_info", "epoch").value_or("");
    for (const MetricSample& sample : target.metrics.samples) {
      baseline.values[sample.SeriesKey()] = sample.value;
    }
    Readable entry{&target, role, std::nullopt};
    if (previous != baselines_.end() && now_seconds > previous->second.time_seconds) {
      Deltas deltas;
      deltas.seconds = now_seconds - previous->second.time_seconds;
      deltas.restarted =
          !previous->second.epoch.empty() && baseline.epoch != previous->second.epoch;
      deltas.before = &previous->second;
      deltas.now = &target.metrics;
      entry.deltas = deltas;
    }
    readable.push_back(entry);
    next[target.url] = std::move(baseline);
  }

  if (readable.empty()) {
    baselines_ = std::move(next);
    return absl::UnavailableError(
        targets.empty()
            ? std::string("no process to scrape: no router answered with workers and "
                          "no static target is configured")
            : absl::StrCat("no /metrics could be read (", absl::StrJoin(unreadable, ", "), ")"));
  }

  // Cluster rates: from the routers when one was read, else from the workers.
  std::vector<const Readable*> routers, workers, generators;
  bool any_deltas = false;
  for (const Readable& entry : readable) {
    if (!entry.deltas) continue;
    any_deltas = true;
    if (entry.role == "router") routers.push_back(&entry);
    if (IsWorkerRole(entry.role)) workers.push_back(&entry);
    if (entry.role == "decode" || entry.role == "both") generators.push_back(&entry);
  }
  if (!any_deltas) {
    baselines_ = std::move(next);
    return absl::UnavailableError(
        "first scrape of every target: it is the baseline for rates; the next interval has an "
        "observation");
  }
  if (generators.empty()) generators = workers;  // only prefill workers were read
  double prompt = 0, prompt_rate = 0, cached = 0, requests = 0, generated = 0, generated_rate = 0;
  double ttft_sum = 0, ttft_count = 0, itl_sum = 0, itl_count = 0;
  auto add_histogram = [](const Deltas& d, const std::string& name, double* sum, double* count) {
    *sum += d.Increase(name + "_sum");
    *count += d.Increase(name + "_count");
  };
  if (!routers.empty()) {
    for (const Readable* entry : routers) {
      const Deltas& d = *entry->deltas;
      const double p = d.Increase("tandem_router_prompt_tokens_total");
      prompt += p;
      prompt_rate += p / d.seconds;
      cached += d.Increase("tandem_router_cached_prompt_tokens_total");
      const double g = d.Increase("tandem_router_generated_tokens_total");
      generated += g;
      generated_rate += g / d.seconds;
      const double first_tokens = d.Increase("tandem_router_ttft_seconds_count");
      requests += first_tokens > 0 ? first_tokens : d.Increase("tandem_router_requests_total");
      add_histogram(d, "tandem_router_ttft_seconds", &ttft_sum, &ttft_count);
      add_histogram(d, "tandem_router_itl_seconds", &itl_sum, &itl_count);
      if (!entry->target->metrics.Has("tandem_router_prompt_tokens_total")) {
        notes_.push_back(
            absl::StrCat(entry->target->url, ": no tandem_router_prompt_tokens_total series"));
      }
    }
  } else {
    if (!workers.empty()) {
      notes_.push_back("no router metrics: cluster rates are summed from the workers");
    }
    for (const Readable* entry : workers) {
      const Deltas& d = *entry->deltas;
      const double c = d.Increase("tandem_worker_cached_prompt_tokens_total");
      const double p = d.Increase("tandem_worker_prompt_tokens_total") + c;
      prompt += p;
      prompt_rate += p / d.seconds;
      cached += c;
    }
    for (const Readable* entry : generators) {
      const Deltas& d = *entry->deltas;
      const double g = d.Increase("tandem_worker_generated_tokens_total");
      generated += g;
      generated_rate += g / d.seconds;
      const double generate_requests =
          d.Increase("tandem_worker_requests_total", {{"kind", "generate"}});
      requests += generate_requests > 0 ? generate_requests
                                        : d.Increase("tandem_worker_ttft_seconds_count");
      add_histogram(d, "tandem_worker_ttft_seconds", &ttft_sum, &ttft_count);
      add_histogram(d, "tandem_worker_itl_seconds", &itl_sum, &itl_count);
    }
  }
  o.prompt_tokens_per_second = FiniteOrZero(prompt_rate);
  o.prefix_hit_rate = prompt > 0 ? std::clamp(FiniteOrZero(cached / prompt), 0.0, 1.0) : 0;
  o.output_tokens_per_second = FiniteOrZero(generated_rate);
  o.mean_prompt_tokens = requests > 0 ? FiniteOrZero(prompt / requests) : 0;
  // A decoding sequence holds its prompt and, on average, half of its answer so far.
  const double mean_output = requests > 0 ? FiniteOrZero(generated / requests) : 0;
  o.mean_context_tokens = o.mean_prompt_tokens + mean_output / 2;
  o.ttft_seconds = ttft_count > 0 ? FiniteOrZero(ttft_sum / ttft_count) : 0;
  o.itl_seconds = itl_count > 0 ? FiniteOrZero(itl_sum / itl_count) : 0;

  // Sequences decoding now, and the per-instance load of each role (load mode).
  bool decoders_read = false;
  double running = 0, router_active = 0;
  for (const Readable& entry : readable) {
    const Exposition& metrics = entry.target->metrics;
    if (entry.role == "router") router_active += metrics.Sum("tandem_router_active_requests");
    if (entry.role == "decode" || entry.role == "both") {
      decoders_read = true;
      running += metrics.Sum("tandem_worker_running_requests");
    }
    const bool prefill = entry.role == "prefill";
    if (!prefill && entry.role != "decode") continue;
    const char* gauge =
        prefill ? "tandem_worker_prefill_queue_tokens" : "tandem_worker_active_kv_blocks";
    if (!metrics.Has(gauge)) {
      notes_.push_back(absl::StrCat(entry.target->url, ": no ", gauge,
                                    " series; instance left "
                                    "out of the load"));
      continue;
    }
    InstanceLoad load;
    load.active = std::max(0.0, FiniteOrZero(metrics.Sum(gauge)));
    if (entry.deltas) {
      load.latency_seconds = FiniteOrZero(
          entry.deltas->Mean(prefill ? "tandem_worker_ttft_seconds" : "tandem_worker_itl_seconds"));
    }
    (prefill ? o.prefill_load : o.decode_load).push_back(load);
  }
  o.active_sequences = FiniteOrZero(decoders_read ? running : router_active);
  baselines_ = std::move(next);
  return o;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseWorkerList(
    std::string_view text) {
  nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::DataLossError("the worker list is not JSON");
  if (json.is_object() && json.contains("workers")) json = json["workers"];
  if (!json.is_array()) {
    return absl::DataLossError("the worker list is neither an array nor {\"workers\": [...]}");
  }
  std::vector<std::pair<std::string, std::string>> workers;
  for (const nlohmann::json& worker : json) {
    if (!worker.is_object() || !worker.contains("url") || !worker["url"].is_string() ||
        !worker.contains("role") || !worker["role"].is_string()) {
      return absl::DataLossError(
          absl::StrCat("a worker entry lacks a string 'url' or 'role': ", worker.dump()));
    }
    if (worker.value("draining", false) == true) continue;
    if (worker.contains("ready") && worker["ready"].is_boolean() && !worker["ready"].get<bool>()) {
      continue;
    }
    if (worker.contains("state") && worker["state"].is_string() &&
        worker["state"].get<std::string>() != "ready") {
      continue;
    }
    workers.emplace_back(worker["url"].get<std::string>(), worker["role"].get<std::string>());
  }
  return workers;
}

absl::StatusOr<std::pair<std::string, std::string>> NormalizeScrapeUrl(const std::string& text) {
  std::string url = absl::StrContains(text, "://") ? text : absl::StrCat("http://", text);
  absl::StatusOr<net::ParsedUrl> parsed = net::ParseHttpUrl(url);
  if (!parsed.ok()) return parsed.status();
  std::string base = absl::StrCat("http://", parsed->host, ":", parsed->port);
  if (parsed->host.find(':') != std::string::npos) {
    base = absl::StrCat("http://[", parsed->host, "]:", parsed->port);
  }
  std::string metrics = parsed->target == "/" ? base + "/metrics" : base + parsed->target;
  return std::make_pair(base, metrics);
}

ScrapingMetricsSource::ScrapingMetricsSource(ScrapeOptions options)
    : options_(std::move(options)) {}

std::vector<TargetScrape> ScrapingMetricsSource::ScrapeAll() {
  std::vector<TargetScrape> targets;
  std::vector<std::string> metrics_urls;
  std::set<std::string> seen;
  auto add = [&](const std::string& text, const std::string& role) {
    absl::StatusOr<std::pair<std::string, std::string>> url = NormalizeScrapeUrl(text);
    TargetScrape target;
    target.role = role;
    if (!url.ok()) {
      target.url = text;
      target.status = url.status();
      targets.push_back(std::move(target));
      metrics_urls.emplace_back();
      return;
    }
    if (!seen.insert(url->first).second) return;
    target.url = url->first;
    targets.push_back(std::move(target));
    metrics_urls.push_back(url->second);
  };
  std::vector<std::string> discovery_notes;
  if (!options_.router_url.empty()) {
    absl::StatusOr<std::pair<std::string, std::string>> router =
        NormalizeScrapeUrl(options_.router_url);
    if (router.ok()) {
      net::HttpClientRequest request{.method = "GET", .url = router->first + "/v1/workers"};
      request.timeout = options_.timeout;
      if (!options_.router_api_key.empty()) {
        request.headers = {{"Authorization", absl::StrCat("Bearer ", options_.router_api_key)}};
      }
      absl::StatusOr<net::HttpResult> answer = net::HttpClient::Fetch(request);
      if (answer.ok() && answer->status == 200) {
        absl::StatusOr<std::vector<std::pair<std::string, std::string>>> workers =
            ParseWorkerList(answer->body);
        if (workers.ok()) {
          for (const auto& [url, role] : *workers) add(url, role);
        } else {
          discovery_notes.push_back(
              absl::StrCat(router->first, "/v1/workers: ", workers.status().message()));
        }
      } else if (answer.ok() && answer->status == 404) {
        if (!discovery_missing_logged_) {
          discovery_notes.push_back(
              absl::StrCat(router->first,
                           "/v1/workers: 404, the router does not list its workers; only the "
                           "static --scrape targets are scraped"));
          discovery_missing_logged_ = true;
        }
      } else {
        discovery_notes.push_back(absl::StrCat(
            router->first, "/v1/workers: ",
            answer.ok() ? absl::StrCat("HTTP ", answer->status) : answer.status().message()));
      }
    }
    add(options_.router_url, "router");
  }
  for (const std::string& target : options_.static_targets) add(target, "");

  std::vector<std::future<absl::StatusOr<net::HttpResult>>> fetches;
  for (size_t i = 0; i < targets.size(); ++i) {
    if (!targets[i].status.ok()) {
      fetches.emplace_back();
      continue;
    }
    fetches.push_back(std::async(std::launch::async, [url = metrics_urls[i], this] {
      return net::HttpClient::Fetch({.method = "GET",
                                     .url = url,
                                     .headers = {{"Accept", "text/plain;version=0.0.4"}},
                                     .timeout = options_.timeout});
    }));
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    if (!fetches[i].valid()) continue;
    absl::StatusOr<net::HttpResult> answer = fetches[i].get();
    if (!answer.ok()) {
      targets[i].status = answer.status();
    } else if (answer->status != 200) {
      targets[i].status =
          absl::UnavailableError(absl::StrCat("GET ", metrics_urls[i], " answered HTTP ",
                                              answer->status, ": ", answer->body.substr(0, 200)));
    } else {
      targets[i].metrics = ParsePrometheusText(answer->body);
    }
  }
  discovery_notes_ = std::move(discovery_notes);
  return targets;
}

std::vector<std::string> ScrapingMetricsSource::notes() const {
  std::vector<std::string> notes = discovery_notes_;
  notes.insert(notes.end(), builder_.notes().begin(), builder_.notes().end());
  return notes;
}

absl::StatusOr<Observation> ScrapingMetricsSource::Collect(double now_seconds) {
  std::vector<TargetScrape> targets = ScrapeAll();
  unreadable_.clear();
  for (const TargetScrape& target : targets) {
    if (!target.status.ok()) unreadable_.push_back(target.url);
  }
  return builder_.Build(now_seconds, targets);
}

}  // namespace tandem::planner
