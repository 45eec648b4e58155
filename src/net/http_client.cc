#include "net/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace tandem::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

const std::string* HttpResult::Header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, absl::string_view(name.data(), name.size()))) return &value;
  }
  return nullptr;
}

absl::StatusOr<ParsedUrl> ParseHttpUrl(const std::string& url) {
  constexpr std::string_view kScheme = "http://";
  if (url.compare(0, kScheme.size(), kScheme) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("URL '", url, "' must start with http:// (TLS is not used between roles)"));
  }
  std::string rest = url.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  ParsedUrl parsed;
  parsed.target = slash == std::string::npos ? "/" : rest.substr(slash);
  if (!authority.empty() && authority[0] == '[') {  // [v6]:port
    size_t close = authority.find(']');
    if (close == std::string::npos) return absl::InvalidArgumentError("bad IPv6 URL " + url);
    parsed.host = authority.substr(1, close - 1);
    parsed.port = close + 2 <= authority.size() ? authority.substr(close + 2) : "80";
  } else {
    size_t colon = authority.rfind(':');
    parsed.host = authority.substr(0, colon);
    parsed.port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  }
  if (parsed.host.empty() || parsed.port.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("URL '", url, "' has no host or port"));
  }
  return parsed;
}

namespace {

template <typename Body>
void Prepare(http::request<Body>& message, const ParsedUrl& url, const HttpClientRequest& request) {
  message.method_string(request.method);
  message.target(url.target);
  message.version(11);
  message.set(http::field::host, url.host + ":" + url.port);
  message.set(http::field::user_agent, "tandem");
  for (const auto& [name, value] : request.headers) message.set(name, value);
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
    message.set(http::field::content_type, request.content_type);
    message.body() = request.body;
  }
  message.prepare_payload();
}

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return std::chrono::microseconds(absl::ToInt64Microseconds(d));
}

absl::Status NetError(const beast::error_code& error, const std::string& what) {
  if (error == beast::error::timeout) {
    return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", error.message()));
}

}  // namespace

absl::StatusOr<HttpResult> HttpClient::Fetch(const HttpClientRequest& request) {
  absl::StatusOr<ParsedUrl> url = ParseHttpUrl(request.url);
  if (!url.ok()) return url.status();
  asio::io_context io;
  tcp::resolver resolver(io);
  beast::tcp_stream stream(io);
  beast::error_code error;
  auto endpoints = resolver.resolve(url->host, url->port, error);
  if (error) return NetError(error, "resolve " + url->host);
  stream.expires_after(ToChrono(request.timeout));
  stream.connect(endpoints, error);
  if (error) return NetError(error, "connect to " + request.url);
  http::request<http::string_body> message;
  Prepare(message, *url, request);
  http::write(stream, message, error);
  if (error) return NetError(error, "send to " + request.url);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(request.max_response_bytes);
  http::read(stream, buffer, parser, error);
  if (error) return NetError(error, "read from " + request.url);
  HttpResult result;
  auto& response = parser.get();
  result.status = response.result_int();
  for (const auto& field : response) {
    result.headers.emplace_back(absl::AsciiStrToLower(std::string(field.name_string())),
                                std::string(field.value()));
  }
  result.body = std::move(response.body());
  stream.socket().shutdown(tcp::socket::shutdown_both, error);
  return result;
}

namespace {

class SseClientImpl : public SseClient, public std::enable_shared_from_this<SseClientImpl> {
 public:
  SseClientImpl(EventLoop& loop, HttpClientRequest request, EventCallback on_event,
                DoneCallback on_done)
      : loop_(loop),
        request_(std::move(request)),
        on_event_(std::move(on_event)),
        on_done_(std::move(on_done)),
        resolver_(loop.context()),
        stream_(loop.context()),
        parser_sse_([this](const SseEvent& event) {
          if (!done_) on_event_(event);
        }) {}

