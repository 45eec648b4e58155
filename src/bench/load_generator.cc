#include "bench/load_generator.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/strings/str_cat.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"

namespace tandem::bench {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

const char* const kWords[] = {"time",  "river", "light",  "stone",  "north",  "paper",  "garden",
                              "voice", "cloud", "table",  "silver", "train",  "window", "letter",
                              "field", "music", "bridge", "forest", "market", "engine"};

// Deterministic prompt material: a shared prefix per group, then words unique to the request.
std::vector<int32_t> PromptIds(const RequestSpec& r, int32_t vocab, uint64_t seed) {
  std::vector<int32_t> ids;
  ids.reserve(r.input_tokens);
  Random prefix(seed ^ (0x9e37u + static_cast<uint64_t>(r.prefix_group) * 7919));
  Random rest(seed ^ (r.index * 0x100000001b3ull + 17));
  for (int64_t i = 0; i < r.input_tokens; ++i) {
    Random& rng = i < r.prefix_tokens ? prefix : rest;
    ids.push_back(static_cast<int32_t>(rng.UniformInt(1, std::max(2, vocab) - 1)));
  }
  return ids;
}

std::string PromptText(const RequestSpec& r, uint64_t seed) {
  std::string text;
  for (int32_t id : PromptIds(r, 20, seed)) {
    if (!text.empty()) text.push_back(' ');
    text.append(kWords[id % 20]);
  }
  return text;
}

std::string Body(const LoadOptions& options, const RequestSpec& r) {
  json body = {{"model", options.model},
               {"max_tokens", r.output_tokens},
               {"stream", true},
               {"stream_options", {{"include_usage", true}}},
               {"temperature", 0}};
  if (options.ignore_eos) body["ignore_eos"] = true;
  if (options.endpoint == Endpoint::kCompletions) {
    body["prompt"] = PromptIds(r, options.vocab_size, options.seed);
  } else {
    body["messages"] = json::array({{{"role", "user"}, {"content", PromptText(r, options.seed)}}});
  }
  return body.dump();
}

struct Run {
  std::mutex mu;
  std::condition_variable changed;
  int in_flight = 0;
  uint64_t done = 0;
  uint64_t failed = 0;
};

}  // namespace

