// `tandem chat MESSAGE`: sends one streamed chat completion to an OpenAI-compatible server (a
// Tandem router by default), prints the answer as it arrives, then its time to first token,
// inter-token latency and decode speed. `make run` uses it to show the served demo.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/status.h"
#include "net/event_loop.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"

namespace tandem::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct ChatOptions {
  std::string url = "http://127.0.0.1:8000";
  std::string model;
  std::string message;
  std::string system;
  std::string api_key;
  int max_tokens = 64;
  double temperature = 0;
  double timeout_seconds = 120;
};

// The first model the server lists, for when --model is not given.
absl::StatusOr<std::string> FirstModel(const ChatOptions& o) {
  net::HttpClientRequest request{.method = "GET", .url = o.url + "/v1/models"};
  if (!o.api_key.empty()) request.headers.push_back({"authorization", "Bearer " + o.api_key});
  TANDEM_ASSIGN_OR_RETURN(net::HttpResult result, net::HttpClient::Fetch(request));
  if (result.status != 200) {
    return absl::UnavailableError("GET /v1/models answered " + std::to_string(result.status) +
                                  ": " + result.body.substr(0, 300));
  }
  nlohmann::json body = nlohmann::json::parse(result.body, nullptr, false);
  if (!body.is_object() || !body.contains("data") || !body["data"].is_array() ||
      body["data"].empty() || !body["data"][0].contains("id") ||
      !body["data"][0]["id"].is_string()) {
    return absl::UnavailableError("GET /v1/models listed no model");
  }
  return body["data"][0]["id"].get<std::string>();
}

double Percentile(std::vector<double> values, double q) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t index = std::min(values.size() - 1, static_cast<size_t>(q * values.size()));
  return values[index];
}

int RunChat(CLI::App* app, ChatOptions o) {
  if (o.model.empty()) {
    absl::StatusOr<std::string> model = FirstModel(o);
    if (!model.ok()) return ReportError(app, model.status());
    o.model = *model;
  }
  nlohmann::json messages = nlohmann::json::array();
  if (!o.system.empty()) messages.push_back({{"role", "system"}, {"content", o.system}});
  messages.push_back({{"role", "user"}, {"content", o.message}});
  const nlohmann::json body = {{"model", o.model},
                               {"messages", messages},
                               {"max_tokens", o.max_tokens},
                               {"temperature", o.temperature},
                               {"stream", true},
                               {"stream_options", {{"include_usage", true}}}};
  net::HttpClientRequest request{.method = "POST",
                                 .url = o.url + "/v1/chat/completions",
                                 .body = body.dump(),
                                 .timeout = absl::Seconds(o.timeout_seconds)};
  if (!o.api_key.empty()) request.headers.push_back({"authorization", "Bearer " + o.api_key});

  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  absl::Status final_status;
  std::string error_text;
  std::vector<Clock::time_point> token_times;
  int64_t prompt_tokens = -1, completion_tokens = -1;
  std::string finish_reason;
  const Clock::time_point start = Clock::now();

  net::EventLoop loop("chat");
  auto stream = net::SseClient::Open(
      loop, request,
      [&](const net::SseEvent& event) {
        if (event.data == "[DONE]") return;
        nlohmann::json chunk = nlohmann::json::parse(event.data, nullptr, false);
        if (!chunk.is_object()) return;
        if (chunk.contains("error")) {
          std::lock_guard lock(mutex);
          error_text = chunk["error"].dump();
          return;
        }
        if (chunk.contains("usage") && chunk["usage"].is_object()) {
          prompt_tokens = chunk["usage"].value("prompt_tokens", int64_t{-1});
          completion_tokens = chunk["usage"].value("completion_tokens", int64_t{-1});
        }
        if (!chunk.contains("choices") || !chunk["choices"].is_array()) return;
        for (const nlohmann::json& choice : chunk["choices"]) {
          if (choice.contains("finish_reason") && choice["finish_reason"].is_string()) {
            finish_reason = choice["finish_reason"].get<std::string>();
          }
          if (!choice.contains("delta") || !choice["delta"].contains("content")) continue;
          const nlohmann::json& content = choice["delta"]["content"];
          if (!content.is_string() || content.get<std::string>().empty()) continue;
          token_times.push_back(Clock::now());
          std::fputs(content.get<std::string>().c_str(), stdout);
          std::fflush(stdout);
        }
      },
      [&](absl::Status status, int http_status, const std::string& error_body) {
        std::lock_guard lock(mutex);
        final_status = status;
        if (status.ok() && (http_status < 200 || http_status >= 300)) {
          final_status = absl::UnavailableError("the server answered " +
                                                std::to_string(http_status) + ": " + error_body);
        }
        done = true;
        done_cv.notify_all();
      });
  {
    std::unique_lock lock(mutex);
    done_cv.wait(lock, [&] { return done; });
  }
  loop.Stop();
  std::printf("\n");
  if (!final_status.ok()) return ReportError(app, final_status);
  if (!error_text.empty()) {
    return ReportError(app, absl::InternalError("the stream ended with an error: " + error_text));
  }
  if (token_times.empty()) {
    std::printf("(no text: finish_reason %s)\n", finish_reason.c_str());
    return 0;
  }
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::vector<double> gaps;
  for (size_t i = 1; i < token_times.size(); ++i) {
    gaps.push_back(ms(token_times[i] - token_times[i - 1]));
  }
  const double decode_ms = ms(token_times.back() - token_times.front());
  std::printf("\n-- %s: %lld prompt tokens, %lld completion tokens, finish_reason %s\n",
              o.model.c_str(), static_cast<long long>(prompt_tokens),
              static_cast<long long>(completion_tokens), finish_reason.c_str());
  std::printf("-- TTFT %.1f ms, ITL p50 %.1f ms / p99 %.1f ms, %.1f tokens/s after the first\n",
              ms(token_times.front() - start), Percentile(gaps, 0.5), Percentile(gaps, 0.99),
              gaps.empty() || decode_ms <= 0 ? 0.0 : 1000.0 * gaps.size() / decode_ms);
  return 0;
}

void RegisterChat(CLI::App& root) {
  auto o = std::make_shared<ChatOptions>();
  CLI::App* chat = root.add_subcommand(
      "chat", "Send one streamed chat message to an OpenAI-compatible server; print TTFT and ITL");
  chat->add_option("message", o->message, "The user message")->required();
  chat->add_option("--url", o->url, "Server base URL (default http://127.0.0.1:8000)");
  chat->add_option("--model", o->model, "Model name (default: the first in /v1/models)");
  chat->add_option("--system", o->system, "A system message");
  chat->add_option("--max-tokens", o->max_tokens, "Most tokens to generate")
      ->check(CLI::Range(1, 1 << 20));
  chat->add_option("--temperature", o->temperature, "Sampling temperature (0 = greedy)")
      ->check(CLI::Range(0.0, 2.0));
  chat->add_option("--timeout", o->timeout_seconds, "Seconds before giving up")
      ->check(CLI::PositiveNumber);
  chat->add_option("--api-key", o->api_key, "Bearer token when the server requires one")
      ->envname("TANDEM_API_KEY");
  SetAction(chat, [chat, o]() -> int { return RunChat(chat, *o); });
}

}  // namespace
TANDEM_REGISTER_COMMAND(RegisterChat);
}  // namespace tandem::cli
