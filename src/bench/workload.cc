#include "bench/workload.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace tandem::bench {
namespace {

constexpr double kPi = 3.14159265358979323846;

absl::StatusOr<std::vector<double>> ParseNumbers(absl::string_view text, size_t count,
                                                 const std::string& what) {
  std::vector<double> values;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    double value;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(part), &value) || !std::isfinite(value)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", part, "' is not a number"));
    }
    values.push_back(value);
  }
  if (values.size() != count) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected ", count, " numbers, got ", values.size()));
  }
  return values;
}

}  // namespace

int64_t LengthSpec::Sample(Random& rng) const {
  double value = a;
  switch (kind) {
    case Kind::kFixed:
      value = a;
      break;
    case Kind::kUniform:
      value = static_cast<double>(rng.UniformInt(static_cast<int64_t>(a), static_cast<int64_t>(b)));
      break;
    case Kind::kNormal:
      value = rng.Normal(a, b);
      break;
    case Kind::kLogNormal:
      value = rng.LogNormal(std::log(a), b);
      break;
  }
  int64_t rounded = static_cast<int64_t>(std::llround(value));
  return std::clamp(rounded, min, max);
}

double LengthSpec::Mean() const {
  switch (kind) {
    case Kind::kFixed:
      return a;
    case Kind::kUniform:
      return (a + b) / 2;
    case Kind::kNormal:
      return a;
    case Kind::kLogNormal:
      return a * std::exp(b * b / 2);
  }
  return a;
}

std::string LengthSpec::ToString() const {
  switch (kind) {
    case Kind::kFixed:
      return absl::StrCat(a);
    case Kind::kUniform:
      return absl::StrCat("uniform:", a, ",", b);
    case Kind::kNormal:
      return absl::StrCat("normal:", a, ",", b);
    case Kind::kLogNormal:
      return absl::StrCat("lognormal:", a, ",", b);
  }
  return "";
}

absl::StatusOr<LengthSpec> ParseLengthSpec(const std::string& text) {
  std::string what = absl::StrCat("length distribution '", text, "'");
  LengthSpec spec;
  std::vector<std::string> parts = absl::StrSplit(text, absl::MaxSplits(':', 1));
  std::string kind = absl::AsciiStrToLower(absl::StripAsciiWhitespace(parts[0]));
  if (parts.size() == 1) {
    auto values = ParseNumbers(parts[0], 1, what);
    if (!values.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(what,
                       " is not known (allowed: N, uniform:LOW,HIGH, normal:MEAN,STDDEV, "
                       "lognormal:MEDIAN,SIGMA)"));
    }
    spec.kind = LengthSpec::Kind::kFixed;
    spec.a = (*values)[0];
  } else {
    auto values = ParseNumbers(parts[1], 2, what);
    if (!values.ok()) return values.status();
    spec.a = (*values)[0];
    spec.b = (*values)[1];
    if (kind == "uniform") {
      spec.kind = LengthSpec::Kind::kUniform;
      if (spec.b < spec.a) {
        return absl::InvalidArgumentError(absl::StrCat(what, ": HIGH is below LOW"));
      }
    } else if (kind == "normal") {
      spec.kind = LengthSpec::Kind::kNormal;
    } else if (kind == "lognormal") {
      spec.kind = LengthSpec::Kind::kLogNormal;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": kind '", kind, "' is not known (allowed: uniform, normal, lognormal)"));
    }
    if (spec.b < 0) return absl::InvalidArgumentError(absl::StrCat(what, ": spread is negative"));
  }
  if (spec.a < 1) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": lengths must be at least 1 token"));
  }
  return spec;
}

double RateCurve::Multiplier(double t) const {
  double m = 1;
  for (const Component& c : components) {
    switch (c.kind) {
      case Component::Kind::kDiurnal: {
        double mid = (c.p[1] + c.p[2]) / 2, amplitude = (c.p[2] - c.p[1]) / 2;
        m *= mid + amplitude * std::sin(2 * kPi * t / c.p[0]);
        break;
      }
      case Component::Kind::kBurst:
        if (t >= c.p[0] && t < c.p[0] + c.p[1]) m *= c.p[2];
        break;
      case Component::Kind::kRamp: {
        double f = t <= c.p[0] ? 0 : t >= c.p[1] ? 1 : (t - c.p[0]) / (c.p[1] - c.p[0]);
        m *= c.p[2] + (c.p[3] - c.p[2]) * f;
        break;
      }
    }
  }
  return std::max(0.0, m);
}

