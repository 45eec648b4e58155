#include "net/http_server.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <deque>
#include <future>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "net/event_loop.h"
#include "net/sse.h"
#include "nlohmann/json.hpp"

namespace tandem::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

std::string ErrorBody(std::string_view message, std::string_view code) {
  nlohmann::json body = {
      {"error",
       {{"message", std::string(message)},
        {"code", code.empty() ? nlohmann::json(nullptr) : nlohmann::json(std::string(code))}}}};
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '+') {
      out.push_back(' ');
    } else if (text[i] == '%' && i + 2 < text.size() + 1 && i + 2 <= text.size() - 1 &&
               HexValue(text[i + 1]) >= 0 && HexValue(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(HexValue(text[i + 1]) * 16 + HexValue(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

bool IsJsonContentType(const std::string* value) {
  if (value == nullptr) return false;
  std::string lower = absl::AsciiStrToLower(*value);
  std::string_view media = std::string_view(lower).substr(0, lower.find(';'));
  while (!media.empty() && media.back() == ' ') media.remove_suffix(1);
  return media == "application/json";
}

std::string Reason(int status) {
  return std::string(http::obsolete_reason(static_cast<http::status>(status)));
}

}  // namespace

const std::string* HttpRequest::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, absl::string_view(name.data(), name.size()))) return &value;
  }
  return nullptr;
}

std::optional<std::string> HttpRequest::QueryParam(std::string_view key) const {
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    size_t eq = pair.find('=');
    std::string name = PercentDecode(std::string_view(pair.data(), std::min(eq, pair.size())));
    if (name == key) {
      if (eq == absl::string_view::npos) return std::string();
      return PercentDecode(std::string_view(pair.data() + eq + 1, pair.size() - eq - 1));
    }
  }
  return std::nullopt;
}

void HttpExchange::ReplyJson(int status, std::string json) {
  Reply(HttpResponse{status, "application/json", std::move(json), {}});
}

void HttpExchange::ReplyText(int status, std::string text, std::string content_type) {
  Reply(HttpResponse{status, std::move(content_type), std::move(text), {}});
}

void HttpExchange::ReplyError(int status, std::string_view message, std::string_view code) {
  ReplyJson(status, ErrorBody(message, code));
}

struct Route {
  std::string method;
  std::string path;
  Handler handler;
  RouteOptions options;
};

class Connection;

struct HttpServer::Impl : std::enable_shared_from_this<HttpServer::Impl> {
  explicit Impl(HttpServerOptions o) : options(std::move(o)) {}

  HttpServerOptions options;
  std::vector<Route> routes;
  std::unique_ptr<EventLoopGroup> loops;
  std::unique_ptr<tcp::acceptor> acceptor;
  std::atomic<int> port{0};
  std::atomic<int> connections{0};
  std::atomic<int> streams{0};
  std::atomic<int> in_flight{0};
  std::atomic<bool> draining{false};
  std::atomic<bool> stopped{false};
  std::mutex mu;
  std::map<Connection*, std::weak_ptr<Connection>> live;

  void Accept();
  void Dispatch(const std::shared_ptr<Connection>& connection, HttpRequest request);
  void ForEachConnection(const std::function<void(const std::shared_ptr<Connection>&)>& f);
};

