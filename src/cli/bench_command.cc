// `tandem bench`: an OpenAI-compatible streaming load generator and report (TTFT, TPOT, ITL,
// E2E, throughput, goodput under SLOs), against Tandem or any OpenAI-compatible server.
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/load_generator.h"
#include "bench/report.h"
#include "cli/command.h"
#include "core/env.h"
#include "core/status.h"

namespace tandem::cli {
namespace {

struct BenchOptions {
  std::string url = "http://127.0.0.1:8000";
  std::string model;
  std::string api_key;
  std::string endpoint = "completions";
  double rate = 0;
  double burstiness = 1;
  std::string rate_curve;
  int concurrency = 0;
  uint64_t num_requests = 100;
  double duration = 0;
  uint64_t warmup = 0;
  std::string input_len = "1024";
  std::string output_len = "128";
  std::string trace;
  double trace_time_scale = 1;
  int prefix_groups = 0;
  int64_t prefix_len = 0;
  bool no_ignore_eos = false;
  std::string slo;
  std::string percentiles = "50,90,99";
  uint64_t seed = 1;
  std::string json_out;
  std::string svg_out;
  std::string sweep;
  double timeout_s = 600;
  int vocab_size = 1000;
};

absl::Status Run(const BenchOptions& o) {
  bench::LoadOptions load;
  load.base_url = o.url;
  load.model = o.model;
  load.api_key = o.api_key;
  if (o.endpoint == "chat") {
    load.endpoint = bench::Endpoint::kChat;
  } else if (o.endpoint == "completions") {
    load.endpoint = bench::Endpoint::kCompletions;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--endpoint '", o.endpoint, "' is not known (chat, completions)"));
  }
  load.workload.arrivals.rate = o.rate;
  load.workload.arrivals.burstiness = o.burstiness;
  if (!o.rate_curve.empty()) {
    absl::StatusOr<bench::RateCurve> curve = bench::ParseRateCurve(o.rate_curve);
    if (!curve.ok()) return curve.status();
    load.workload.arrivals.curve = *curve;
  }
  absl::StatusOr<bench::LengthSpec> input = bench::ParseLengthSpec(o.input_len);
  if (!input.ok()) return Annotate(input.status(), "--input-len");
  absl::StatusOr<bench::LengthSpec> output = bench::ParseLengthSpec(o.output_len);
  if (!output.ok()) return Annotate(output.status(), "--output-len");
  load.workload.input = *input;
  load.workload.output = *output;
  load.workload.num_requests = o.duration > 0 && o.num_requests == 100 ? 0 : o.num_requests;
  load.workload.duration_s = o.duration;
  load.workload.prefix_groups = o.prefix_groups;
  load.workload.prefix_tokens = o.prefix_len;
  if (!o.trace.empty()) {
    absl::StatusOr<std::vector<bench::RequestSpec>> trace =
        bench::LoadTrace(o.trace, o.trace_time_scale);
    if (!trace.ok()) return trace.status();
    load.trace = std::move(*trace);
    load.workload.trace_path = o.trace;
  }
  load.seed = o.seed;
  load.max_concurrency = o.concurrency;
  load.warmup_requests = o.warmup;
  load.ignore_eos = !o.no_ignore_eos;
  load.request_timeout = absl::Seconds(o.timeout_s);
  load.vocab_size = o.vocab_size;
  if (o.rate <= 0 && o.concurrency <= 0 && o.trace.empty()) {
    return absl::InvalidArgumentError(
        "give --rate (requests/s), --concurrency, or both (or --trace)");
  }
  bench::Slo slo;
  if (!o.slo.empty()) {
    absl::StatusOr<bench::Slo> parsed = bench::ParseSlo(o.slo);
    if (!parsed.ok()) return Annotate(parsed.status(), "--slo");
    slo = *parsed;
  }
  std::vector<double> percentiles;
  for (absl::string_view p : absl::StrSplit(o.percentiles, ',', absl::SkipEmpty())) {
    double value;
    if (!absl::SimpleAtod(p, &value) || value < 0 || value > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat("--percentiles: '", p, "' is not a number between 0 and 100"));
    }
    percentiles.push_back(value);
  }
  std::vector<double> rates;
  if (!o.sweep.empty()) {
    for (absl::string_view r : absl::StrSplit(o.sweep, ',', absl::SkipEmpty())) {
      double value;
      if (!absl::SimpleAtod(r, &value) || !(value > 0)) {
        return absl::InvalidArgumentError(absl::StrCat("--sweep: '", r, "' is not a rate > 0"));
      }
      rates.push_back(value);
    }
  } else {
    rates.push_back(o.rate);
  }
  bool tty = isatty(STDERR_FILENO);
  std::vector<bench::SweepPoint> sweep;
  for (double rate : rates) {
    load.workload.arrivals.rate = rate;
    auto progress = [&](const bench::LoadProgress& p) {
      if (!tty) return;
      uint64_t total = load.workload.num_requests;
      int width = 30;
      int filled = total > 0 ? static_cast<int>(width * p.done / std::max<uint64_t>(1, total)) : 0;
      std::fprintf(stderr, "\r[%-*s] %llu/%llu done, %llu failed, %.1f req/s   ", width,
                   std::string(std::min(filled, width), '#').c_str(),
                   static_cast<unsigned long long>(p.done), static_cast<unsigned long long>(total),
                   static_cast<unsigned long long>(p.failed),
                   p.elapsed_s > 0 ? p.done / p.elapsed_s : 0.0);
    };
    absl::StatusOr<bench::LoadResult> result = bench::RunLoad(load, progress);
    if (tty) std::fprintf(stderr, "\n");
    if (!result.ok()) return result.status();
    bench::BenchSummary summary =
        bench::Summarize(result->records, result->duration_s, slo, percentiles);
    std::printf("============ tandem bench: %s, rate %s ============\n", o.url.c_str(),
                rate > 0 ? absl::StrCat(rate, " req/s").c_str() : "unlimited");
    std::printf("%s", bench::FormatTable(summary).c_str());
    std::map<std::string, std::string> extra = {{"backend", "openai"},
                                                {"base_url", o.url},
                                                {"model_id", o.model},
                                                {"endpoint", o.endpoint},
                                                {"request_rate", absl::StrCat(rate)},
                                                {"max_concurrency", absl::StrCat(o.concurrency)},
                                                {"input_len", o.input_len},
                                                {"output_len", o.output_len}};
    Env& env = Env::Default();
    if (!o.json_out.empty()) {
      std::string path = rates.size() > 1 ? absl::StrCat(o.json_out, ".rate-", rate) : o.json_out;
      absl::Status written = env.WriteFile(path, bench::ToJson(summary, extra));
      if (!written.ok()) return written;
    }
    if (!o.svg_out.empty()) {
      std::string path = rates.size() > 1 ? absl::StrCat(o.svg_out, ".rate-", rate) : o.svg_out;
      absl::Status written = env.WriteFile(path, bench::PlotSvg(result->records, "tandem bench"));
      if (!written.ok()) return written;
    }
    sweep.push_back({rate, summary});
  }
  if (rates.size() > 1) {
    std::printf("goodput knee (highest rate with >= 90%% SLO attainment): %g req/s\n",
                bench::GoodputKnee(sweep));
  }
  return absl::OkStatus();
}

void RegisterBench(CLI::App& root) {
  auto* command = root.add_subcommand(
      "bench", "Load an OpenAI-compatible server and report TTFT, TPOT, ITL and goodput");
  auto o = std::make_shared<BenchOptions>();
  command->add_option("--url", o->url, "Server base URL (without /v1)");
  command->add_option("--model", o->model, "Model name to request");
  command->add_option("--api-key", o->api_key, "Bearer token for the server");
  command->add_option("--endpoint", o->endpoint,
                      "completions (token-id prompts, exact lengths) or chat (text prompts)");
  command->add_option("--rate", o->rate,
                      "Requests per second (0: as fast as --concurrency allows)");
  command->add_option("--burstiness", o->burstiness,
                      "Gamma shape of arrival gaps: 1 Poisson, < 1 burstier");
  command->add_option("--rate-curve", o->rate_curve,
                      "Rate multiplier over time: diurnal:P,LOW,HIGH; burst:T,D,F; ramp:T0,T1,A,B");
  command->add_option("--concurrency", o->concurrency, "At most this many requests at once");
  command->add_option("--num-requests", o->num_requests, "Requests to send");
  command->add_option("--duration", o->duration, "Seconds to send for (instead of a count)");
  command->add_option("--warmup", o->warmup, "Requests sent first and not recorded");
  command->add_option("--input-len", o->input_len,
                      "Prompt tokens: N, uniform:A,B, normal:M,S or lognormal:MEDIAN,SIGMA");
  command->add_option("--output-len", o->output_len, "Output tokens (same forms)");
  command->add_option("--trace", o->trace,
                      "CSV trace (timestamp, input and output tokens) to replay");
  command->add_option("--trace-time-scale", o->trace_time_scale, "> 1 slows the trace down");
  command->add_option("--prefix-groups", o->prefix_groups, "Groups of requests sharing a prefix");
  command->add_option("--prefix-len", o->prefix_len, "Shared prefix tokens per group");
  command->add_flag("--no-ignore-eos", o->no_ignore_eos,
                    "Let the model stop early (default: exactly --output-len tokens)");
  command->add_option("--slo", o->slo, "Targets for goodput: ttft=MS,tpot=MS[,e2e=MS]");
  command->add_option("--percentiles", o->percentiles, "Percentiles to report, e.g. 50,90,99");
  command->add_option("--seed", o->seed, "Seed of the workload");
  command->add_option("--json", o->json_out, "Write results as JSON (vllm bench field names)");
  command->add_option("--svg", o->svg_out, "Write latency CDFs and a timeline as SVG");
  command->add_option("--sweep", o->sweep, "Comma-separated rates to run one after another");
  command->add_option("--timeout", o->timeout_s, "Seconds before one request is abandoned");
  command->add_option("--vocab-size", o->vocab_size,
                      "Token ids of completions prompts stay below this");
  SetAction(command, [command, o] {
    absl::Status status = Run(*o);
    return status.ok() ? 0 : ReportError(command, status);
  });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterBench);
}  // namespace tandem::cli
