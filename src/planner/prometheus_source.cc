#include "planner/prometheus_source.h"

#include <cmath>
#include <map>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"
#include "planner/internal/finite.h"

namespace tandem::planner {
namespace {

using nlohmann::json;

using internal::FiniteOrZero;

std::string UrlEncode(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      absl::StrAppendFormat(&out, "%%%02X", c);
    }
  }
  return out;
}

absl::StatusOr<double> SampleValue(const json& pair) {
  if (!pair.is_array() || pair.size() != 2 || !pair[0].is_number() || !pair[1].is_string()) {
    return absl::DataLossError(absl::StrCat("a sample is not [time, \"value\"]: ", pair.dump()));
  }
  const std::string text = pair[1].get<std::string>();
  double value = 0;
  if (text == "NaN") return std::nan("");
  if (text == "+Inf") return INFINITY;
  if (text == "-Inf") return -INFINITY;
  if (!absl::SimpleAtod(text, &value)) {
    return absl::DataLossError(absl::StrCat("a sample value is not a number: ", text));
  }
  return value;
}

}  // namespace

absl::StatusOr<std::vector<PrometheusSeries>> ParsePrometheusResponse(std::string_view text) {
  json answer = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object() || !answer.contains("status") || !answer["status"].is_string()) {
    return absl::DataLossError("not a Prometheus API answer (no \"status\")");
  }
  if (answer["status"] != "success") {
    return absl::InvalidArgumentError(
        absl::StrCat("Prometheus: ", answer.value("errorType", std::string("error")), ": ",
                     answer.value("error", std::string("(no message)"))));
  }
  if (!answer.contains("data") || !answer["data"].is_object() ||
      !answer["data"].contains("resultType") || !answer["data"].contains("result")) {
    return absl::DataLossError("Prometheus answer without data.resultType and data.result");
  }
  const json& data = answer["data"];
  const std::string type =
      data["resultType"].is_string() ? data["resultType"].get<std::string>() : std::string();
  std::vector<PrometheusSeries> series;
  if (type == "scalar") {
    absl::StatusOr<double> value = SampleValue(data["result"]);
    if (!value.ok()) return value.status();
    series.push_back({{}, {{data["result"][0].get<double>(), *value}}});
    return series;
  }
  if ((type != "vector" && type != "matrix") || !data["result"].is_array()) {
    return absl::DataLossError(absl::StrCat("unexpected Prometheus resultType '", type, "'"));
  }
  for (const json& item : data["result"]) {
    PrometheusSeries one;
    if (item.contains("metric") && item["metric"].is_object()) {
      for (const auto& [key, value] : item["metric"].items()) {
        if (value.is_string()) one.labels[key] = value.get<std::string>();
      }
    }
    if (type == "vector") {
      if (!item.contains("value")) return absl::DataLossError("a vector sample without 'value'");
      absl::StatusOr<double> value = SampleValue(item["value"]);
      if (!value.ok()) return value.status();
      one.points.emplace_back(item["value"][0].get<double>(), *value);
    } else {
      if (!item.contains("values") || !item["values"].is_array()) {
        return absl::DataLossError("a matrix series without 'values'");
      }
      for (const json& pair : item["values"]) {
        absl::StatusOr<double> value = SampleValue(pair);
        if (!value.ok()) return value.status();
        one.points.emplace_back(pair[0].get<double>(), *value);
      }
    }
    series.push_back(std::move(one));
  }
  return series;
}

PrometheusMetricsSource::PrometheusMetricsSource(PrometheusOptions options)
    : options_(std::move(options)) {
  while (!options_.url.empty() && options_.url.back() == '/') options_.url.pop_back();
}

