// A named POSIX shared-memory segment holding a decode worker's KV blocks, so that a prefill
// worker on the same host can write KV straight into the blocks it was given.
//
// The first kHeaderBytes of the segment hold a header with a random cookie; a peer that maps
// the segment by name proves it mapped the right one by reading the cookie the owner announced.
//
//   auto segment = SharedSegment::Create(64 << 20);        // owner (decode worker)
//   uint8_t* blocks = segment->data() + SharedSegment::kHeaderBytes;
//   auto view = SharedSegment::Open(name, cookie);          // peer (prefill worker)
//
// The owner unlinks the name when destroyed; segments left by crashed processes are removed by
// RemoveStaleSegments() at the next start.
//
// Thread-safety: the object is immutable after creation; the memory is shared by design and
// its users coordinate access through the transfer protocol.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tandem::kv {

class SharedSegment {
 public:
  static constexpr size_t kHeaderBytes = 4096;

  // Creates a new segment of `bytes` usable bytes (plus the header), named after this process.
  static absl::StatusOr<std::unique_ptr<SharedSegment>> Create(size_t bytes);
  // Maps an existing segment read-write and checks its cookie.
  static absl::StatusOr<std::unique_ptr<SharedSegment>> Open(const std::string& name,
                                                             uint64_t cookie);
  // Removes `tandem-kv-<pid>-*` segments whose process no longer runs. Returns how many.
  static int RemoveStaleSegments();

  ~SharedSegment();
  SharedSegment(const SharedSegment&) = delete;
  SharedSegment& operator=(const SharedSegment&) = delete;

  const std::string& name() const { return name_; }
  uint64_t cookie() const { return cookie_; }
  uint8_t* data() const { return data_; }  // includes the header
  size_t size() const { return size_; }    // includes the header

 private:
  SharedSegment(std::string name, uint64_t cookie, uint8_t* data, size_t size, bool owner)
      : name_(std::move(name)), cookie_(cookie), data_(data), size_(size), owner_(owner) {}

  std::string name_;
  uint64_t cookie_;
  uint8_t* data_;
  size_t size_;
  bool owner_;
};

}  // namespace tandem::kv
