#include "deploy/internal/http_call.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace tandem::deploy::internal {
namespace {

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

int64_t NowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Waits for `events` on `fd` until `deadline_ms`; false on timeout.
absl::Status WaitFor(int fd, short events, int64_t deadline_ms, const std::string& what) {
  while (true) {
    int64_t left = deadline_ms - NowMillis();
    if (left <= 0) return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
    pollfd entry{fd, events, 0};
    int n = ::poll(&entry, 1, static_cast<int>(left));
    if (n > 0) return absl::OkStatus();
    if (n < 0 && errno != EINTR) {
      return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
    }
  }
}

}  // namespace

absl::StatusOr<HttpCallResult> HttpCall(const HttpCallRequest& request) {
  const std::string where = absl::StrCat(request.method, " http://", request.address, request.path);
  size_t colon = request.address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(request.address.substr(colon + 1), &port) ||
      port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", request.address, "': expected HOST:PORT"));
  }
  std::string host = request.address.substr(0, colon);
  if (host == "localhost" || host.empty()) host = "127.0.0.1";
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &address.sin_addr) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("address '", request.address, "': expected an IPv4 address"));
  }
  const int64_t deadline = NowMillis() + absl::ToInt64Milliseconds(request.timeout);
  Socket socket(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (socket.fd() < 0) return absl::UnavailableError(absl::StrCat(where, ": socket failed"));
  if (::connect(socket.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(absl::StrCat(where, ": ", std::strerror(errno)));
    }
    absl::Status waited = WaitFor(socket.fd(), POLLOUT, deadline, where);
    if (!waited.ok()) return waited;
    int error = 0;
    socklen_t length = sizeof(error);
    ::getsockopt(socket.fd(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0) return absl::UnavailableError(absl::StrCat(where, ": ", std::strerror(error)));
  }
  std::string message =
      absl::StrCat(request.method, " ", request.path, " HTTP/1.1\r\nHost: ", request.address,
                   "\r\nConnection: close\r\nAccept: */*\r\n");
  for (const auto& [name, value] : request.headers)
    absl::StrAppend(&message, name, ": ", value, "\r\n");
  if (!request.body.empty() || request.method == "POST" || request.method == "PUT") {
    absl::StrAppend(&message, "Content-Type: ", request.content_type,
                    "\r\nContent-Length: ", request.body.size(), "\r\n");
  }
  absl::StrAppend(&message, "\r\n", request.body);
  size_t sent = 0;
  while (sent < message.size()) {
    ssize_t n = ::send(socket.fd(), message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      absl::Status waited = WaitFor(socket.fd(), POLLOUT, deadline, where);
      if (!waited.ok()) return waited;
      continue;
    }
    return absl::UnavailableError(absl::StrCat(where, ": send: ", std::strerror(errno)));
  }
  std::string response;
  size_t header_end = std::string::npos;
  size_t content_length = std::string::npos;
  char buffer[16384];
  while (true) {
    if (header_end != std::string::npos && content_length != std::string::npos &&
        response.size() >= header_end + 4 + content_length) {
      break;
    }
    absl::Status waited = WaitFor(socket.fd(), POLLIN, deadline, where);
    if (!waited.ok()) return waited;
    ssize_t n = ::recv(socket.fd(), buffer, sizeof(buffer), 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (response.empty()) {
        return absl::UnavailableError(absl::StrCat(where, ": ", std::strerror(errno)));
      }
      break;
    }
    response.append(buffer, static_cast<size_t>(n));
    if (response.size() > (64u << 20)) return absl::DataLossError(where + ": response over 64 MiB");
    if (header_end == std::string::npos) {
      header_end = response.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        for (absl::string_view line :
             absl::StrSplit(absl::string_view(response).substr(0, header_end), "\r\n")) {
          if (absl::StartsWithIgnoreCase(line, "content-length:")) {
            size_t value = 0;
            if (absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &value)) {
              content_length = value;
            }
          }
        }
      }
    }
  }
  if (response.empty()) {
    return absl::UnavailableError(absl::StrCat(where, ": connection closed without an answer"));
  }
  if (header_end == std::string::npos || !absl::StartsWith(response, "HTTP/1.")) {
    return absl::DataLossError(absl::StrCat(where, ": malformed HTTP response"));
  }
  HttpCallResult result;
  size_t space = response.find(' ');
  if (space == std::string::npos ||
      !absl::SimpleAtoi(absl::string_view(response).substr(space + 1, 3), &result.status)) {
    return absl::DataLossError(absl::StrCat(where, ": malformed HTTP status line"));
  }
  result.body = response.substr(header_end + 4);
  if (content_length == std::string::npos &&
      absl::StrContains(absl::AsciiStrToLower(response.substr(0, header_end)),
                        "transfer-encoding: chunked")) {
    std::string decoded;
    size_t at = 0;
    while (at < result.body.size()) {
      size_t line_end = result.body.find("\r\n", at);
      if (line_end == std::string::npos) break;
      size_t size = 0;
      if (!absl::SimpleHexAtoi(result.body.substr(at, line_end - at), &size) || size == 0) break;
      decoded.append(result.body, line_end + 2, size);
      at = line_end + 2 + size + 2;
    }
    result.body = std::move(decoded);
  }
  if (content_length != std::string::npos && result.body.size() > content_length) {
    result.body.resize(content_length);
  }
  return result;
}

}  // namespace tandem::deploy::internal
