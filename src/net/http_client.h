// HTTP/1.1 clients on Boost.Beast.
//
// HttpClient::Fetch is a blocking request with a deadline, for the CLI, tests and control calls.
// SseClient streams: it sends a request on an EventLoop and delivers each Server-Sent Event of the
// (chunked or close-delimited) response as it arrives; many streams share one loop thread, and
// Cancel() closes the connection (which tells the server the client is gone).
//
//   absl::StatusOr<HttpResult> r = HttpClient::Fetch({.method = "GET",
//                                                      .url = "http://127.0.0.1:8000/health"});
//   auto stream = SseClient::Open(loop, {.method = "POST", .url = url, .body = json},
//       [](const SseEvent& e) { ... }, [](absl::Status done, int http_status) { ... });
//   stream->Cancel();
//
// Thread-safety: Fetch is reentrant. SseClient callbacks run on the loop's thread; Cancel may
// be called from any thread.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "net/event_loop.h"
#include "net/http_server.h"
#include "net/sse.h"

namespace tandem::net {

struct HttpClientRequest {
  std::string method = "GET";
  std::string url;  // http://host:port/path?query
  std::string body;
  std::string content_type = "application/json";
  HeaderList headers;
  absl::Duration timeout = absl::Seconds(30);
  size_t max_response_bytes = 64 << 20;
};

struct HttpResult {
  int status = 0;
  HeaderList headers;  // names in lower case
  std::string body;
  const std::string* Header(std::string_view name) const;
};

struct ParsedUrl {
  std::string host;
  std::string port;
  std::string target;  // path + query, "/" when empty
};
absl::StatusOr<ParsedUrl> ParseHttpUrl(const std::string& url);

class HttpClient {
 public:
  // kUnavailable when the server cannot be reached or the connection breaks;
  // kDeadlineExceeded after `timeout`. Any HTTP status is a successful fetch.
  static absl::StatusOr<HttpResult> Fetch(const HttpClientRequest& request);
};

class SseClient {
 public:
  using EventCallback = std::function<void(const SseEvent&)>;
  // `status` is OK when the server ended the stream; `http_status` is the response status (0 if
  // none arrived). A non-2xx answer ends with its body in `error_body`.
  using DoneCallback =
      std::function<void(absl::Status status, int http_status, const std::string& error_body)>;

  static std::shared_ptr<SseClient> Open(EventLoop& loop, HttpClientRequest request,
                                         EventCallback on_event, DoneCallback on_done);
  virtual ~SseClient() = default;
  virtual void Cancel() = 0;
};

}  // namespace tandem::net
