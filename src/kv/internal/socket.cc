#include "kv/internal/socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace tandem::kv::internal {

absl::Status ReadFull(int fd, void* data, size_t n) {
  auto* out = static_cast<uint8_t*>(data);
  while (n > 0) {
    ssize_t got = ::recv(fd, out, n, 0);
    if (got > 0) {
      out += got;
      n -= static_cast<size_t>(got);
    } else if (got == 0) {
      return absl::UnavailableError("peer closed the connection");
    } else if (errno != EINTR) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return absl::DeadlineExceededError("timed out reading from peer");
      }
      return absl::UnavailableError(absl::StrCat("read from peer failed: ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

namespace {

// Moves past `done` bytes of `iov` starting at `*index` (partial reads and writes).
void Advance(std::vector<iovec>& iov, size_t* index, size_t done) {
  while (*index < iov.size() && done >= iov[*index].iov_len) {
    done -= iov[*index].iov_len;
    ++*index;
  }
  if (done > 0) {
    iov[*index].iov_base = static_cast<uint8_t*>(iov[*index].iov_base) + done;
    iov[*index].iov_len -= done;
  }
}

}  // namespace

absl::Status WriteAll(int fd, std::vector<iovec> iov) {
  size_t index = 0;
  while (index < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - index, IOV_MAX));
    msghdr message{};
    message.msg_iov = iov.data() + index;
    message.msg_iovlen = count;
    ssize_t sent = ::sendmsg(fd, &message, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return absl::DeadlineExceededError("timed out writing to peer");
      }
      return absl::UnavailableError(absl::StrCat("write to peer failed: ", std::strerror(errno)));
    }
    Advance(iov, &index, static_cast<size_t>(sent));
  }
  return absl::OkStatus();
}

absl::Status ReadFullV(int fd, std::vector<iovec> iov) {
  size_t index = 0;
  while (index < iov.size()) {
    int count = static_cast<int>(std::min<size_t>(iov.size() - index, IOV_MAX));
    ssize_t got = ::readv(fd, iov.data() + index, count);
    if (got == 0) return absl::UnavailableError("peer closed the connection mid-chunk");
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("read from peer failed: ", std::strerror(errno)));
    }
    Advance(iov, &index, static_cast<size_t>(got));
  }
  return absl::OkStatus();
}

absl::Status WriteFrame(int fd, const Message& message) {
  std::string bytes = EncodeFrame(message);
  return WriteAll(fd, {iovec{bytes.data(), bytes.size()}});
}

absl::StatusOr<Frame> ReadFrame(int fd) {
  char header_bytes[kHeaderBytes];
  absl::Status status = ReadFull(fd, header_bytes, sizeof(header_bytes));
  if (!status.ok()) return status;
  absl::StatusOr<FrameHeader> header = DecodeHeader({header_bytes, sizeof(header_bytes)});
  if (!header.ok()) return header.status();
  std::string body(header->body_length, '\0');
  status = ReadFull(fd, body.data(), body.size());
  if (!status.ok()) return status;
  absl::StatusOr<Message> message = DecodeBody(header->type, body);
  if (!message.ok()) return message.status();
  return Frame{header->type, std::move(*message)};
}

void SetTimeouts(int fd, int receive_ms, int send_ms) {
  timeval receive{receive_ms / 1000, (receive_ms % 1000) * 1000};
  timeval send{send_ms / 1000, (send_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &receive, sizeof(receive));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send, sizeof(send));
}

void SetNoDelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

namespace {

absl::StatusOr<addrinfo*> Resolve(const std::string& host, int port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* result = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(host.c_str(), service.c_str(), &hints, &result);
  if (rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve '", host, "': ", gai_strerror(rc)));
  }
  return result;
}

}  // namespace

absl::StatusOr<int> Listen(const std::string& host, int port, int* bound_port) {
  absl::StatusOr<addrinfo*> addresses = Resolve(host, port, true);
  if (!addresses.ok()) return addresses.status();
  absl::Status last = absl::UnavailableError("no address to listen on");
  for (addrinfo* a = *addresses; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      last = absl::UnavailableError(
          absl::StrCat("cannot listen on ", host, ":", port, ": ", std::strerror(errno)));
      ::close(fd);
      continue;
    }
    sockaddr_storage bound{};
    socklen_t length = sizeof(bound);
    getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length);
    *bound_port =
        ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    freeaddrinfo(*addresses);
    return fd;
  }
  freeaddrinfo(*addresses);
  return last;
}

absl::StatusOr<int> Connect(const std::string& host, int port, int timeout_ms) {
  absl::StatusOr<addrinfo*> addresses = Resolve(host, port, false);
  if (!addresses.ok()) return addresses.status();
  absl::Status last = absl::UnavailableError(absl::StrCat("cannot connect to ", host, ":", port));
  for (addrinfo* a = *addresses; a != nullptr; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
    if (fd < 0) continue;
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      rc = ::poll(&p, 1, timeout_ms) == 1 ? 0 : -1;
      int error = 0;
      socklen_t length = sizeof(error);
      if (rc == 0 && (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0)) {
        errno = error;
        rc = -1;
      } else if (rc != 0) {
        errno = ETIMEDOUT;
      }
    }
    if (rc != 0) {
      last = absl::UnavailableError(
          absl::StrCat("cannot connect to ", host, ":", port, ": ", std::strerror(errno)));
      ::close(fd);
      continue;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    SetNoDelay(fd);
    freeaddrinfo(*addresses);
    return fd;
  }
  freeaddrinfo(*addresses);
  return last;
}

}  // namespace tandem::kv::internal