// One TCP connection. Lives on one loop; its members are touched only on that loop's thread,
// except the atomics. It answers one request at a time (HTTP/1.1 without pipelined answers).
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<HttpServer::Impl> server, EventLoop& loop, tcp::socket socket)
      : server_(std::move(server)), loop_(loop), stream_(std::move(socket)) {
    beast::error_code error;
    auto remote = stream_.socket().remote_endpoint(error);
    if (!error) remote_ = absl::StrCat(remote.address().to_string(), ":", remote.port());
  }

  ~Connection() {
    server_->connections.fetch_sub(1);
    std::lock_guard<std::mutex> lock(server_->mu);
    server_->live.erase(this);
  }

  void Start() {
    {
      std::lock_guard<std::mutex> lock(server_->mu);
      server_->live[this] = weak_from_this();
    }
    WaitForRequest();
  }

  EventLoop& loop() { return loop_; }

  // --- Called on the loop thread by the exchange and stream handles. ---

  void SendResponse(HttpResponse response) {
    if (closed_ || !handling_ || streaming_) return;
    http::response<http::string_body> message{static_cast<http::status>(response.status), 11};
    message.set(http::field::server, server_->options.server_name);
    message.set(http::field::content_type, response.content_type);
    for (const auto& [name, value] : response.headers) message.set(name, value);
    bool keep = keep_alive_ && !server_->draining.load();
    message.keep_alive(keep);
    message.body() = std::move(response.body);
    message.prepare_payload();
    status_ = response.status;
    std::string bytes = SerializeMessage(message);
    Finish(std::move(bytes), !keep);
  }

  void StartSse(const HeaderList& extra) {
    if (closed_ || !handling_ || streaming_) return;
    streaming_ = true;
    server_->streams.fetch_add(1);
    status_ = 200;
    std::string head = absl::StrCat(
        "HTTP/1.1 200 OK\r\nServer: ", server_->options.server_name,
        "\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\nX-Accel-Buffering: no\r\n");
    for (const auto& [name, value] : extra) absl::StrAppend(&head, name, ": ", value, "\r\n");
    head.append("\r\n");
    Queue(std::move(head));
  }

  void QueueChunk(std::string data) {
    if (closed_ || !streaming_ || sse_ended_) {
      buffered.fetch_sub(data.size());
      return;
    }
    size_t size = data.size();
    std::string chunk = absl::StrCat(absl::Hex(size), "\r\n");
    chunk.append(data);
    chunk.append("\r\n");
    Queue(std::move(chunk), size);
  }

  void EndSse() {
    if (closed_ || !streaming_ || sse_ended_) return;
    sse_ended_ = true;
    EndStreamBookkeeping();
    Queue("0\r\n\r\n");
    close_after_write_ = true;
  }

  // Ends the connection now, telling a running stream why.
  void Abort(absl::Status reason) {
    if (closed_) return;
    FireGone(std::move(reason));
    Close();
  }

  // Shutdown: idle connections close; busy ones finish their answer and then close.
  void Drain() {
    if (closed_) return;
    keep_alive_ = false;
    if (!handling_) Close();
  }

  bool client_gone() const { return client_gone_; }
  void SetOnGone(std::function<void()> callback) {
    if (client_gone_) {
      callback();
    } else {
      on_gone_ = std::move(callback);
    }
  }
  void SetOnStreamClose(std::function<void(absl::Status)> callback) {
    if (stream_close_fired_) {
      callback(stream_close_reason_);
    } else {
      on_stream_close_ = std::move(callback);
    }
  }

  std::atomic<size_t> buffered{0};

 private:
  template <typename Message>
  static std::string SerializeMessage(Message& message) {
    std::ostringstream out;
    out << message;
    return out.str();
  }

  void WaitForRequest() {
    if (closed_) return;
    if (server_->draining.load()) {
      Close();
      return;
    }
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(server_->options.max_header_bytes));
    parser_->body_limit(server_->options.max_body_bytes);
    if (buffer_.size() > 0) {  // a pipelined request is already here
      ReadRequest();
      return;
    }
    // Idle keep-alive: wait for the first byte of the next request (or the client's close).
    stream_.expires_after(ToChrono(server_->options.idle_timeout));
    waiting_first_byte_ = true;
    auto self = shared_from_this();
    stream_.async_read_some(buffer_.prepare(4096), [self](beast::error_code error, size_t n) {
      self->waiting_first_byte_ = false;
      if (error) {
        self->Close();
        return;
      }
      self->buffer_.commit(n);
      self->ReadRequest();
    });
  }

  void ReadRequest() {
    // The whole request must arrive within read_timeout (no slowloris). Our own timer, not the
    // stream's, so the socket stays open for the 408 answer.
    stream_.expires_never();
    started_ = std::chrono::steady_clock::now();
    read_timed_out_ = false;
    auto self = shared_from_this();
    read_timer_.expires_after(ToChrono(server_->options.read_timeout));
    read_timer_.async_wait([self](beast::error_code error) {
      if (error) return;
      self->read_timed_out_ = true;
      beast::error_code ignored;
      self->stream_.socket().cancel(ignored);
    });
    http::async_read(stream_, buffer_, *parser_, [self](beast::error_code error, size_t) {
      self->read_timer_.cancel();
      if (self->read_timed_out_ && error) error = beast::error::timeout;
      self->OnRequest(error);
    });
  }

  void OnRequest(beast::error_code error) {
    if (closed_) return;
    if (error) {
      if (error == http::error::end_of_stream || error == asio::error::connection_reset ||
          error == asio::error::eof) {
        Close();
      } else if (error == beast::error::timeout) {
        // Slow or stalled sender (slowloris): answer and close.
        handling_ = true;
        Refuse(408, "the request was not received in time");
      } else if (error == http::error::body_limit) {
        handling_ = true;
        Refuse(413, absl::StrCat("the request body exceeds ", server_->options.max_body_bytes,
                                 " bytes"));
      } else if (error == http::error::header_limit) {
        handling_ = true;
        Refuse(431, absl::StrCat("the request headers exceed ", server_->options.max_header_bytes,
                                 " bytes"));
      } else if (error == asio::error::operation_aborted) {
        Close();
      } else {
        handling_ = true;
        Refuse(400, absl::StrCat("malformed HTTP request: ", error.message()));
      }
      return;
    }
    stream_.expires_never();
    http::request<http::string_body> message = parser_->release();
    keep_alive_ = message.keep_alive();
    HttpRequest request;
    request.method = std::string(message.method_string());
    request.target = std::string(message.target());
    size_t question = request.target.find('?');
    request.path = request.target.substr(0, question);
    if (question != std::string::npos) request.query = request.target.substr(question + 1);
    for (const auto& field : message) {
      request.headers.emplace_back(absl::AsciiStrToLower(std::string(field.name_string())),
                                   std::string(field.value()));
    }
    request.body = std::move(message.body());
    request.remote_address = remote_;
    method_ = request.method;
    path_ = request.path;
    handling_ = true;
    client_gone_ = false;
    server_->in_flight.fetch_add(1);
    WatchClient();
    server_->Dispatch(shared_from_this(), std::move(request));
  }

  // While a request is handled, a read tells us when the client goes away (EOF or reset), so
  // work done for it can be cancelled. Bytes a client pipelines meanwhile stay in the buffer.
  void WatchClient() {
    if (buffer_.size() > 0) return;
    watching_ = true;
    auto self = shared_from_this();
    stream_.async_read_some(buffer_.prepare(4096), [self](beast::error_code error, size_t n) {
      self->watching_ = false;
      if (error) {
        if (self->handling_ && error != asio::error::operation_aborted) {
          self->FireGone(absl::CancelledError("the client closed the connection"));
          self->Close();
        }
        return;
      }
      self->buffer_.commit(n);
      if (!self->handling_ && !self->closed_) self->WaitForRequest();
    });
  }

  void Refuse(int status, const std::string& message) {
    http::response<http::string_body> response{static_cast<http::status>(status), 11};
    response.set(http::field::server, server_->options.server_name);
    response.set(http::field::content_type, "application/json");
    response.keep_alive(false);
    response.body() = ErrorBody(message, "");
    response.prepare_payload();
    status_ = status;
    method_ = parser_ && parser_->is_header_done() ? std::string(parser_->get().method_string())
                                                   : std::string("-");
    server_->in_flight.fetch_add(1);
    Finish(SerializeMessage(response), true);
  }

  // Writes a complete answer, then reads the next request or closes.
  void Finish(std::string bytes, bool close_after) {
    close_after_write_ = close_after;
    finishing_ = true;
    Queue(std::move(bytes));
  }

  // `counted` is how much of `bytes` the stream's buffered-bytes figure holds; it is released
  // when the bytes have been written to the socket.
  void Queue(std::string bytes, size_t counted = 0) {
    bytes_out_ += bytes.size();
    out_.emplace_back(std::move(bytes), counted);
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (closed_) return;
    if (out_.empty()) {
      writing_ = false;
      if (finishing_ || sse_ended_) AnswerDone();
      return;
    }
    writing_ = true;
    // Everything queued goes out in one gathered write: many small SSE chunks cost one syscall.
    inflight_.swap(out_);
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(inflight_.size());
    for (const auto& [bytes, counted] : inflight_) buffers.emplace_back(asio::buffer(bytes));
    auto self = shared_from_this();
    asio::async_write(stream_.socket(), buffers, [self](beast::error_code error, size_t) {
      for (const auto& [bytes, counted] : self->inflight_) self->buffered.fetch_sub(counted);
      self->inflight_.clear();
      if (error) {
        self->FireGone(absl::CancelledError("the client went away"));
        self->Close();
        return;
      }
      self->WriteNext();
    });
  }

  void AnswerDone() {
    if (handling_) {
      handling_ = false;
      server_->in_flight.fetch_sub(1);
      if (server_->options.access_log) {
        AccessLogEntry entry;
        entry.method = method_;
        entry.path = path_;
        entry.status = status_;
        entry.bytes = bytes_out_;
        entry.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
        entry.remote_address = remote_;
        server_->options.access_log(entry);
      }
    }
    bytes_out_ = 0;
    finishing_ = false;
    on_gone_ = nullptr;
    if (close_after_write_ || streaming_) {
      Close();
      return;
    }
    if (!watching_) WaitForRequest();
    // else: the watch read completes with the next request's first bytes and continues.
  }

  void EndStreamBookkeeping() {
    if (streaming_ && !stream_close_fired_) {
      stream_close_fired_ = true;
      server_->streams.fetch_sub(1);
    }
  }

  void FireGone(absl::Status reason) {
    if (client_gone_) return;
    client_gone_ = true;
    if (on_gone_) {
      auto callback = std::move(on_gone_);
      on_gone_ = nullptr;
      callback();
    }
    if (streaming_ && !stream_close_fired_) {
      stream_close_reason_ = reason;
      EndStreamBookkeeping();
      if (on_stream_close_) {
        auto callback = std::move(on_stream_close_);
        on_stream_close_ = nullptr;
        callback(reason);
      }
    }
  }

  void Close() {
    if (closed_) return;
    if (handling_) {
      handling_ = false;
      server_->in_flight.fetch_sub(1);
    }
    if (streaming_ && !stream_close_fired_) {
      FireGone(server_->draining.load() ? absl::UnavailableError("the server is shutting down")
                                        : absl::CancelledError("the connection closed"));
    }
    closed_ = true;
    read_timer_.cancel();
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();
    for (const auto& [bytes, counted] : out_) buffered.fetch_sub(counted);
    out_.clear();
  }

  static std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
    return std::chrono::microseconds(absl::ToInt64Microseconds(d));
  }

  std::shared_ptr<HttpServer::Impl> server_;
  EventLoop& loop_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::string remote_;
  std::string method_;
  std::string path_;
  int status_ = 0;
  uint64_t bytes_out_ = 0;
  std::chrono::steady_clock::time_point started_;
  bool waiting_first_byte_ = false;
  bool handling_ = false;
  bool watching_ = false;
  bool keep_alive_ = true;
  bool streaming_ = false;
  bool sse_ended_ = false;
  bool finishing_ = false;
  bool closed_ = false;
  bool close_after_write_ = false;
  bool client_gone_ = false;
  bool stream_close_fired_ = false;
  absl::Status stream_close_reason_;
  std::function<void()> on_gone_;
  std::function<void(absl::Status)> on_stream_close_;
  std::deque<std::pair<std::string, size_t>> out_;
  std::deque<std::pair<std::string, size_t>> inflight_;  // being written
  bool writing_ = false;
  asio::steady_timer read_timer_{loop_.context()};
  bool read_timed_out_ = false;
};

