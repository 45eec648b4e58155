// The HTTP server and clients over loopback: round trips, keep-alive, asynchronous answers,
// SSE streams (ordering, backpressure, disconnects, 1,000 at once on one thread), the bad-input
// table, slow senders, and graceful shutdown.
#include "net/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <iostream>
#include <thread>

#include "gtest/gtest.h"
#include "net/http_client.h"
#include "nlohmann/json.hpp"

namespace tandem::net {
namespace {

// A raw TCP client for sending exactly the bytes a test wants.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  }
  ~RawClient() { Close(); }
  void Send(const std::string& bytes) {
    (void)!::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  // Reads until the peer closes or `timeout_ms` passes without data.
  std::string ReadAll(int timeout_ms = 3000) {
    std::string out;
    char buffer[8192];
    while (true) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, timeout_ms) <= 0) break;
      ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      out.append(buffer, n);
    }
    return out;
  }
  std::string ReadSome(int timeout_ms = 3000) {
    char buffer[8192];
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout_ms) <= 0) return "";
    ssize_t n = ::recv(fd_, buffer, sizeof(buffer), 0);
    return n > 0 ? std::string(buffer, n) : "";
  }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

std::string Url(const HttpServer& server, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(server.port()) + path;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.threads = 1;
    options_.read_timeout = absl::Milliseconds(400);
    options_.max_body_bytes = 1024;
    options_.max_header_bytes = 1024;
    options_.sse_high_watermark_bytes = 64 * 1024;
  }

  void StartServer() {
    server_ = std::make_unique<HttpServer>(options_);
    server_->Handle("GET", "/hello", [](std::shared_ptr<HttpExchange> x) {
      x->ReplyJson(200, R"({"hello":"world"})");
    });
    server_->Handle("POST", "/echo",
                    [](std::shared_ptr<HttpExchange> x) { x->ReplyJson(200, x->request().body); },
                    {.json_body = true});
    server_->Handle("GET", "/later", [this](std::shared_ptr<HttpExchange> x) {
      later_calls_.fetch_add(1);
      std::thread([x] {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        x->ReplyText(202, "done from another thread");
      }).detach();
    });
    server_->Handle("GET", "/query", [](std::shared_ptr<HttpExchange> x) {
      x->ReplyText(200, x->request().QueryParam("name").value_or("none"));
    });
    server_->Handle("GET", "/stream", [this](std::shared_ptr<HttpExchange> x) {
      int count = std::stoi(x->request().QueryParam("n").value_or("10"));
      auto stream = x->StartSse();
      stream->OnClose([this](absl::Status reason) {
        std::lock_guard<std::mutex> lock(mu_);
        close_reasons_.push_back(reason);
      });
      std::thread([stream, count] {
        for (int i = 0; i < count; ++i) {
          if (!stream->Send(std::to_string(i))) return;
        }
        stream->Close();
      }).detach();
    });
    server_->Handle("GET", "/endless", [this](std::shared_ptr<HttpExchange> x) {
      auto stream = x->StartSse();
      stream->OnClose([this](absl::Status reason) {
        std::lock_guard<std::mutex> lock(mu_);
        close_reasons_.push_back(reason);
      });
      std::thread([stream] {
        std::string payload(1000, 'x');
        while (stream->Send(payload)) {
          std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
      }).detach();
    });
    server_->Handle(
        "GET", "/v1/",
        [](std::shared_ptr<HttpExchange> x) { x->ReplyText(200, "prefix:" + x->request().path); },
        {.prefix = true});
    ASSERT_TRUE(server_->Start().ok());
  }

  void TearDown() override {
    if (server_) server_->Shutdown(absl::Seconds(1));
  }

  std::vector<absl::Status> CloseReasons() {
    std::lock_guard<std::mutex> lock(mu_);
    return close_reasons_;
  }

  HttpServerOptions options_;
  std::unique_ptr<HttpServer> server_;
  std::atomic<int> later_calls_{0};
  std::mutex mu_;
  std::vector<absl::Status> close_reasons_;
};

