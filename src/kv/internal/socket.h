// Blocking socket helpers for the KV transport (not part of the public API).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "kv/wire.h"

namespace tandem::kv::internal {

// Reads exactly `n` bytes; kUnavailable on EOF or error.
absl::Status ReadFull(int fd, void* data, size_t n);
// Writes all of `iov` (advancing through partial writes); kUnavailable on error.
absl::Status WriteAll(int fd, std::vector<iovec> iov);
// Reads exactly the bytes `iov` describes, straight into those buffers.
absl::Status ReadFullV(int fd, std::vector<iovec> iov);
absl::Status WriteFrame(int fd, const Message& message);

struct Frame {
  MessageType type;
  Message message;
};
absl::StatusOr<Frame> ReadFrame(int fd);

// Sets SO_RCVTIMEO/SO_SNDTIMEO (0 = none).
void SetTimeouts(int fd, int receive_ms, int send_ms);
void SetNoDelay(int fd);

absl::StatusOr<int> Listen(const std::string& host, int port, int* bound_port);
absl::StatusOr<int> Connect(const std::string& host, int port, int timeout_ms);

}  // namespace tandem::kv::internal