std::string PrometheusMetricsSource::Expression(const std::string& field) const {
  const std::string window =
      absl::StrCat("[", static_cast<int64_t>(std::ceil(options_.window_seconds)), "s]");
  auto select = [&](const std::string& name, const std::string& matchers = "") {
    std::string inside = matchers;
    if (!options_.selector.empty()) {
      absl::StrAppend(&inside, inside.empty() ? "" : ",", options_.selector);
    }
    return absl::StrCat(name, "{", inside, "}");
  };
  auto rate = [&](const std::string& name) {
    return absl::StrCat("rate(", select(name), window, ")");
  };
  auto workers_of = [&](const std::string& roles) {
    return absl::StrCat(" and on(instance) ",
                        select("tandem_worker_info", absl::StrCat("role=~\"", roles, "\"")));
  };
  const std::string generators = workers_of("decode|both");
  auto sum_rate_of_generators = [&](const std::string& name) {
    return absl::StrCat("sum(", rate(name), generators, ")");
  };
  auto mean = [&](const std::string& histogram) {
    return absl::StrCat("sum(", rate(absl::StrCat(histogram, "_sum")), ") / sum(",
                        rate(absl::StrCat(histogram, "_count")), ")");
  };
  auto per_instance_mean = [&](const std::string& histogram, const std::string& role) {
    return absl::StrCat("(", rate(absl::StrCat(histogram, "_sum")), " / ",
                        rate(absl::StrCat(histogram, "_count")), ")", workers_of(role));
  };
  if (field == "router_prompt")
    return absl::StrCat("sum(", rate("tandem_router_prompt_tokens_total"), ")");
  if (field == "router_cached") {
    return absl::StrCat("sum(", rate("tandem_router_cached_prompt_tokens_total"), ")");
  }
  if (field == "router_generated") {
    return absl::StrCat("sum(", rate("tandem_router_generated_tokens_total"), ")");
  }
  if (field == "router_requests")
    return absl::StrCat("sum(", rate("tandem_router_ttft_seconds_count"), ")");
  if (field == "router_ttft") return mean("tandem_router_ttft_seconds");
  if (field == "router_itl") return mean("tandem_router_itl_seconds");
  if (field == "worker_prompt") {
    return absl::StrCat("sum(rate(",
                        select("", "__name__=~\"tandem_worker_(cached_)?prompt_tokens_total\""),
                        window, "))");
  }
  if (field == "worker_cached") {
    return absl::StrCat("sum(", rate("tandem_worker_cached_prompt_tokens_total"), ")");
  }
  if (field == "worker_generated")
    return sum_rate_of_generators("tandem_worker_generated_tokens_total");
  if (field == "worker_requests") return sum_rate_of_generators("tandem_worker_ttft_seconds_count");
  if (field == "worker_ttft") {
    return absl::StrCat(sum_rate_of_generators("tandem_worker_ttft_seconds_sum"), " / ",
                        sum_rate_of_generators("tandem_worker_ttft_seconds_count"));
  }
  if (field == "worker_itl") {
    return absl::StrCat(sum_rate_of_generators("tandem_worker_itl_seconds_sum"), " / ",
                        sum_rate_of_generators("tandem_worker_itl_seconds_count"));
  }
  if (field == "active_sequences") {
    return absl::StrCat("sum(", select("tandem_worker_running_requests"), generators, ")");
  }
  if (field == "prefill_instances") {
    return absl::StrCat("count(", select("tandem_worker_info", "role=\"prefill\""), ")");
  }
  if (field == "decode_instances") {
    return absl::StrCat("count(", select("tandem_worker_info", "role=\"decode\""), ")");
  }
  if (field == "prefill_active") {
    return absl::StrCat(select("tandem_worker_prefill_queue_tokens"), workers_of("prefill"));
  }
  if (field == "decode_active") {
    return absl::StrCat(select("tandem_worker_active_kv_blocks"), workers_of("decode"));
  }
  if (field == "prefill_latency") return per_instance_mean("tandem_worker_ttft_seconds", "prefill");
  if (field == "decode_latency") return per_instance_mean("tandem_worker_itl_seconds", "decode");
  return "";
}

absl::StatusOr<std::vector<PrometheusSeries>> PrometheusMetricsSource::Query(
    const std::string& expression, double start_seconds, double end_seconds, double step_seconds) {
  std::string url;
  if (step_seconds > 0) {
    url = absl::StrFormat("%s/api/v1/query_range?query=%s&start=%.3f&end=%.3f&step=%.3f",
                          options_.url, UrlEncode(expression), start_seconds, end_seconds,
                          step_seconds);
  } else {
    url = absl::StrCat(options_.url, "/api/v1/query?query=", UrlEncode(expression));
  }
  absl::StatusOr<net::HttpResult> answer =
      net::HttpClient::Fetch({.method = "GET", .url = url, .timeout = options_.timeout});
  if (!answer.ok()) {
    return absl::Status(answer.status().code(), absl::StrCat("Prometheus at ", options_.url, ": ",
                                                             answer.status().message()));
  }
  // Prometheus answers errors (bad query 400, timeout 503, ...) with its JSON error body.
  absl::StatusOr<std::vector<PrometheusSeries>> series = ParsePrometheusResponse(answer->body);
  if (!series.ok() && answer->status != 200 && absl::IsDataLoss(series.status())) {
    return absl::UnavailableError(
        absl::StrCat("Prometheus at ", options_.url, " answered HTTP ", answer->status));
  }
  if (!series.ok()) {
    return absl::Status(series.status().code(),
                        absl::StrCat(series.status().message(), " (query: ", expression, ")"));
  }
  return series;
}