absl::StatusOr<LoadResult> RunLoad(const LoadOptions& options,
                                   const std::function<void(const LoadProgress&)>& progress) {
  if (options.model.empty()) return absl::InvalidArgumentError("--model is required");
  absl::Status valid = ValidateWorkload(options.workload);
  if (!valid.ok()) return valid;
  std::string path =
      options.endpoint == Endpoint::kChat ? "/v1/chat/completions" : "/v1/completions";
  absl::StatusOr<net::ParsedUrl> url = net::ParseHttpUrl(options.base_url + path);
  if (!url.ok()) return url.status();

  // Closed loop for a duration (no arrival rate, no count, no trace): requests are made as
  // slots free up until the time is over, so there is no list to make in advance.
  const WorkloadSpec& w = options.workload;
  const bool open_ended = w.duration_s > 0 && w.num_requests == 0 && !(w.arrivals.rate > 0) &&
                          w.trace_path.empty() && options.trace.empty();
  if (open_ended && options.max_concurrency <= 0) {
    return absl::InvalidArgumentError(
        "a duration without a request rate needs --concurrency (else it would send without "
        "limit)");
  }
  std::vector<RequestSpec> requests;
  WorkloadGenerator generator(options.workload, options.seed, options.trace);
  if (open_ended) {
    for (uint64_t i = 0; i < std::max<uint64_t>(options.warmup_requests, 1); ++i) {
      if (auto r = generator.Next()) requests.push_back(*r);
    }
  } else {
    while (auto r = generator.Next()) requests.push_back(*r);
  }
  if (requests.empty()) return absl::InvalidArgumentError("the workload has no requests");

  net::EventLoop loop("bench");
  auto run = std::make_shared<Run>();
  std::vector<RequestRecord> warmup(options.warmup_requests);
  LoadResult result;
  // A deque: the records' addresses stay put while requests are added.
  std::deque<RequestRecord> records;

  auto send = [&](const RequestSpec& spec, RequestRecord* record, Clock::time_point origin) {
    record->index = spec.index;
    record->input_tokens = spec.input_tokens;
    auto sent = Clock::now();
    record->start_s = Seconds(origin, sent);
    auto state = std::make_shared<std::pair<Clock::time_point, bool>>(sent, false);  // last, got
    net::HttpClientRequest request;
    request.method = "POST";
    request.url = options.base_url + path;
    request.body = Body(options, spec);
    request.timeout = options.request_timeout;
    if (!options.api_key.empty()) {
      request.headers.emplace_back("Authorization", "Bearer " + options.api_key);
    }
    {
      std::lock_guard<std::mutex> lock(run->mu);
      ++run->in_flight;
    }
    bool chat = options.endpoint == Endpoint::kChat;
    bool keep_text = options.keep_text;
    net::SseClient::Open(
        loop, std::move(request),
        [record, state, chat, keep_text, sent](const net::SseEvent& event) {
          if (event.data == "[DONE]" || !record->error.empty()) return;
          json chunk = json::parse(event.data, nullptr, false);
          if (chunk.is_discarded() || !chunk.is_object()) {
            record->error = "malformed_stream";
            return;
          }
          if (chunk.contains("error")) {
            record->error = "stream_error";
            return;
          }
          if (chunk.contains("usage") && chunk["usage"].is_object()) {
            record->output_tokens = chunk["usage"].value("completion_tokens", int64_t{0});
            record->input_tokens = chunk["usage"].value("prompt_tokens", record->input_tokens);
          }
          if (!chunk.contains("choices") || !chunk["choices"].is_array() ||
              chunk["choices"].empty()) {
            return;
          }
          const json& choice = chunk["choices"][0];
          std::string text;
          if (chat) {
            if (choice.contains("delta") && choice["delta"].is_object() &&
                choice["delta"].contains("content") && choice["delta"]["content"].is_string()) {
              text = choice["delta"]["content"].get<std::string>();
            }
          } else if (choice.contains("text") && choice["text"].is_string()) {
            text = choice["text"].get<std::string>();
          }
          if (text.empty()) return;
          auto now = Clock::now();
          if (!state->second) {
            record->ttft_s = Seconds(sent, now);
            state->second = true;
          } else {
            record->itl_s.push_back(Seconds(state->first, now));
          }
          state->first = now;
          if (keep_text) record->generated_text += text;
        },
        [record, state, run, sent](absl::Status status, int http_status, const std::string&) {
          record->e2e_s = Seconds(sent, Clock::now());
          if (record->error.empty()) {
            if (http_status >= 400) {
              record->error = absl::StrCat("http_", http_status);
            } else if (!status.ok()) {
              record->error =
                  status.code() == absl::StatusCode::kDeadlineExceeded ? "timeout" : "connection";
            } else if (!state->second) {
              record->error = "empty_response";
            }
          }
          record->ok = record->error.empty();
          if (record->ok && record->output_tokens == 0) {
            record->output_tokens = 1 + static_cast<int64_t>(record->itl_s.size());
          }
          std::lock_guard<std::mutex> lock(run->mu);
          --run->in_flight;
          ++run->done;
          if (!record->ok) ++run->failed;
          run->changed.notify_all();
        });
  };

  auto wait_until = [&](std::function<bool()> ready, Clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(run->mu);
    return run->changed.wait_until(lock, deadline, [&] { return ready(); });
  };

  // Warm-up: sent first, one at a time, not recorded.
  for (uint64_t i = 0; i < options.warmup_requests; ++i) {
    RequestSpec spec = requests[i % requests.size()];
    spec.index = 1'000'000'000 + i;
    send(spec, &warmup[i], Clock::now());
    wait_until([&] { return run->in_flight == 0; }, Clock::now() + std::chrono::minutes(10));
  }
  {
    std::lock_guard<std::mutex> lock(run->mu);
    run->done = run->failed = 0;
  }

  Clock::time_point origin = Clock::now();
  Clock::time_point last_progress = origin;
  auto report = [&](uint64_t sent_count) {
    if (!progress) return;
    LoadProgress p;
    {
      std::lock_guard<std::mutex> lock(run->mu);
      p.done = run->done;
      p.failed = run->failed;
    }
    p.sent = sent_count;
    p.elapsed_s = Seconds(origin, Clock::now());
    progress(p);
  };
  if (open_ended) requests.clear();  // the warm-up's; the measured ones come from here on
  const Clock::time_point end =
      origin + std::chrono::microseconds(static_cast<int64_t>(w.duration_s * 1e6));
  for (size_t i = 0;; ++i) {
    if (open_ended) {
      if (Clock::now() >= end) break;
      std::optional<RequestSpec> next = generator.Next();
      if (!next.has_value()) break;
      next->arrival_s = 0;  // as soon as a slot is free
      next->index = i;
      requests.push_back(*next);
    } else if (i >= requests.size()) {
      break;
    }
    Clock::time_point due =
        origin + std::chrono::microseconds(static_cast<int64_t>(requests[i].arrival_s * 1e6));
    while (true) {
      Clock::time_point wake = std::min(due, Clock::now() + std::chrono::milliseconds(250));
      bool room = wait_until(
          [&] { return options.max_concurrency <= 0 || run->in_flight < options.max_concurrency; },
          wake);
      if (room && Clock::now() >= due) break;
      // A free slot before the send time: sleep until then (or the next progress line) instead
      // of spinning, which would take a core from the server being measured.
      if (room) std::this_thread::sleep_until(wake);
      if (Clock::now() - last_progress > std::chrono::milliseconds(500)) {
        report(i);
        last_progress = Clock::now();
      }
    }
    if (open_ended && Clock::now() >= end) {
      requests.pop_back();
      break;
    }
    records.emplace_back();
    send(requests[i], &records.back(), origin);
  }
  Clock::time_point deadline =
      Clock::now() + std::chrono::microseconds(absl::ToInt64Microseconds(options.request_timeout)) +
      std::chrono::seconds(5);
  while (!wait_until([&] { return run->in_flight == 0; },
                     std::min(deadline, Clock::now() + std::chrono::milliseconds(500)))) {
    report(requests.size());
    if (Clock::now() >= deadline) break;
  }
  result.duration_s = Seconds(origin, Clock::now());
  report(requests.size());
  loop.Stop();
  result.records.assign(std::make_move_iterator(records.begin()),
                        std::make_move_iterator(records.end()));
  return result;
}

}  // namespace tandem::bench
