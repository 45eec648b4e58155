// A minimal blocking HTTP/1.1 call over one loopback TCP connection with a hard deadline on
// every step (connect, send, receive), for readiness probes, drain requests and the control
// calls of `tandem status|scale|apply|down`. The orchestrator's loop probes many processes in
// turn, so a process that accepts a connection and never answers must cost at most `timeout`.
//
//   absl::StatusOr<HttpCallResult> r = HttpCall({.address = "127.0.0.1:8101", .path = "/ready",
//                                                .timeout = absl::Milliseconds(500)});
//   bool ready = r.ok() && r->status == 200;
//
// Sends `Connection: close` and reads until the peer closes (or Content-Length is reached).
// Thread-safety: reentrant.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace tandem::deploy::internal {

struct HttpCallRequest {
  std::string address;  // host:port (IPv4 literal or "localhost")
  std::string method = "GET";
  std::string path = "/";
  std::string body;
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;
  absl::Duration timeout = absl::Seconds(5);  // for the whole call
};

struct HttpCallResult {
  int status = 0;
  std::string body;
};

// kUnavailable when the connection cannot be made or breaks (nothing was answered),
// kDeadlineExceeded after `timeout`, kDataLoss for a malformed response.
absl::StatusOr<HttpCallResult> HttpCall(const HttpCallRequest& request);

}  // namespace tandem::deploy::internal