TEST_F(HttpServerTest, RoundTripsRoutesAndAsyncAnswers) {
  StartServer();
  auto r = HttpClient::Fetch({.url = Url(*server_, "/hello")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"hello":"world"})");
  EXPECT_EQ(*r->Header("server"), "tandem");
  r = HttpClient::Fetch({.method = "POST", .url = Url(*server_, "/echo"), .body = "[1,2]"});
  EXPECT_EQ(r->body, "[1,2]");
  r = HttpClient::Fetch({.url = Url(*server_, "/later")});
  EXPECT_EQ(r->status, 202);
  EXPECT_EQ(r->body, "done from another thread");
  r = HttpClient::Fetch({.url = Url(*server_, "/query?x=1&name=a%20b+c")});
  EXPECT_EQ(r->body, "a b c");
  r = HttpClient::Fetch({.url = Url(*server_, "/v1/models/x")});
  EXPECT_EQ(r->body, "prefix:/v1/models/x");
  r = HttpClient::Fetch({.url = Url(*server_, "/nope")});
  EXPECT_EQ(r->status, 404);
  EXPECT_TRUE(nlohmann::json::parse(r->body).contains("error"));
  r = HttpClient::Fetch({.method = "DELETE", .url = Url(*server_, "/hello")});
  EXPECT_EQ(r->status, 405);
  EXPECT_EQ(*r->Header("allow"), "GET");
}

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  StartServer();
  RawClient client(server_->port());
  for (int i = 0; i < 5; ++i) {
    client.Send("GET /hello HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string response = client.ReadSome();
    EXPECT_NE(response.find("200 OK"), std::string::npos) << i;
    EXPECT_NE(response.find("hello"), std::string::npos);
  }
  EXPECT_EQ(server_->active_connections(), 1);
  // Chunked request body.
  client.Send(
      "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Transfer-Encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2]\r\n0\r\n\r\n");
  EXPECT_NE(client.ReadSome().find("[1,2]"), std::string::npos);
}

struct BadCase {
  const char* name;
  std::string bytes;
  const char* status;
};