double RateCurve::MaxMultiplier() const {
  double m = 1;
  for (const Component& c : components) {
    switch (c.kind) {
      case Component::Kind::kDiurnal:
        m *= std::max(c.p[1], c.p[2]);
        break;
      case Component::Kind::kBurst:
        m *= std::max(1.0, c.p[2]);
        break;
      case Component::Kind::kRamp:
        m *= std::max(c.p[2], c.p[3]);
        break;
    }
  }
  return m;
}

absl::StatusOr<RateCurve> ParseRateCurve(const std::string& text) {
  RateCurve curve;
  for (absl::string_view item : absl::StrSplit(text, ';', absl::SkipWhitespace())) {
    std::string what = absl::StrCat("rate curve '", item, "'");
    std::vector<std::string> parts = absl::StrSplit(item, absl::MaxSplits(':', 1));
    std::string kind = absl::AsciiStrToLower(absl::StripAsciiWhitespace(parts[0]));
    RateCurve::Component component{};
    size_t count;
    if (kind == "diurnal") {
      component.kind = RateCurve::Component::Kind::kDiurnal;
      count = 3;
    } else if (kind == "burst") {
      component.kind = RateCurve::Component::Kind::kBurst;
      count = 3;
    } else if (kind == "ramp") {
      component.kind = RateCurve::Component::Kind::kRamp;
      count = 4;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": kind '", kind, "' is not known (allowed: diurnal, burst, ramp)"));
    }
    if (parts.size() != 2) return absl::InvalidArgumentError(absl::StrCat(what, ": no values"));
    auto values = ParseNumbers(parts[1], count, what);
    if (!values.ok()) return values.status();
    for (size_t i = 0; i < count; ++i) component.p[i] = (*values)[i];
    bool ok = true;
    if (component.kind == RateCurve::Component::Kind::kDiurnal) {
      ok = component.p[0] > 0 && component.p[1] >= 0 && component.p[2] >= component.p[1];
    } else if (component.kind == RateCurve::Component::Kind::kBurst) {
      ok = component.p[1] > 0 && component.p[2] >= 0;
    } else {
      ok = component.p[1] > component.p[0] && component.p[2] >= 0 && component.p[3] >= 0;
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat(what,
                       ": out of range (diurnal:PERIOD>0,LOW>=0,HIGH>=LOW; burst:START,DURATION>0,"
                       "FACTOR>=0; ramp:START,END>START,FROM>=0,TO>=0)"));
    }
    curve.components.push_back(component);
  }
  return curve;
}

absl::Status ValidateWorkload(const WorkloadSpec& spec) {
  if (!(spec.arrivals.rate >= 0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("request rate ", spec.arrivals.rate, " is negative (use a rate >= 0)"));
  }
  if (!(spec.arrivals.burstiness > 0)) {
    return absl::InvalidArgumentError("burstiness must be > 0 (1 = Poisson)");
  }
  if (spec.trace_path.empty() && spec.num_requests == 0 && spec.duration_s <= 0) {
    return absl::InvalidArgumentError("give a request count or a duration");
  }
  if (spec.duration_s < 0) return absl::InvalidArgumentError("duration is negative");
  if (spec.prefix_groups < 0 || spec.prefix_tokens < 0) {
    return absl::InvalidArgumentError("prefix groups and prefix tokens must be >= 0");
  }
  if (!(spec.trace_time_scale > 0)) {
    return absl::InvalidArgumentError("trace time scale must be > 0");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<RequestSpec>> LoadTrace(const std::string& path, double time_scale) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("trace '", path, "' cannot be opened"));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return ParseTrace(buffer.str(), path, time_scale);
}

