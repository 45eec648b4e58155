// HttpServer: an HTTP/1.1 server on Boost.Beast for Tandem's APIs — keep-alive, JSON bodies,
// Server-Sent Events with backpressure, request limits and timeouts, graceful shutdown.
//
// Connections are spread over N event loops (one thread each); a connection stays on its loop.
// Handlers run on that loop and may answer later from any thread: the HttpExchange they get
// posts the answer back to the connection's loop. A handler that streams gets an SseStream whose
// Send() is thread-safe and bounded: a reader that falls behind by more than
// `sse_high_watermark_bytes` is disconnected as a slow consumer instead of growing memory.
//
//   HttpServer server({.host = "127.0.0.1", .port = 0, .threads = 1});
//   server.Handle("GET", "/health", [](std::shared_ptr<HttpExchange> x) {
//     x->ReplyJson(200, R"({"status":"ok"})");
//   });
//   server.Handle("POST", "/v1/generate", Stream, {.json_body = true});
//   TANDEM_RETURN_IF_ERROR(server.Start());
//   ... server.port() ...
//   server.Shutdown(absl::Seconds(30));   // drain, then close
//
// Errors the server answers itself: 400 malformed request or invalid JSON on a JSON route,
// 404 unknown path, 405 known path with another method, 408 request not received within
// `read_timeout`, 413 body over `max_body_bytes`, 415 wrong Content-Type on a JSON route, 431
// headers over `max_header_bytes`, 503 over `max_connections` or while shutting down. Error
// bodies are {"error": {"message": ..., "code": ...}}. See docs/http.md.
//
// Thread-safety: Handle() before Start(); everything else from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace tandem::net {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path and query as sent
  std::string path;
  std::string query;
  HeaderList headers;  // names in lower case
  std::string body;
  std::string remote_address;

  // The first header with this (case-insensitive) name, or nullptr.
  const std::string* Header(std::string_view name) const;
  // A query parameter's (percent-decoded) value.
  std::optional<std::string> QueryParam(std::string_view key) const;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  HeaderList headers;
};

// A Server-Sent Events response in progress.
class SseStream {
 public:
  virtual ~SseStream() = default;
  // Queues one event. False when the stream has ended (client gone, slow reader, shutdown).
  virtual bool Send(std::string_view data, std::string_view event = {}) = 0;
  virtual bool SendComment(std::string_view text) = 0;
  // Ends the response cleanly after what is queued.
  virtual void Close() = 0;
  virtual bool closed() const = 0;
  virtual size_t buffered_bytes() const = 0;
  // Runs once when the stream ends for a reason other than Close(): OK never; kCancelled when
  // the client went away, kResourceExhausted for a slow reader, kUnavailable at shutdown.
  // Runs on the connection's loop thread; set it right after StartSse.
  virtual void OnClose(std::function<void(absl::Status)> callback) = 0;
};

// One request and its answer. Answer exactly once: Reply*, or StartSse then Close.
class HttpExchange {
 public:
  virtual ~HttpExchange() = default;
  virtual const HttpRequest& request() const = 0;
  virtual void Reply(HttpResponse response) = 0;
  void ReplyJson(int status, std::string json);
  void ReplyText(int status, std::string text, std::string content_type = "text/plain");
  // {"error": {"message": message, "code": code}}
  void ReplyError(int status, std::string_view message, std::string_view code = {});
  virtual std::shared_ptr<SseStream> StartSse(HeaderList extra_headers = {}) = 0;
  // Runs once if the client disconnects before the answer is complete (on the loop thread).
  virtual void OnClientGone(std::function<void()> callback) = 0;
  virtual bool client_gone() const = 0;
};

using Handler = std::function<void(std::shared_ptr<HttpExchange>)>;

struct RouteOptions {
  bool prefix = false;     // match every path that starts with the route's path
  bool json_body = false;  // require Content-Type application/json and a valid JSON body
};

struct AccessLogEntry {
  std::string method;
  std::string path;
  int status = 0;
  uint64_t bytes = 0;
  double seconds = 0;
  std::string remote_address;
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 0;  // 0: the OS picks one; see port()
  int threads = 1;
  size_t max_header_bytes = 16 * 1024;
  size_t max_body_bytes = 8 * 1024 * 1024;
  absl::Duration read_timeout = absl::Seconds(10);  // one whole request, once it started
  absl::Duration idle_timeout = absl::Seconds(75);  // keep-alive wait for the next request
  int max_connections = 10000;
  size_t sse_high_watermark_bytes = 1 << 20;
  std::string server_name = "tandem";
  std::function<void(const AccessLogEntry&)> access_log;
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();  // Shutdown(0) if still running
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void Handle(std::string method, std::string path, Handler handler, RouteOptions options = {});
  absl::Status Start();
  int port() const;

  // Stops accepting, lets in-flight requests and streams finish within `grace`, then ends what
  // is left (streams see kUnavailable) and stops the loops. Idempotent.
  void Shutdown(absl::Duration grace);

  int active_connections() const;
  int open_streams() const;

  struct Impl;  // internal; public only so the connection code in the .cc can name it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace tandem::net