namespace {

class SseHandle : public SseStream {
 public:
  SseHandle(std::shared_ptr<Connection> connection, size_t high_watermark)
      : connection_(std::move(connection)), high_watermark_(high_watermark) {}

  bool Send(std::string_view data, std::string_view event) override {
    return Queue(FormatSseEvent(data, event));
  }
  bool SendComment(std::string_view text) override { return Queue(FormatSseComment(text)); }

  void Close() override {
    if (closed_.exchange(true)) return;
    auto connection = connection_;
    connection->loop().Post([connection] { connection->EndSse(); });
  }

  bool closed() const override { return closed_.load() || gone_->load(); }
  size_t buffered_bytes() const override { return connection_->buffered.load(); }

  void OnClose(std::function<void(absl::Status)> callback) override {
    auto connection = connection_;
    auto gone = gone_;
    connection->loop().Post([connection, gone, callback = std::move(callback)]() mutable {
      connection->SetOnStreamClose([gone, callback = std::move(callback)](absl::Status reason) {
        gone->store(true);
        callback(std::move(reason));
      });
    });
  }

 private:
  bool Queue(std::string bytes) {
    if (closed()) return false;
    size_t total = connection_->buffered.fetch_add(bytes.size()) + bytes.size();
    auto connection = connection_;
    if (total > high_watermark_) {
      // The reader is too slow: end its stream rather than buffer without bound.
      connection_->buffered.fetch_sub(bytes.size());
      closed_.store(true);
      connection->loop().Post([connection] {
        connection->Abort(
            absl::ResourceExhaustedError("the client reads too slowly; its stream was closed"));
      });
      return false;
    }
    connection->loop().Post([connection, bytes = std::move(bytes)]() mutable {
      connection->QueueChunk(std::move(bytes));
    });
    return true;
  }

