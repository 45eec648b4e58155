#include "planner/live_loop.h"

#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "core/logging.h"
#include "net/http_server.h"
#include "nlohmann/json.hpp"

namespace tandem::planner {

PlannerLoop::PlannerLoop(Planner planner, MetricsSource& source, ScaleConnector& connector,
                         PlannerLoopOptions options)
    : planner_(std::move(planner)),
      source_(source),
      connector_(connector),
      options_(std::move(options)),
      decision_metrics_(registry_),
      scale_errors_(registry_.AddCounter(
          "tandem_planner_scale_errors_total",
          "Calls to the scale connector (reading or setting counts) that failed.", {"connector"})),
      scrape_errors_(registry_.AddCounter("tandem_planner_scrape_errors_total",
                                          "Reads of a process's /metrics (or of a Prometheus "
                                          "server) that failed, by URL.",
                                          {"target"})),
      skipped_intervals_(registry_.AddCounter(
          "tandem_planner_skipped_intervals_total",
          "Evaluations without an observation (metrics unreadable, first scrape).")),
      evaluations_(registry_.AddCounter("tandem_planner_evaluations_total",
                                        "Evaluations that produced a decision.")),
      last_evaluation_(
          registry_.AddGauge("tandem_planner_last_evaluation_seconds",
                             "Planner time (seconds since it started) of the last evaluation.")) {
  std::random_device random;
  epoch_ = absl::StrFormat("%08x%08x", random(), random());
  scale_errors_.Get(connector_.name());
  skipped_intervals_.Get();
}

PlannerLoop::~PlannerLoop() { Shutdown(); }

absl::Status PlannerLoop::StartServer() {
  if (options_.listen.empty()) return absl::OkStatus();
  const size_t colon = options_.listen.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(options_.listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen '", options_.listen, "': expected HOST:PORT"));
  }
  net::HttpServerOptions server_options;
  server_options.host = options_.listen.substr(0, colon);
  server_options.port = port;
  server_options.threads = 1;
  server_ = std::make_unique<net::HttpServer>(server_options);
  server_->Handle("GET", "/metrics", [this](const std::shared_ptr<net::HttpExchange>& x) {
    x->ReplyText(200, registry_.RenderPrometheus(), "text/plain; version=0.0.4; charset=utf-8");
  });
  server_->Handle("GET", "/health", [this](const std::shared_ptr<net::HttpExchange>& x) {
    x->ReplyJson(200, nlohmann::json{{"status", "ok"}, {"epoch", epoch_}}.dump());
  });
  server_->Handle("GET", "/ready", [this](const std::shared_ptr<net::HttpExchange>& x) {
    const bool ready = evaluated_once_.load() && !stop_requested_.load();
    x->ReplyJson(ready ? 200 : 503, nlohmann::json{{"ready", ready}}.dump());
  });
  server_->Handle("GET", "/v1/decision", [this](const std::shared_ptr<net::HttpExchange>& x) {
    absl::MutexLock lock(&mu_);
    if (last_decision_json_.empty()) {
      x->ReplyError(404, "no decision yet: the first evaluation has not produced one",
                    "no_decision");
    } else {
      x->ReplyJson(200, last_decision_json_);
    }
  });
  server_->Handle("POST", "/admin/drain", [this](const std::shared_ptr<net::HttpExchange>& x) {
    RequestStop();
    x->ReplyJson(202, R"({"draining":true})");
  });
  absl::Status started = server_->Start();
  if (!started.ok()) {
    return absl::Status(started.code(), absl::StrCat("planner HTTP server on ", options_.listen,
                                                     ": ", started.message()));
  }
  return absl::OkStatus();
}

int PlannerLoop::port() const { return server_ ? server_->port() : 0; }

void PlannerLoop::Shutdown() {
  if (shut_down_.exchange(true)) return;
  RequestStop();
  if (server_) server_->Shutdown(absl::Seconds(1));
}

Evaluation PlannerLoop::Evaluate(double now_seconds) {
  Evaluation result;
  last_evaluation_.Get().Set(now_seconds);
  absl::StatusOr<Observation> observation = source_.Collect(now_seconds);
  for (const std::string& target : source_.unreadable()) scrape_errors_.Get(target).Increment();
  // Notes repeat every interval while their cause lasts; log them when they change.
  std::vector<std::string> notes = source_.notes();
  if (notes != last_notes_) {
    for (const std::string& note : notes) LogWarn("planner metrics", {{"note", note}});
    last_notes_ = std::move(notes);
  }
  if (!observation.ok()) {
    result.observation = observation.status();
    skipped_intervals_.Get().Increment();
    LogWarn("planner interval skipped",
            {{"time_s", now_seconds}, {"error", std::string(observation.status().message())}});
    evaluated_once_.store(true);
    return result;
  }
  // Compare with what was asked for, not with what is ready yet: an instance that is starting
  // should not be asked for again, and one that is draining is already gone.
  absl::StatusOr<ReplicaCounts> counts = connector_.Current();
  if (counts.ok()) {
    if (options_.connector_holds_prefill) observation->prefill_instances = counts->prefill;
    if (options_.connector_holds_decode) observation->decode_instances = counts->decode;
  } else if (!absl::IsUnimplemented(counts.status())) {
    scale_errors_.Get(connector_.name()).Increment();
    LogWarn("planner cannot read the replica counts; using the workers it scraped",
            {{"connector", connector_.name()}, {"error", std::string(counts.status().message())}});
  }
  Decision decision = planner_.Decide(*observation);
  result.decided = true;
  result.decision = decision;
  evaluations_.Get().Increment();
  LogDecision(decision);
  decision_metrics_.Record(decision);
  {
    absl::MutexLock lock(&mu_);
    last_decision_json_ = DecisionToJson(decision);
  }
  if (!decision.advisory) {
    // A decision that moves nothing while an earlier one failed to apply retries that one (its
    // cooldown started when it was made); any new change supersedes it.
    const Decision* to_apply = &decision;
    if (!decision.changed && unapplied_.has_value()) to_apply = &*unapplied_;
    if (decision.changed || unapplied_.has_value()) {
      result.apply_status = connector_.Apply(*to_apply);
      if (result.apply_status.ok()) {
        result.applied = true;
        if (to_apply != &decision || decision.changed) {
          LogInfo("planner applied", {{"connector", connector_.name()},
                                      {"prefill", to_apply->prefill.target},
                                      {"decode", to_apply->decode.target},
                                      {"retry", to_apply != &decision}});
        }
        unapplied_.reset();
      } else {
        scale_errors_.Get(connector_.name()).Increment();
        LogError("planner scale call failed; retrying at the next evaluation",
                 {{"connector", connector_.name()},
                  {"prefill", to_apply->prefill.target},
                  {"decode", to_apply->decode.target},
                  {"error", std::string(result.apply_status.message())}});
        unapplied_ = *to_apply;
      }
    }
  }
  evaluated_once_.store(true);
  return result;
}

}  // namespace tandem::planner
