// A read-only memory mapping of a whole file (MAP_PRIVATE, PROT_READ), unmapped on destruction.
//
//   TANDEM_ASSIGN_OR_RETURN(std::unique_ptr<MappedFile> file, MappedFile::Open("model.gguf"));
//   ParseGguf(file->data(), file->size(), file->path());
//
// Thread-safety: immutable after Open; the bytes may be read from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace tandem::model {

class MappedFile {
 public:
  // NotFound when the file does not exist; InvalidArgument when it is not a regular file.
  // An empty file maps to size 0 with a non-null data pointer.
  static absl::StatusOr<std::unique_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Access-pattern hints for a byte range (rounded out to pages): the kernel reads ahead
  // (MADV_WILLNEED / MADV_SEQUENTIAL). Errors are ignored: hints only.
  void AdviseWillNeed(uint64_t offset, uint64_t length) const;
  void AdviseSequential() const;
  // Drops the pages holding [first, first + length) from this process (MADV_DONTNEED, rounded
  // out to pages); a later read faults them in again from the file, so the bytes never change.
  // No effect outside the mapping. For a caller that copied the bytes elsewhere.
  void Release(const uint8_t* first, uint64_t length) const;
  bool Contains(const uint8_t* first, uint64_t length) const {
    return mapped_ && first >= data_ && length <= size_ &&
           static_cast<uint64_t>(first - data_) <= size_ - length;
  }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size, bool mapped)
      : path_(std::move(path)), data_(data), size_(size), mapped_(mapped) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
  bool mapped_;
};

}  // namespace tandem::model