  std::shared_ptr<Connection> connection_;
  size_t high_watermark_;
  std::atomic<bool> closed_{false};
  std::shared_ptr<std::atomic<bool>> gone_ = std::make_shared<std::atomic<bool>>(false);
};

class ExchangeImpl : public HttpExchange {
 public:
  ExchangeImpl(std::shared_ptr<Connection> connection, HttpRequest request, size_t watermark)
      : connection_(std::move(connection)), request_(std::move(request)), watermark_(watermark) {}

  const HttpRequest& request() const override { return request_; }

  void Reply(HttpResponse response) override {
    if (answered_.exchange(true)) return;
    auto connection = connection_;
    connection->loop().Post([connection, response = std::move(response)]() mutable {
      connection->SendResponse(std::move(response));
    });
  }

  std::shared_ptr<SseStream> StartSse(HeaderList extra_headers) override {
    if (answered_.exchange(true)) return nullptr;
    auto connection = connection_;
    connection->loop().Post(
        [connection, extra = std::move(extra_headers)] { connection->StartSse(extra); });
    return std::make_shared<SseHandle>(connection_, watermark_);
  }

  void OnClientGone(std::function<void()> callback) override {
    auto connection = connection_;
    auto gone = gone_;
    connection->loop().Post([connection, gone, callback = std::move(callback)]() mutable {
      connection->SetOnGone([gone, callback = std::move(callback)] {
        gone->store(true);
        callback();
      });
    });
  }

