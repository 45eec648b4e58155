// GGUF (v2 and v3) reading and writing: metadata key/values of every type (nested arrays
// included), tensor infos, `general.alignment`, and the tensor data region.
//
// `ParseGguf` reads from memory (the mmap of a file, or a fuzzer's buffer) and checks every
// count, length, offset and size against the buffer before use: a malformed file gives an
// InvalidArgument error naming the source, the key or tensor, and what was expected.
// `GgufWriter` writes a file streaming: header first, then each tensor's bytes as they are
// produced, so large models never sit in memory. The format is described in
// docs/model-formats.md.
//
//   TANDEM_ASSIGN_OR_RETURN(GgufFile gguf, ParseGguf(bytes, size, "model.gguf"));
//   const GgufValue* arch = gguf.Find("general.architecture");
//
//   GgufWriter writer;
//   writer.SetString("general.architecture", "llama");
//   writer.AddTensor("token_embd.weight", DType::kF16, {64, 512});
//   TANDEM_RETURN_IF_ERROR(writer.Open("out.gguf"));
//   TANDEM_RETURN_IF_ERROR(writer.Append(bytes_of_token_embd));
//   TANDEM_RETURN_IF_ERROR(writer.Finish());
//
// Thread-safety: GgufFile is immutable plain data; a GgufWriter is used by one thread.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/dtype.h"

namespace tandem::model {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
std::string GgufTypeName(GgufType type);

// One metadata value. Integers of every width are held in `integer` (uint64 values above
// INT64_MAX keep their bits; `type` tells the width and signedness).
struct GgufValue {
  GgufType type = GgufType::kUint32;
  int64_t integer = 0;
  double number = 0;  // kFloat32 / kFloat64
  bool boolean = false;
  std::string string;
  GgufType element_type = GgufType::kUint8;  // arrays
  std::vector<GgufValue> array;

  static GgufValue Uint32(uint32_t v);
  static GgufValue Int32(int32_t v);
  static GgufValue Uint64(uint64_t v);
  static GgufValue Float32(float v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue Array(GgufType element_type, std::vector<GgufValue> values);

  bool IsInteger() const;
  bool IsNumber() const {
    return IsInteger() || type == GgufType::kFloat32 || type == GgufType::kFloat64;
  }
  // The value as a double (integers converted); nullopt for non-numbers.
  std::optional<double> AsDouble() const;
  // "42", "\"llama\"", "[3 x string: \"a\", \"b\", ...]" with arrays cut after `max_elements`.
  std::string DebugString(int max_elements = 4) const;
};

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> shape;  // ne[0] (contiguous) first
  DType dtype = DType::kF32;
  uint64_t offset = 0;  // from the start of the data region
  uint64_t size_bytes = 0;
};

struct GgufFile {
  uint32_t version = 3;
  uint64_t alignment = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata;  // in file order
  std::vector<GgufTensorInfo> tensors;                      // in file order
  uint64_t data_offset = 0;  // where the data region starts in the file

  const GgufValue* Find(std::string_view key) const;
  const GgufTensorInfo* FindTensor(std::string_view name) const;

  absl::flat_hash_map<std::string, size_t> metadata_index;
  absl::flat_hash_map<std::string, size_t> tensor_index;
};

// Limits on what a file may declare, so a hostile header cannot make the parser allocate
// without bound (each is far above any real model).
struct GgufLimits {
  uint64_t max_string_bytes = 64ull << 20;
  uint64_t max_array_elements = 1ull << 26;
  int max_array_depth = 8;
  uint64_t max_tensors = 1ull << 20;
};

// Parses the GGUF file in `data[0..size)`. `source` names it in errors. Checks: magic, version
// (2 or 3), counts and lengths within the buffer, value types, `general.alignment` (a power of
// two), tensor names unique, at most 4 dimensions each positive, supported tensor types with a
// contiguous dimension that is a whole number of blocks, offsets aligned, every tensor inside
// the data region and no two overlapping.
absl::StatusOr<GgufFile> ParseGguf(const uint8_t* data, size_t size, std::string_view source,
                                   const GgufLimits& limits = {});

class GgufWriter {
 public:
  explicit GgufWriter(uint64_t alignment = 32) : alignment_(alignment) {}
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Metadata, in the order written (a key set twice keeps its first position, last value).
  void Set(std::string key, GgufValue value);
  void SetString(std::string key, std::string value) {
    Set(std::move(key), GgufValue::String(std::move(value)));
  }
  void SetUint32(std::string key, uint32_t value) { Set(std::move(key), GgufValue::Uint32(value)); }
  void SetFloat32(std::string key, float value) { Set(std::move(key), GgufValue::Float32(value)); }
  void SetBool(std::string key, bool value) { Set(std::move(key), GgufValue::Bool(value)); }

  // Declares a tensor; data must later be appended in declaration order. InvalidArgument for an
  // unsupported type or a shape that is not a whole number of blocks.
  absl::Status AddTensor(std::string name, DType dtype, std::vector<int64_t> shape);

  // Creates `path` and writes the header and tensor infos.
  absl::Status Open(const std::string& path);
  // Appends bytes of the current tensor; a tensor may be appended in several pieces. Moves to
  // the next tensor (writing alignment padding) when the current one is complete.
  absl::Status Append(const void* data, size_t size);
  // Checks that every tensor was written in full and closes the file.
  absl::Status Finish();

  // The header bytes (for tests and in-memory files): magic through the padding before data.
  std::string SerializeHeader() const;

 private:
  uint64_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  uint64_t data_bytes_ = 0;  // data region size including padding
  std::string path_;
  std::FILE* file_ = nullptr;
  size_t current_ = 0;  // tensor being written
  uint64_t current_written_ = 0;
  uint64_t data_written_ = 0;  // bytes of the data region written so far
};

}  // namespace tandem::model
