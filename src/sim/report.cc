// The scenario outcome as JSON, a text table and SVG charts (declared in sim/scenario.h).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/svg_plot.h"
#include "nlohmann/json.hpp"
#include "sim/scenario.h"

namespace tandem::sim {
namespace {

// Rounds to 6 significant digits so the JSON reads well and stays byte-stable.
double Round(double value) {
  if (value == 0 || !std::isfinite(value)) return std::isfinite(value) ? value : 0;
  double scale = std::pow(10.0, 5 - static_cast<int>(std::floor(std::log10(std::fabs(value)))));
  return std::round(value * scale) / scale;
}

nlohmann::json Digest(const bench::LatencyDigest& d) {
  return nlohmann::json{{"count", d.count()},
                        {"mean_ms", Round(d.mean() * 1e3)},
                        {"p50_ms", Round(d.Percentile(50) * 1e3)},
                        {"p90_ms", Round(d.Percentile(90) * 1e3)},
                        {"p99_ms", Round(d.Percentile(99) * 1e3)},
                        {"max_ms", Round(d.max() * 1e3)}};
}

nlohmann::json SloJson(const bench::Slo& slo) {
  return {{"ttft_ms", Round(slo.ttft_s * 1e3)},
          {"tpot_ms", Round(slo.tpot_s * 1e3)},
          {"e2e_ms", Round(slo.e2e_s * 1e3)}};
}

nlohmann::json GoodputJson(const GoodputResult& g, int gpus) {
  nlohmann::json probes = nlohmann::json::array();
  for (const auto& [rate, attainment] : g.probes)
    probes.push_back({Round(rate), Round(attainment)});
  return {{"requests_per_second", Round(g.rate)},
          {"requests_per_second_per_gpu", gpus > 0 ? Round(g.rate / gpus) : 0},
          {"at_upper_bound", g.at_upper_bound},
          {"probes", probes}};
}

nlohmann::json ResultJson(const SimResult& r) {
  nlohmann::json out;
  out["requests"] = r.requests;
  out["completed"] = r.completed;
  out["rejected"] = r.rejected;
  out["failed"] = r.failed;
  out["migrated"] = r.migrated;
  out["unfinished"] = r.unfinished;
  out["disaggregated"] = r.disaggregated;
  out["local_prefill"] = r.local_prefill;
  out["slo_attainment"] = Round(r.SloAttainment());
  out["ttft_attainment"] = r.requests ? Round(double(r.ttft_met) / r.requests) : 0;
  out["tpot_attainment"] = r.requests ? Round(double(r.tpot_met) / r.requests) : 0;
  out["prefix_hit_rate"] =
      r.prompt_tokens ? Round(double(r.prefix_hit_tokens) / r.prompt_tokens) : 0;
  out["output_tokens"] = r.output_tokens;
  out["end_s"] = Round(r.end_s);
  out["gpu_hours"] = Round(r.gpu_hours);
  out["transfer_gib"] = Round(r.transfer_bytes / (1 << 30));
  out["ttft"] = Digest(r.ttft);
  out["itl"] = Digest(r.itl);
  out["tpot"] = Digest(r.tpot);
  out["e2e"] = Digest(r.e2e);
  out["kv_transfer_wait"] = Digest(r.transfer);
  for (const auto& [name, usage] : r.roles) {
    out["roles"][name] = {{"instances", usage.instances},
                          {"gpus", usage.gpus},
                          {"gpu_hours", Round(usage.gpu_seconds / 3600)},
                          {"utilization", Round(usage.Utilization())}};
  }
  if (r.planner_decisions > 0) {
    out["planner"] = {{"decisions", r.planner_decisions},
                      {"scale_outs", r.scale_outs},
                      {"scale_ins", r.scale_ins},
                      {"scale_outs_without_room", r.scale_outs_without_room}};
  }
  out["events"] = r.events;
  return out;
}

bench::Series DigestCdf(const std::string& name, const bench::LatencyDigest& d) {
  bench::Series series;
  series.name = name;
  series.step = true;
  if (d.count() == 0) return series;
  for (int i = 0; i <= 200; ++i) {
    double p = i * 0.5;
    series.points.emplace_back(d.Percentile(p) * 1e3, p / 100);
  }
  return series;
}

}  // namespace

std::string OutcomeToJson(const ScenarioOutcome& outcome, bool include_wall_time) {
  nlohmann::json out;
  out["scenario"] = outcome.name;
  if (!outcome.description.empty()) out["description"] = outcome.description;
  out["slo"] = SloJson(outcome.slo);
  if (outcome.goodput_search.has_value()) {
    out["goodput_search"] = {{"low", outcome.goodput_search->low},
                             {"high", outcome.goodput_search->high},
                             {"iterations", outcome.goodput_search->iterations},
                             {"attainment", outcome.goodput_search->attainment}};
  }
  out["variants"] = nlohmann::json::array();
  for (const VariantOutcome& v : outcome.variants) {
    nlohmann::json j;
    j["name"] = v.name;
    j["gpus"] = v.gpus;
    j["result"] = ResultJson(v.result);
    if (include_wall_time) {
      j["result"]["wall_seconds"] = v.result.wall_seconds;
      j["result"]["requests_per_wall_second"] =
          v.result.wall_seconds > 0 ? v.result.requests / v.result.wall_seconds : 0;
    }
    if (v.placement.has_value()) {
      const PlacementOutcome& p = *v.placement;
      j["placement"] = {{"deployments", p.deployments},
                        {"deployments_serving", p.deployments_serving},
                        {"serving", p.serving},
                        {"instances_requested", p.instances_requested},
                        {"instances_complete", p.instances_complete},
                        {"instances_partial", p.instances_partial},
                        {"gpus_total", p.gpus_total},
                        {"gpus_background", p.gpus_background},
                        {"gpus_bound", p.gpus_bound},
                        {"gpus_stranded", p.gpus_stranded},
                        {"notes", p.notes}};
    }
    if (v.goodput.has_value()) j["goodput"] = GoodputJson(*v.goodput, v.gpus);
    for (const GridPoint& point : v.grid) {
      nlohmann::json g = GoodputJson(point.goodput, v.gpus);
      g.erase("probes");
      g["slo"] = SloJson(point.slo);
      j["slo_grid"].push_back(g);
    }
    nlohmann::json timeline = nlohmann::json::array();
    for (const TimelinePoint& t : v.result.timeline) {
      timeline.push_back({Round(t.time_s), Round(t.arrivals_per_second), t.running_sequences,
                          t.queued_prefill_tokens, t.prefill_instances, t.decode_instances,
                          t.aggregated_instances, t.gpus_allocated, Round(t.ttft_p90_s * 1e3),
                          Round(t.slo_attainment)});
    }
    j["timeline_columns"] = {"time_s",
                             "arrivals_per_s",
                             "running_sequences",
                             "queued_prefill_tokens",
                             "prefill_instances",
                             "decode_instances",
                             "aggregated_instances",
                             "gpus_allocated",
                             "ttft_p90_ms",
                             "slo_attainment"};
    j["timeline"] = timeline;
    out["variants"].push_back(j);
  }
  return out.dump(2) + "\n";
}

std::string OutcomeToTable(const ScenarioOutcome& outcome) {
  std::string text = absl::StrFormat("scenario %s", outcome.name);
  if (outcome.slo.ttft_s > 0 || outcome.slo.tpot_s > 0) {
    absl::StrAppendFormat(&text, "  (SLO: TTFT %.0f ms, TPOT %.0f ms)", outcome.slo.ttft_s * 1e3,
                          outcome.slo.tpot_s * 1e3);
  }
  absl::StrAppend(&text, "\n");
  absl::StrAppendFormat(&text, "%-22s %5s %8s %8s %9s %9s %9s %9s %8s %9s %10s\n", "variant",
                        "gpus", "requests", "done", "ttft p50", "ttft p99", "itl p50", "tpot p90",
                        "slo met", "gpu-h", "goodput/s");
  for (const VariantOutcome& v : outcome.variants) {
    const SimResult& r = v.result;
    std::string goodput = "-";
    if (v.goodput.has_value()) {
      goodput = absl::StrFormat("%s%.3g", v.goodput->at_upper_bound ? ">=" : "", v.goodput->rate);
    }
    absl::StrAppendFormat(
        &text, "%-22s %5d %8d %8d %7.1fms %7.1fms %7.1fms %7.1fms %7.1f%% %9.3g %10s\n", v.name,
        v.gpus, r.requests, r.completed, r.ttft.Percentile(50) * 1e3, r.ttft.Percentile(99) * 1e3,
        r.itl.Percentile(50) * 1e3, r.tpot.Percentile(90) * 1e3, 100 * r.SloAttainment(),
        r.gpu_hours, goodput);
    if (v.placement.has_value()) {
      const PlacementOutcome& p = *v.placement;
      absl::StrAppendFormat(&text,
                            "  placement: %d/%d deployments serving, instances %d complete / %d "
                            "partial of %d, %d GPUs stranded of %d bound\n",
                            p.deployments_serving, p.deployments, p.instances_complete,
                            p.instances_partial, p.instances_requested, p.gpus_stranded,
                            p.gpus_bound);
    }
    for (const GridPoint& point : v.grid) {
      absl::StrAppendFormat(
          &text, "  goodput at TTFT %.0f ms, TPOT %.0f ms: %s%.3g req/s (%.3g per GPU)\n",
          point.slo.ttft_s * 1e3, point.slo.tpot_s * 1e3, point.goodput.at_upper_bound ? ">=" : "",
          point.goodput.rate, v.gpus > 0 ? point.goodput.rate / v.gpus : 0);
    }
  }
  return text;
}

std::string OutcomeToSvg(const ScenarioOutcome& outcome) {
  std::vector<bench::Chart> charts;
  bench::Chart ttft{.title = outcome.name + ": TTFT CDF",
                    .x_label = "TTFT (ms)",
                    .y_label = "fraction",
                    .log_x = true};
  bench::Chart itl{.title = "ITL CDF (per token)",
                   .x_label = "inter-token latency (ms)",
                   .y_label = "fraction",
                   .log_x = true};
  bench::Chart tpot{.title = "TPOT CDF (per request)",
                    .x_label = "time per output token (ms)",
                    .y_label = "fraction",
                    .log_x = true};
  bench::Chart load{.title = "load over time", .x_label = "time (s)", .y_label = "arrivals/s"};
  bench::Chart gpus{.title = "GPUs held and serving instances over time",
                    .x_label = "time (s)",
                    .y_label = "count"};
  bench::Chart attainment{.title = "SLO attainment of requests finished per interval",
                          .x_label = "time (s)",
                          .y_label = "fraction"};
  bool dynamic = false;
  for (const VariantOutcome& v : outcome.variants) {
    const SimResult& r = v.result;
    ttft.series.push_back(DigestCdf(v.name, r.ttft));
    itl.series.push_back(DigestCdf(v.name, r.itl));
    tpot.series.push_back(DigestCdf(v.name, r.tpot));
    bench::Series arrivals{.name = v.name}, held{.name = v.name + " GPUs"},
        prefill{.name = v.name + " prefill"}, decode{.name = v.name + " decode"},
        met{.name = v.name};
    for (const TimelinePoint& t : r.timeline) {
      arrivals.points.emplace_back(t.time_s, t.arrivals_per_second);
      held.points.emplace_back(t.time_s, t.gpus_allocated);
      prefill.points.emplace_back(t.time_s, t.prefill_instances);
      decode.points.emplace_back(t.time_s, t.decode_instances);
      met.points.emplace_back(t.time_s, t.slo_attainment);
    }
    if (r.planner_decisions > 0 || r.migrated > 0) dynamic = true;
    load.series.push_back(std::move(arrivals));
    gpus.series.push_back(std::move(held));
    if (r.roles.count("prefill") != 0) {
      gpus.series.push_back(std::move(prefill));
      gpus.series.push_back(std::move(decode));
    }
    attainment.series.push_back(std::move(met));
  }
  charts.push_back(std::move(ttft));
  charts.push_back(std::move(itl));
  charts.push_back(std::move(tpot));
  charts.push_back(std::move(load));
  if (dynamic) {
    charts.push_back(std::move(gpus));
    charts.push_back(std::move(attainment));
  }
  // Goodput per GPU over the SLO grid: one chart per TTFT target, TPOT target on x.
  std::vector<double> ttfts;
  for (const VariantOutcome& v : outcome.variants) {
    for (const GridPoint& p : v.grid) {
      if (std::find(ttfts.begin(), ttfts.end(), p.slo.ttft_s) == ttfts.end())
        ttfts.push_back(p.slo.ttft_s);
    }
  }
  for (double target : ttfts) {
    bench::Chart chart{.title = absl::StrFormat(
                           "goodput per GPU at TTFT <= %.0f ms (90%% attainment)", target * 1e3),
                       .x_label = "TPOT target (ms)",
                       .y_label = "requests/s per GPU"};
    for (const VariantOutcome& v : outcome.variants) {
      bench::Series series{.name = v.name};
      for (const GridPoint& p : v.grid) {
        if (p.slo.ttft_s == target)
          series.points.emplace_back(p.slo.tpot_s * 1e3, v.gpus > 0 ? p.goodput.rate / v.gpus : 0);
      }
      chart.series.push_back(std::move(series));
    }
    charts.push_back(std::move(chart));
  }
  return bench::RenderSvg(charts);
}

}  // namespace tandem::sim