  bool client_gone() const override { return gone_->load(); }

 private:
  std::shared_ptr<Connection> connection_;
  HttpRequest request_;
  size_t watermark_;
  std::atomic<bool> answered_{false};
  std::shared_ptr<std::atomic<bool>> gone_ = std::make_shared<std::atomic<bool>>(false);
};

}  // namespace

void HttpServer::Impl::Accept() {
  if (stopped.load() || acceptor == nullptr) return;
  EventLoop& target = loops->Next();
  auto self = shared_from_this();
  acceptor->async_accept(
      target.context(), [self, &target](beast::error_code error, tcp::socket socket) {
        if (error) {
          if (error != asio::error::operation_aborted && !self->stopped.load()) self->Accept();
          return;
        }
        if (self->draining.load() || self->connections.load() >= self->options.max_connections) {
          // Refuse politely without a handler: one short answer, then close.
          static const std::string kBusy = absl::StrCat(
              "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1"
              "\r\nConnection: close\r\nContent-Length: ",
              ErrorBody("too many connections; retry later", "overloaded").size(), "\r\n\r\n",
              ErrorBody("too many connections; retry later", "overloaded"));
          beast::error_code ignored;
          socket.write_some(asio::buffer(kBusy), ignored);
          socket.close(ignored);
        } else {
          self->connections.fetch_add(1);
          // Token streams are many small writes: without TCP_NODELAY, Nagle's algorithm holds
          // each behind the ACK of the previous one (delayed up to 40 ms by the peer).
          beast::error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          auto connection = std::make_shared<Connection>(self, target, std::move(socket));
          target.Post([connection] { connection->Start(); });
        }
        self->Accept();
      });
}

void HttpServer::Impl::Dispatch(const std::shared_ptr<Connection>& connection,
                                HttpRequest request) {
  auto exchange = std::make_shared<ExchangeImpl>(connection, std::move(request),
                                                 options.sse_high_watermark_bytes);
  const HttpRequest& r = exchange->request();
  const Route* match = nullptr;
  bool path_known = false;
  std::vector<std::string> allowed;
  for (const Route& route : routes) {
    bool path_match =
        route.options.prefix ? absl::StartsWith(r.path, route.path) : r.path == route.path;
    if (!path_match) continue;
    path_known = true;
    allowed.push_back(route.method);
    if (route.method == r.method && (match == nullptr || route.path.size() > match->path.size())) {
      match = &route;
    }
  }
  if (match == nullptr) {
    if (path_known) {
      HttpResponse response{
          405,
          "application/json",
          ErrorBody(absl::StrCat("method ", r.method, " is not allowed on ", r.path),
                    "method_not_allowed"),
          {{"Allow", absl::StrJoin(allowed, ", ")}}};
      exchange->Reply(std::move(response));
    } else {
      exchange->ReplyError(404, absl::StrCat("no route for ", r.path), "not_found");
    }
    return;
  }
  if (match->options.json_body) {
    if (!IsJsonContentType(r.Header("content-type"))) {
      exchange->ReplyError(415, "the request body must be JSON (Content-Type: application/json)",
                           "unsupported_media_type");
      return;
    }
    if (!nlohmann::json::accept(r.body)) {
      exchange->ReplyError(400, "the request body is not valid JSON", "invalid_json");
      return;
    }
  }
  match->handler(exchange);
}