TEST_F(HttpServerTest, BadInputTableGetsTheRightStatusAndServerKeepsServing) {
  StartServer();
  std::vector<BadCase> cases = {
      {"malformed request line", "GARBAGE\r\n\r\n", "400"},
      {"bad header", "GET /hello HTTP/1.1\r\nNo colon here\r\n\r\n", "400"},
      {"oversized header", "GET /hello HTTP/1.1\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n",
       "431"},
      {"oversized body",
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       "Content-Length: 5000\r\n\r\n" +
           std::string(5000, '1'),
       "413"},
      {"wrong content type",
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n"
       "Connection: close\r\nContent-Length: 2\r\n\r\n{}",
       "415"},
      {"invalid JSON",
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       "Connection: close\r\nContent-Length: 5\r\n\r\n{oops",
       "400"},
      {"bad chunk",
       "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
       "Transfer-Encoding: chunked\r\n\r\nZZ\r\nxx\r\n",
       "400"},
      {"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "400"},
  };
  for (const BadCase& c : cases) {
    RawClient client(server_->port());
    auto start = std::chrono::steady_clock::now();
    client.Send(c.bytes);
    std::string response = client.ReadAll(2000);
    (void)start;
    EXPECT_EQ(response.substr(0, 12), std::string("HTTP/1.1 ") + c.status)
        << c.name << ": " << response;
    auto ok = HttpClient::Fetch({.url = Url(*server_, "/hello")});
    ASSERT_TRUE(ok.ok() && ok->status == 200) << "after " << c.name;
  }
}

TEST_F(HttpServerTest, SlowSenderGets408AndIdleClientVanishingIsHarmless) {
  StartServer();
  RawClient slow(server_->port());
  slow.Send("GET /hello HTTP/1.1\r\nHost: x\r\n");  // never finishes its headers
  std::string response = slow.ReadAll(3000);
  EXPECT_EQ(response.substr(0, 12), "HTTP/1.1 408") << response;
  {
    RawClient vanish(server_->port());
    vanish.Send("GET /hel");
  }
  auto ok = HttpClient::Fetch({.url = Url(*server_, "/hello")});
  EXPECT_EQ(ok->status, 200);
}

TEST_F(HttpServerTest, SseEventsArriveInOrderThroughTheStreamingClient) {
  StartServer();
  EventLoop loop("client");
  std::vector<std::string> data;
  std::promise<std::pair<absl::Status, int>> done;
  auto client = SseClient::Open(
      loop, {.url = Url(*server_, "/stream?n=200")},
      [&](const SseEvent& e) { data.push_back(e.data); },
      [&](absl::Status status, int http_status, const std::string&) {
        done.set_value({status, http_status});
      });
  auto [status, http_status] = done.get_future().get();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(http_status, 200);
  ASSERT_EQ(data.size(), 200u);
  for (int i = 0; i < 200; ++i) ASSERT_EQ(data[i], std::to_string(i));
  loop.Stop();
}

TEST_F(HttpServerTest, StreamingClientReportsNonSuccessAnswers) {
  StartServer();
  EventLoop loop("client");
  std::promise<std::tuple<absl::Status, int, std::string>> done;
  auto client = SseClient::Open(
      loop, {.method = "POST", .url = Url(*server_, "/echo"), .body = "{bad"},
      [](const SseEvent&) {},
      [&](absl::Status status, int http_status, const std::string& body) {
        done.set_value({status, http_status, body});
      });
  auto [status, http_status, body] = done.get_future().get();
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(http_status, 400) << status;
  EXPECT_NE(body.find("invalid_json"), std::string::npos) << body;
  loop.Stop();
}

TEST_F(HttpServerTest, ClientVanishingMidStreamFiresOnCloseAndSlowReaderIsCut) {
  StartServer();
  {
    RawClient client(server_->port());
    client.Send("GET /endless HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_NE(client.ReadSome().find("text/event-stream"), std::string::npos);
  }  // gone
  // A reader that never reads: the server's buffer stays bounded and the stream is cut.
  RawClient stalled(server_->port());
  int small = 4096;
  setsockopt(stalled.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  stalled.Send("GET /endless HTTP/1.1\r\nHost: x\r\n\r\n");
  for (int i = 0; i < 300 && CloseReasons().size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::vector<absl::Status> reasons = CloseReasons();
  ASSERT_EQ(reasons.size(), 2u);
  EXPECT_EQ(reasons[0].code(), absl::StatusCode::kCancelled) << reasons[0];
  EXPECT_EQ(reasons[1].code(), absl::StatusCode::kResourceExhausted) << reasons[1];
  EXPECT_EQ(server_->open_streams(), 0);
}

TEST_F(HttpServerTest, ThousandConcurrentStreamsOnOneThread) {
  rlimit limit;
  getrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur < 4096) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, 4096);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  options_.threads = 1;
  server_ = std::make_unique<HttpServer>(options_);
  std::mutex mu;
  std::vector<std::shared_ptr<SseStream>> streams;
  server_->Handle("GET", "/hold", [&](std::shared_ptr<HttpExchange> x) {
    std::lock_guard<std::mutex> lock(mu);
    streams.push_back(x->StartSse());
  });
  ASSERT_TRUE(server_->Start().ok());
  constexpr int kStreams = 1000;
  EventLoop loop("clients");
  std::atomic<int> events{0}, finished{0};
  std::vector<std::shared_ptr<SseClient>> clients;
  for (int i = 0; i < kStreams; ++i) {
    clients.push_back(SseClient::Open(
        loop, {.url = Url(*server_, "/hold")}, [&](const SseEvent&) { events++; },
        [&](absl::Status status, int, const std::string&) {
          if (status.ok()) finished++;
        }));
  }
  for (int i = 0; i < 500; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (static_cast<int>(streams.size()) == kStreams && server_->open_streams() == kStreams) {
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(server_->open_streams(), kStreams);
  for (int round = 0; round < 5; ++round) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& stream : streams) stream->Send("tick");
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& stream : streams) stream->Close();
  }
  for (int i = 0; i < 1000 && finished.load() < kStreams; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(finished.load(), kStreams);
  EXPECT_EQ(events.load(), kStreams * 5);
  loop.Stop();
}

TEST_F(HttpServerTest, GracefulShutdownFinishesInFlightRequests) {
  StartServer();
  std::promise<absl::StatusOr<HttpResult>> later;
  std::thread caller([&] { later.set_value(HttpClient::Fetch({.url = Url(*server_, "/later")})); });
  // Shut down once the request is in its handler (in flight), however slowly the caller starts.
  for (int i = 0; i < 1000 && later_calls_.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(later_calls_.load(), 1);
  server_->Shutdown(absl::Seconds(2));
  auto result = later.get_future().get();
  caller.join();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->status, 202);  // answered although shutdown began first
  EXPECT_FALSE(
      HttpClient::Fetch({.url = Url(*server_, "/hello"), .timeout = absl::Seconds(1)}).ok());
  server_.reset();
}

TEST(HttpClientTest, UnreachableAndBadUrls) {
  EXPECT_EQ(HttpClient::Fetch({.url = "http://127.0.0.1:1/x"}).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(HttpClient::Fetch({.url = "ftp://x"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto parsed = ParseHttpUrl("http://[::1]:8080/a?b=c");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->host, "::1");
  EXPECT_EQ(parsed->port, "8080");
  EXPECT_EQ(parsed->target, "/a?b=c");
}

}  // namespace
}  // namespace tandem::net