absl::StatusOr<std::vector<Observation>> PrometheusMetricsSource::Evaluate(double start, double end,
                                                                           double step) {
  const bool range = step > 0;
  notes_.clear();
  unreadable_.clear();
  // Values by point time (ms; 0 for an instant query) and field.
  std::map<int64_t, std::map<std::string, double>> values;
  std::map<int64_t, std::map<std::string, std::map<std::string, double>>> per_instance;
  auto key_of = [&](double time) -> int64_t {
    return range ? static_cast<int64_t>(std::llround(time * 1000)) : 0;
  };
  auto run = [&](const std::string& field, bool by_instance) -> absl::StatusOr<bool> {
    absl::StatusOr<std::vector<PrometheusSeries>> series =
        Query(Expression(field), start, end, step);
    if (!series.ok()) return series.status();
    for (const PrometheusSeries& one : *series) {
      for (const auto& [time, value] : one.points) {
        if (by_instance) {
          auto it = one.labels.find("instance");
          per_instance[key_of(time)][field][it == one.labels.end() ? "" : it->second] = value;
        } else {
          values[key_of(time)][field] = value;
        }
      }
    }
    return !series->empty();
  };
  absl::StatusOr<bool> has_router = run("router_prompt", false);
  if (!has_router.ok()) {
    unreadable_.push_back(options_.url);
    return has_router.status();
  }
  const std::string source = *has_router ? "router" : "worker";
  if (!*has_router) notes_.push_back("no router series in Prometheus: rates from the workers");
  std::vector<std::pair<std::string, bool>> fields = {
      {source + "_cached", false},  {source + "_generated", false}, {source + "_requests", false},
      {source + "_ttft", false},    {source + "_itl", false},       {"active_sequences", false},
      {"prefill_instances", false}, {"decode_instances", false},    {"prefill_active", true},
      {"decode_active", true},      {"prefill_latency", true},      {"decode_latency", true}};
  if (!*has_router) fields.insert(fields.begin(), {"worker_prompt", false});
  for (const auto& [field, by_instance] : fields) {
    absl::StatusOr<bool> done = run(field, by_instance);
    if (!done.ok()) {
      unreadable_.push_back(options_.url);
      return done.status();
    }
  }
  std::set<int64_t> times;
  for (const auto& [time, unused] : values) times.insert(time);
  for (const auto& [time, unused] : per_instance) times.insert(time);
  if (times.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "Prometheus at ", options_.url, " has no tandem_* series yet (is it scraping the roles?)"));
  }
  std::vector<Observation> observations;
  for (int64_t time : times) {
    std::map<std::string, double>& v = values[time];
    auto get = [&](const std::string& field) {
      auto it = v.find(field);
      return it == v.end() ? 0.0 : FiniteOrZero(it->second);
    };
    Observation o;
    o.time_seconds = time / 1000.0;
    const double prompt = get(source + "_prompt");
    const double requests = get(source + "_requests");
    o.prompt_tokens_per_second = prompt;
    o.prefix_hit_rate = prompt > 0 ? std::clamp(get(source + "_cached") / prompt, 0.0, 1.0) : 0;
    o.output_tokens_per_second = get(source + "_generated");
    o.mean_prompt_tokens = requests > 0 ? prompt / requests : 0;
    o.mean_context_tokens =
        o.mean_prompt_tokens + (requests > 0 ? o.output_tokens_per_second / requests / 2 : 0);
    o.ttft_seconds = get(source + "_ttft");
    o.itl_seconds = get(source + "_itl");
    o.active_sequences = get("active_sequences");
    o.prefill_instances = static_cast<int>(get("prefill_instances"));
    o.decode_instances = static_cast<int>(get("decode_instances"));
    for (auto [role, loads] :
         {std::pair<std::string, std::vector<InstanceLoad>*>{"prefill", &o.prefill_load},
          {"decode", &o.decode_load}}) {
      std::map<std::string, std::map<std::string, double>>& fields_here = per_instance[time];
      for (const auto& [instance, active] : fields_here[role + "_active"]) {
        InstanceLoad load;
        load.active = std::max(0.0, FiniteOrZero(active));
        auto latency = fields_here[role + "_latency"].find(instance);
        if (latency != fields_here[role + "_latency"].end()) {
          load.latency_seconds = std::max(0.0, FiniteOrZero(latency->second));
        }
        loads->push_back(load);
      }
    }
    observations.push_back(std::move(o));
  }
  return observations;
}

absl::StatusOr<Observation> PrometheusMetricsSource::Collect(double now_seconds) {
  absl::StatusOr<std::vector<Observation>> observations = Evaluate(0, 0, 0);
  if (!observations.ok()) return observations.status();
  Observation o = observations->front();
  o.time_seconds = now_seconds;
  return o;
}

absl::StatusOr<std::vector<Observation>> PrometheusMetricsSource::History(double now_seconds,
                                                                          double seconds,
                                                                          double step_seconds) {
  if (!(seconds > 0) || !(step_seconds > 0)) {
    return absl::InvalidArgumentError("a history needs a positive length and step");
  }
  const double server_now = absl::ToUnixMillis(absl::Now()) / 1000.0;
  absl::StatusOr<std::vector<Observation>> observations =
      Evaluate(server_now - seconds, server_now, step_seconds);
  if (!observations.ok()) return observations.status();
  for (Observation& o : *observations) o.time_seconds = now_seconds - (server_now - o.time_seconds);
  return observations;
}

}  // namespace tandem::planner