void HttpServer::Impl::ForEachConnection(
    const std::function<void(const std::shared_ptr<Connection>&)>& f) {
  std::vector<std::shared_ptr<Connection>> all;
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& [raw, weak] : live) {
      if (auto connection = weak.lock()) all.push_back(std::move(connection));
    }
  }
  for (auto& connection : all) f(connection);
}

HttpServer::HttpServer(HttpServerOptions options)
    : impl_(std::make_shared<Impl>(std::move(options))) {}

HttpServer::~HttpServer() { Shutdown(absl::ZeroDuration()); }

void HttpServer::Handle(std::string method, std::string path, Handler handler,
                        RouteOptions options) {
  impl_->routes.push_back(Route{std::move(method), std::move(path), std::move(handler), options});
}

absl::Status HttpServer::Start() {
  impl_->loops = std::make_unique<EventLoopGroup>(impl_->options.threads, "http");
  beast::error_code error;
  auto address = asio::ip::make_address(impl_->options.host, error);
  if (error) {
    // A host name: resolve it.
    tcp::resolver resolver(impl_->loops->At(0).context());
    auto results = resolver.resolve(impl_->options.host, "", error);
    if (error || results.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot resolve listen host '", impl_->options.host, "'"));
    }
    address = results.begin()->endpoint().address();
  }
  tcp::endpoint endpoint(address, static_cast<uint16_t>(impl_->options.port));
  auto acceptor = std::make_unique<tcp::acceptor>(impl_->loops->At(0).context());
  acceptor->open(endpoint.protocol(), error);
  if (!error) acceptor->set_option(asio::socket_base::reuse_address(true), error);
  if (!error) acceptor->bind(endpoint, error);
  if (!error) acceptor->listen(asio::socket_base::max_listen_connections, error);
  if (error) {
    impl_->loops->Stop();
    return absl::UnavailableError(absl::StrCat("cannot listen on ", impl_->options.host, ":",
                                               impl_->options.port, ": ", error.message()));
  }
  impl_->port = acceptor->local_endpoint().port();
  impl_->acceptor = std::move(acceptor);
  auto impl = impl_;
  impl_->loops->At(0).Post([impl] { impl->Accept(); });
  return absl::OkStatus();
}

int HttpServer::port() const { return impl_->port.load(); }
int HttpServer::active_connections() const { return impl_->connections.load(); }
int HttpServer::open_streams() const { return impl_->streams.load(); }

void HttpServer::Shutdown(absl::Duration grace) {
  if (impl_->loops == nullptr || impl_->stopped.exchange(true)) return;
  // (loops is reset at the end of the first Shutdown, so later calls return here.)
  impl_->draining = true;
  auto impl = impl_;
  std::promise<void> closed;
  impl_->loops->At(0).Post([impl, &closed] {
    beast::error_code ignored;
    if (impl->acceptor) impl->acceptor->close(ignored);
    closed.set_value();
  });
  closed.get_future().wait();
  // Idle connections close now; busy ones finish their answer first.
  impl_->ForEachConnection([](const std::shared_ptr<Connection>& connection) {
    connection->loop().Post([connection] { connection->Drain(); });
  });
  absl::Time deadline = absl::Now() + grace;
  while (absl::Now() < deadline && (impl_->in_flight.load() > 0 || impl_->streams.load() > 0)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  impl_->ForEachConnection([](const std::shared_ptr<Connection>& connection) {
    connection->loop().Post(
        [connection] { connection->Abort(absl::UnavailableError("the server is shutting down")); });
  });
  // Let the aborts run, then stop the loops (dropping whatever is still queued).
  absl::Time stop_by = absl::Now() + absl::Seconds(2);
  while (absl::Now() < stop_by && impl_->connections.load() > 0) {
    absl::SleepFor(absl::Milliseconds(2));
  }
  impl_->loops->Stop();
  impl_->acceptor.reset();
  // Destroying the loops destroys the handlers still queued on them, and with them the last
  // references to their connections (which refer back to the server).
  impl_->loops.reset();
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->live.clear();
}

}  // namespace tandem::net
