// safetensors reading and writing: an 8-byte little-endian header length, a JSON header
// {"name": {"dtype": "BF16", "shape": [out, in], "data_offsets": [begin, end]}, ...,
// "__metadata__": {...}}, then the data region the offsets point into.
//
// `ParseSafetensors` reads from memory and checks the header length, the JSON, every dtype
// (F32, F16, BF16), shape and offset pair (end - begin must equal elements x element size, end
// within the file) and that no two tensors overlap. `SafetensorsWriter` writes a file streaming
// (header first, then each tensor's bytes in declaration order).
//
//   TANDEM_ASSIGN_OR_RETURN(SafetensorsFile st, ParseSafetensors(bytes, size,
//   "model.safetensors")); for (const SafetensorsTensor& t : st.tensors) { ... st.data_offset +
//   t.begin ... }
//
// Shapes here are in the file's order (row-major, outermost first), the reverse of GGUF's.
//
// Thread-safety: SafetensorsFile is plain data; a SafetensorsWriter is used by one thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/dtype.h"

namespace tandem::model {

struct SafetensorsTensor {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;  // outermost first
  uint64_t begin = 0;          // relative to the data region
  uint64_t end = 0;
};

struct SafetensorsFile {
  std::vector<SafetensorsTensor> tensors;  // in offset order
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;  // 8 + header length
};

// "F32", "F16", "BF16" <-> DType; other safetensors dtypes ("I64", "F8_E4M3", ...) are refused
// by name.
absl::StatusOr<DType> SafetensorsDType(std::string_view name);
std::string SafetensorsDTypeName(DType dtype);

// Parses the safetensors file in `data[0..size)`; `source` names it in errors.
absl::StatusOr<SafetensorsFile> ParseSafetensors(const uint8_t* data, size_t size,
                                                 std::string_view source);

class SafetensorsWriter {
 public:
  SafetensorsWriter() = default;
  ~SafetensorsWriter();
  SafetensorsWriter(const SafetensorsWriter&) = delete;
  SafetensorsWriter& operator=(const SafetensorsWriter&) = delete;

  void SetMetadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }
  // `shape` outermost first. F32, F16 or BF16.
  absl::Status AddTensor(std::string name, DType dtype, std::vector<int64_t> shape);
  // Bytes of data declared so far.
  uint64_t data_bytes() const { return data_bytes_; }

  absl::Status Open(const std::string& path);
  // Appends bytes of the current tensor (in pieces if wanted), in declaration order.
  absl::Status Append(const void* data, size_t size);
  absl::Status Finish();

  std::string SerializeHeader() const;

 private:
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensor> tensors_;
  uint64_t data_bytes_ = 0;
  std::string path_;
  std::FILE* file_ = nullptr;
  uint64_t written_ = 0;
};

}  // namespace tandem::model