  void Start() {
    absl::StatusOr<ParsedUrl> url = ParseHttpUrl(request_.url);
    if (!url.ok()) {
      Done(url.status());
      return;
    }
    url_ = *url;
    auto self = shared_from_this();
    stream_.expires_after(ToChrono(request_.timeout));
    resolver_.async_resolve(
        url_.host, url_.port, [self](beast::error_code error, tcp::resolver::results_type results) {
          if (error) return self->Done(NetError(error, "resolve"));
          self->stream_.async_connect(results, [self](beast::error_code error, const auto&) {
            if (error) {
              return self->Done(NetError(error, "connect to " + self->request_.url));
            }
            beast::error_code ignored;  // small request writes go out at once (see the server)
            self->stream_.socket().set_option(tcp::no_delay(true), ignored);
            self->Send();
          });
        });
  }

  void Cancel() override {
    auto self = shared_from_this();
    loop_.Post([self] {
      if (self->done_) return;
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
      self->stream_.close();
      self->Done(absl::CancelledError("cancelled by the client"));
    });
  }

 private:
  void Send() {
    Prepare(message_, url_, request_);
    message_.set(http::field::accept, "text/event-stream");
    auto self = shared_from_this();
    http::async_write(stream_, message_, [self](beast::error_code error, size_t) {
      if (error) return self->Done(NetError(error, "send"));
      self->ReadHeader();
    });
  }

  void ReadHeader() {
    parser_.body_limit(std::numeric_limits<std::uint64_t>::max());  // streams run long
    auto self = shared_from_this();
    http::async_read_header(stream_, buffer_, parser_, [self](beast::error_code error, size_t) {
      // need_buffer: body bytes came with the header and wait for a body buffer (ReadBody).
      if (error == http::error::need_buffer) error = {};
      if (error) return self->Done(NetError(error, "read response header"));
      self->status_ = self->parser_.get().result_int();
      // The answer may take as long as generation takes: no deadline from here on.
      self->stream_.expires_never();
      self->ReadBody();
    });
  }

  void ReadBody() {
    if (done_) return;
    parser_.get().body().data = chunk_;
    parser_.get().body().size = sizeof(chunk_);
    auto self = shared_from_this();
    // read_some, not read: deliver events as they arrive instead of when the buffer fills.
    http::async_read_some(stream_, buffer_, parser_, [self](beast::error_code error, size_t) {
      size_t got = sizeof(self->chunk_) - self->parser_.get().body().size;
      if (got > 0) self->Deliver(std::string_view(self->chunk_, got));
      if (error == http::error::need_buffer) error = {};
      if (error) {
        if (error == http::error::end_of_stream || error == asio::error::eof) {
          return self->Done(absl::OkStatus());
        }
        return self->Done(NetError(error, "read stream"));
      }
      if (self->parser_.is_done()) return self->Done(absl::OkStatus());
      self->ReadBody();
    });
  }

  void Deliver(std::string_view bytes) {
    if (status_ < 200 || status_ >= 300) {
      if (error_body_.size() < 64 * 1024) error_body_.append(bytes);
      return;
    }
    if (!parser_sse_.Feed(bytes)) {
      Done(absl::ResourceExhaustedError("an event in the stream exceeds the size limit"));
      beast::error_code ignored;
      stream_.close();
    }
  }

  void Done(absl::Status status) {
    if (done_) return;
    done_ = true;
    if (status.ok() && (status_ < 200 || status_ >= 300)) {
      status = absl::UnavailableError(absl::StrCat("HTTP ", status_));
    }
    auto callback = std::move(on_done_);
    on_done_ = nullptr;
    if (callback) callback(status, status_, error_body_);
  }

  EventLoop& loop_;
  HttpClientRequest request_;
  EventCallback on_event_;
  DoneCallback on_done_;
  tcp::resolver resolver_;
  beast::tcp_stream stream_;
  ParsedUrl url_;
  http::request<http::string_body> message_;
  beast::flat_buffer buffer_;
  http::response_parser<http::buffer_body> parser_;
  char chunk_[16 * 1024];
  SseParser parser_sse_;
  int status_ = 0;
  std::string error_body_;
  bool done_ = false;
};

}  // namespace

std::shared_ptr<SseClient> SseClient::Open(EventLoop& loop, HttpClientRequest request,
                                           EventCallback on_event, DoneCallback on_done) {
  auto client = std::make_shared<SseClientImpl>(loop, std::move(request), std::move(on_event),
                                                std::move(on_done));
  loop.Post([client] { client->Start(); });
  return client;
}

}  // namespace tandem::net