absl::StatusOr<std::vector<RequestSpec>> ParseTrace(const std::string& text,
                                                    const std::string& name, double time_scale) {
  std::vector<RequestSpec> requests;
  int time_column = -1, input_column = -1, output_column = -1;
  size_t columns = 0;
  int line_number = 0;
  double previous = -std::numeric_limits<double>::infinity();
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_number;
    line = absl::StripTrailingAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> fields = absl::StrSplit(line, ',');
    if (time_column < 0) {
      for (size_t i = 0; i < fields.size(); ++i) {
        std::string field = absl::AsciiStrToLower(absl::StripAsciiWhitespace(fields[i]));
        if (field == "timestamp" || field == "arrived_at" || field == "time") time_column = i;
        if (field == "input_tokens" || field == "num_prefill_tokens" || field == "prompt_tokens") {
          input_column = i;
        }
        if (field == "output_tokens" || field == "num_decode_tokens" ||
            field == "completion_tokens") {
          output_column = i;
        }
      }
      if (time_column < 0 || input_column < 0 || output_column < 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            name, ":", line_number,
            ": header must name a time column (timestamp, arrived_at, time), an input column "
            "(input_tokens, num_prefill_tokens, prompt_tokens) and an output column "
            "(output_tokens, num_decode_tokens, completion_tokens)"));
      }
      columns = fields.size();
      continue;
    }
    if (fields.size() != columns) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_number, ": expected ", columns,
                                                     " fields, got ", fields.size()));
    }
    RequestSpec request;
    double input, output;
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(fields[time_column]), &request.arrival_s) ||
        !std::isfinite(request.arrival_s) || request.arrival_s < 0) {
      return absl::InvalidArgumentError(absl::StrCat(name, ":", line_number, ": time '",
                                                     fields[time_column],
                                                     "' is not a non-negative number"));
    }
    if (!absl::SimpleAtod(absl::StripAsciiWhitespace(fields[input_column]), &input) ||
        !(input >= 1) ||
        !absl::SimpleAtod(absl::StripAsciiWhitespace(fields[output_column]), &output) ||
        !(output >= 1) || input > (1 << 24) || output > (1 << 24)) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", line_number, ": token counts must be integers >= 1"));
    }
    if (request.arrival_s < previous) {
      return absl::InvalidArgumentError(
          absl::StrCat(name, ":", line_number, ": times must not go backwards"));
    }
    previous = request.arrival_s;
    request.arrival_s *= time_scale;
    request.input_tokens = static_cast<int64_t>(input);
    request.output_tokens = static_cast<int64_t>(output);
    request.index = requests.size();
    requests.push_back(request);
  }
  if (time_column < 0) return absl::InvalidArgumentError(absl::StrCat(name, ": empty trace"));
  if (requests.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": the trace has no requests"));
  }
  // Start the replay at time 0.
  double origin = requests.front().arrival_s;
  for (RequestSpec& request : requests) request.arrival_s -= origin;
  return requests;
}

WorkloadGenerator::WorkloadGenerator(WorkloadSpec spec, uint64_t seed,
                                     std::vector<RequestSpec> trace)
    : spec_(std::move(spec)), rng_(seed), trace_(std::move(trace)) {}

double WorkloadGenerator::NextArrival() {
  const ArrivalSpec& a = spec_.arrivals;
  if (!(a.rate > 0) || std::isinf(a.rate)) return 0;
  double max_multiplier = a.curve.MaxMultiplier();
  if (max_multiplier <= 0) return std::numeric_limits<double>::infinity();
  double peak = a.rate * max_multiplier;
  // Thinning: candidates at the peak rate, kept with probability rate(t) / peak.
  while (true) {
    double gap = a.burstiness == 1 ? rng_.Exponential(peak)
                                   : rng_.Gamma(a.burstiness, 1.0 / (a.burstiness * peak));
    clock_s_ += gap;
    if (a.curve.components.empty() ||
        rng_.Uniform() * max_multiplier < a.curve.Multiplier(clock_s_)) {
      return clock_s_;
    }
  }
}

std::optional<RequestSpec> WorkloadGenerator::Next() {
  RequestSpec request;
  if (!trace_.empty() || !spec_.trace_path.empty()) {
    if (emitted_ >= trace_.size()) return std::nullopt;
    if (spec_.num_requests > 0 && emitted_ >= spec_.num_requests) return std::nullopt;
    request = trace_[emitted_];
    if (spec_.duration_s > 0 && request.arrival_s > spec_.duration_s) return std::nullopt;
  } else {
    if (spec_.num_requests > 0 && emitted_ >= spec_.num_requests) return std::nullopt;
    request.arrival_s = NextArrival();
    if (spec_.duration_s > 0 && request.arrival_s > spec_.duration_s) return std::nullopt;
    request.input_tokens = spec_.input.Sample(rng_);
    request.output_tokens = spec_.output.Sample(rng_);
  }
  request.index = emitted_++;
  if (spec_.prefix_groups > 0 && spec_.prefix_tokens > 0) {
    request.prefix_group = static_cast<int32_t>(rng_.UniformInt(0, spec_.prefix_groups - 1));
    request.prefix_tokens = std::min(spec_.prefix_tokens, request.input_tokens);
  }
  return request;
}

}  // namespace tandem::bench
