#include "model/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/internal/text.h"

namespace tandem::model {
namespace {

using internal::Printable;

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr int kMaxDims = 4;  // GGML_MAX_DIMS

bool IsValidType(uint32_t type) { return type <= static_cast<uint32_t>(GgufType::kFloat64); }

// Bytes a value of `type` needs at least (arrays and strings: their length fields).
uint64_t MinValueBytes(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
    case GgufType::kString:
      return 8;
    case GgufType::kArray:
      return 12;
  }
  return 1;
}

// The double with the fewest significant digits that rounds to `value`, so a float32 1e-5
// reads back as 1e-5 rather than 9.99999974737875e-06.
double ShortestDouble(float value) {
  if (!std::isfinite(value)) return value;
  for (int digits = 6; digits < 9; ++digits) {
    const double candidate = std::strtod(absl::StrFormat("%.*g", digits, value).c_str(), nullptr);
    if (static_cast<float>(candidate) == value) return candidate;
  }
  return value;
}

// Reads little-endian fields from the buffer; every read is bounds-checked and a failure
// records what was being read.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& source, const GgufLimits& limits)
      : data_(data), size_(size), source_(source), limits_(limits) {}

  size_t position() const { return position_; }
  size_t remaining() const { return size_ - position_; }

  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", context_, what));
  }
  absl::Status Truncated(uint64_t needed) const {
    return Error(absl::StrCat("file is truncated: needs ", needed, " more bytes at offset ",
                              position_, ", but the file has ", size_, " bytes"));
  }
  void SetContext(std::string context) { context_ = std::move(context); }

  template <typename T>
  absl::Status Read(T* out) {
    if (remaining() < sizeof(T)) return Truncated(sizeof(T));
    std::memcpy(out, data_ + position_, sizeof(T));
    position_ += sizeof(T);
    return absl::OkStatus();
  }

  absl::Status ReadString(std::string* out) {
    uint64_t length = 0;
    if (absl::Status s = Read(&length); !s.ok()) return s;
    if (length > limits_.max_string_bytes) {
      return Error(absl::StrCat("string length ", length, " exceeds the limit of ",
                                limits_.max_string_bytes, " bytes"));
    }
    if (length > remaining()) return Truncated(length);
    out->assign(reinterpret_cast<const char*>(data_ + position_), length);
    position_ += length;
    return absl::OkStatus();
  }

  absl::Status ReadValue(GgufType type, int depth, GgufValue* out) {
    out->type = type;
    switch (type) {
      case GgufType::kUint8:
        return ReadInteger<uint8_t>(out);
      case GgufType::kInt8:
        return ReadInteger<int8_t>(out);
      case GgufType::kUint16:
        return ReadInteger<uint16_t>(out);
      case GgufType::kInt16:
        return ReadInteger<int16_t>(out);
      case GgufType::kUint32:
        return ReadInteger<uint32_t>(out);
      case GgufType::kInt32:
        return ReadInteger<int32_t>(out);
      case GgufType::kUint64:
        return ReadInteger<uint64_t>(out);
      case GgufType::kInt64:
        return ReadInteger<int64_t>(out);
      case GgufType::kFloat32: {
        float v = 0;
        if (absl::Status s = Read(&v); !s.ok()) return s;
        out->number = ShortestDouble(v);
        return absl::OkStatus();
      }
      case GgufType::kFloat64:
        return Read(&out->number);
      case GgufType::kBool: {
        uint8_t v = 0;
        if (absl::Status s = Read(&v); !s.ok()) return s;
        if (v > 1) return Error(absl::StrCat("bool value ", v, " is neither 0 nor 1"));
        out->boolean = v != 0;
        return absl::OkStatus();
      }
      case GgufType::kString:
        return ReadString(&out->string);
      case GgufType::kArray: {
        if (depth >= limits_.max_array_depth) {
          return Error(absl::StrCat("arrays nested deeper than ", limits_.max_array_depth));
        }
        uint32_t element_type = 0;
        uint64_t count = 0;
        if (absl::Status s = Read(&element_type); !s.ok()) return s;
        if (!IsValidType(element_type)) {
          return Error(absl::StrCat("array element type ", element_type,
                                    " is not a GGUF value type (0-12)"));
        }
        if (absl::Status s = Read(&count); !s.ok()) return s;
        out->element_type = static_cast<GgufType>(element_type);
        if (count > limits_.max_array_elements) {
          return Error(absl::StrCat("array of ", count, " elements exceeds the limit of ",
                                    limits_.max_array_elements));
        }
        // Checked before reserving, so a forged count cannot allocate beyond the file size.
        if (count > remaining() / MinValueBytes(out->element_type)) {
          return Truncated(count * MinValueBytes(out->element_type));
        }
        out->array.resize(count);
        for (GgufValue& element : out->array) {
          if (absl::Status s = ReadValue(out->element_type, depth + 1, &element); !s.ok()) return s;
        }
        return absl::OkStatus();
      }
    }
    return Error(absl::StrCat("value type ", static_cast<uint32_t>(type),
                              " is not a GGUF value type (0-12)"));
  }

 private:
  template <typename T>
  absl::Status ReadInteger(GgufValue* out) {
    T v{};
    if (absl::Status s = Read(&v); !s.ok()) return s;
    out->integer = static_cast<int64_t>(v);
    return absl::OkStatus();
  }

  const uint8_t* data_;
  size_t size_;
  size_t position_ = 0;
  std::string source_;
  const GgufLimits& limits_;
  std::string context_;
};

uint64_t AlignUp(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

void AppendBytes(std::string* out, const void* data, size_t size) {
  out->append(static_cast<const char*>(data), size);
}
template <typename T>
void AppendPod(std::string* out, T value) {
  AppendBytes(out, &value, sizeof(T));
}
void AppendString(std::string* out, absl::string_view text) {
  AppendPod<uint64_t>(out, text.size());
  out->append(text.data(), text.size());
}

void AppendValue(std::string* out, const GgufValue& value) {
  switch (value.type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
      AppendPod<uint8_t>(out, static_cast<uint8_t>(value.integer));
      break;
    case GgufType::kUint16:
    case GgufType::kInt16:
      AppendPod<uint16_t>(out, static_cast<uint16_t>(value.integer));
      break;
    case GgufType::kUint32:
    case GgufType::kInt32:
      AppendPod<uint32_t>(out, static_cast<uint32_t>(value.integer));
      break;
    case GgufType::kUint64:
    case GgufType::kInt64:
      AppendPod<uint64_t>(out, static_cast<uint64_t>(value.integer));
      break;
    case GgufType::kFloat32:
      AppendPod<float>(out, static_cast<float>(value.number));
      break;
    case GgufType::kFloat64:
      AppendPod<double>(out, value.number);
      break;
    case GgufType::kBool:
      AppendPod<uint8_t>(out, value.boolean ? 1 : 0);
      break;
    case GgufType::kString:
      AppendString(out, value.string);
      break;
    case GgufType::kArray:
      AppendPod<uint32_t>(out, static_cast<uint32_t>(value.element_type));
      AppendPod<uint64_t>(out, value.array.size());
      for (const GgufValue& element : value.array) AppendValue(out, element);
      break;
  }
}

}  // namespace

std::string GgufTypeName(GgufType type) {
  static constexpr const char* kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                           "int32",  "float32", "bool",   "string", "array",
                                           "uint64", "int64",   "float64"};
  const auto index = static_cast<uint32_t>(type);
  return index < std::size(kNames) ? kNames[index] : "unknown";
}

GgufValue GgufValue::Uint32(uint32_t v) {
  GgufValue value;
  value.type = GgufType::kUint32;
  value.integer = v;
  return value;
}
GgufValue GgufValue::Int32(int32_t v) {
  GgufValue value;
  value.type = GgufType::kInt32;
  value.integer = v;
  return value;
}
GgufValue GgufValue::Uint64(uint64_t v) {
  GgufValue value;
  value.type = GgufType::kUint64;
  value.integer = static_cast<int64_t>(v);
  return value;
}
GgufValue GgufValue::Float32(float v) {
  GgufValue value;
  value.type = GgufType::kFloat32;
  value.number = v;
  return value;
}
GgufValue GgufValue::Bool(bool v) {
  GgufValue value;
  value.type = GgufType::kBool;
  value.boolean = v;
  return value;
}
GgufValue GgufValue::String(std::string v) {
  GgufValue value;
  value.type = GgufType::kString;
  value.string = std::move(v);
  return value;
}
GgufValue GgufValue::Array(GgufType element_type, std::vector<GgufValue> values) {
  GgufValue value;
  value.type = GgufType::kArray;
  value.element_type = element_type;
  value.array = std::move(values);
  return value;
}

bool GgufValue::IsInteger() const {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64:
      return true;
    default:
      return false;
  }
}

std::optional<double> GgufValue::AsDouble() const {
  if (type == GgufType::kFloat32 || type == GgufType::kFloat64) return number;
  if (type == GgufType::kUint64) return static_cast<double>(static_cast<uint64_t>(integer));
  if (IsInteger()) return static_cast<double>(integer);
  return std::nullopt;
}

std::string GgufValue::DebugString(int max_elements) const {
  switch (type) {
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      return absl::StrFormat("%g", number);
    case GgufType::kBool:
      return boolean ? "true" : "false";
    case GgufType::kString:
      return absl::StrCat("\"", Printable(string), "\"");
    case GgufType::kUint64:
      return absl::StrCat(static_cast<uint64_t>(integer));
    case GgufType::kArray: {
      std::string out = absl::StrCat("[", array.size(), " x ", GgufTypeName(element_type));
      for (size_t i = 0; i < array.size() && i < static_cast<size_t>(max_elements); ++i) {
        absl::StrAppend(&out, i == 0 ? ": " : ", ", array[i].DebugString(max_elements));
      }
      if (array.size() > static_cast<size_t>(max_elements)) out += ", ...";
      return out + "]";
    }
    default:
      return absl::StrCat(integer);
  }
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_index.find(absl::string_view(key.data(), key.size()));
  return it == metadata_index.end() ? nullptr : &metadata[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index.find(absl::string_view(name.data(), name.size()));
  return it == tensor_index.end() ? nullptr : &tensors[it->second];
}

absl::StatusOr<GgufFile> ParseGguf(const uint8_t* data, size_t size, std::string_view source_name,
                                   const GgufLimits& limits) {
  const std::string source(source_name);
  Reader reader(data, size, source, limits);
  GgufFile file;
  if (size < 4 || std::memcmp(data, kMagic, 4) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a GGUF file: expected magic \"GGUF\" at offset 0, found \"",
                     Printable(absl::string_view(reinterpret_cast<const char*>(data),
                                                 std::min<size_t>(size, 4))),
                     "\""));
  }
  reader.SetContext("header: ");
  uint32_t magic = 0;
  if (absl::Status s = reader.Read(&magic); !s.ok()) return s;
  if (absl::Status s = reader.Read(&file.version); !s.ok()) return s;
  if (file.version != 2 && file.version != 3) {
    return reader.Error(
        absl::StrCat("GGUF version ", file.version, " is not supported (expected 2 or 3",
                     file.version == 1 ? "; version 1 files must be converted" : "",
                     file.version > 0xffff ? "; big-endian files are not supported" : "", ")"));
  }
  uint64_t tensor_count = 0, kv_count = 0;
  if (absl::Status s = reader.Read(&tensor_count); !s.ok()) return s;
  if (absl::Status s = reader.Read(&kv_count); !s.ok()) return s;
  // Each key/value needs at least 13 bytes and each tensor info 32: bigger counts cannot fit.
  if (kv_count > reader.remaining() / 13) {
    return reader.Error(absl::StrCat("metadata count ", kv_count, " cannot fit in the ",
                                     reader.remaining(), " bytes left (file truncated?)"));
  }
  if (tensor_count > limits.max_tensors || tensor_count > reader.remaining() / 32) {
    return reader.Error(absl::StrCat("tensor count ", tensor_count, " cannot fit in the ",
                                     reader.remaining(), " bytes left (file truncated?)"));
  }

  file.metadata.reserve(kv_count);
  for (uint64_t i = 0; i < kv_count; ++i) {
    reader.SetContext(absl::StrCat("metadata entry ", i, ": "));
    std::string key;
    if (absl::Status s = reader.ReadString(&key); !s.ok()) return s;
    reader.SetContext(absl::StrCat("metadata key '", Printable(key), "': "));
    uint32_t type = 0;
    if (absl::Status s = reader.Read(&type); !s.ok()) return s;
    if (!IsValidType(type)) {
      return reader.Error(absl::StrCat("value type ", type, " is not a GGUF value type (0-12)"));
    }
    GgufValue value;
    if (absl::Status s = reader.ReadValue(static_cast<GgufType>(type), 0, &value); !s.ok()) {
      return s;
    }
    if (!file.metadata_index.emplace(key, file.metadata.size()).second) {
      return reader.Error("key appears twice");
    }
    file.metadata.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* alignment = file.Find("general.alignment")) {
    reader.SetContext("metadata key 'general.alignment': ");
    if (!alignment->IsInteger() || alignment->integer <= 0 ||
        (alignment->integer & (alignment->integer - 1)) != 0 || alignment->integer > (1 << 30)) {
      return reader.Error(
          absl::StrCat("expected a power of two (uint32), got ", alignment->DebugString()));
    }
    file.alignment = static_cast<uint64_t>(alignment->integer);
  }

  file.tensors.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    reader.SetContext(absl::StrCat("tensor info ", i, ": "));
    GgufTensorInfo info;
    if (absl::Status s = reader.ReadString(&info.name); !s.ok()) return s;
    reader.SetContext(absl::StrCat("tensor '", Printable(info.name), "': "));
    uint32_t dims = 0;
    if (absl::Status s = reader.Read(&dims); !s.ok()) return s;
    if (dims == 0 || dims > kMaxDims) {
      return reader.Error(absl::StrCat("has ", dims, " dimensions, expected 1 to ", kMaxDims));
    }
    int64_t elements = 1;
    for (uint32_t d = 0; d < dims; ++d) {
      uint64_t extent = 0;
      if (absl::Status s = reader.Read(&extent); !s.ok()) return s;
      if (extent == 0 || extent > (uint64_t{1} << 40) ||
          elements > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(extent)) {
        return reader.Error(absl::StrCat("dimension ", d, " = ", extent,
                                         " is zero or makes the tensor impossibly large"));
      }
      info.shape.push_back(static_cast<int64_t>(extent));
      elements *= static_cast<int64_t>(extent);
    }
    uint32_t type = 0;
    if (absl::Status s = reader.Read(&type); !s.ok()) return s;
    info.dtype = static_cast<DType>(type);
    if (!IsSupportedDType(info.dtype)) {
      return reader.Error(
          absl::StrCat("has type ", DTypeName(info.dtype),
                       ", which is not supported (supported: ", SupportedDTypeNames(), ")"));
    }
    if (info.shape[0] % BlockElements(info.dtype) != 0) {
      return reader.Error(absl::StrCat("its contiguous dimension ", info.shape[0],
                                       " is not a multiple of the ", DTypeName(info.dtype),
                                       " block size ", BlockElements(info.dtype)));
    }
    const int64_t bytes = ByteSize(info.dtype, elements);
    if (bytes < 0) return reader.Error("byte size overflows");
    info.size_bytes = static_cast<uint64_t>(bytes);
    if (absl::Status s = reader.Read(&info.offset); !s.ok()) return s;
    if (info.offset % file.alignment != 0) {
      return reader.Error(absl::StrCat("data offset ", info.offset,
                                       " is not a multiple of the alignment ", file.alignment));
    }
    if (!file.tensor_index.emplace(info.name, file.tensors.size()).second) {
      return reader.Error("name appears twice");
    }
    file.tensors.push_back(std::move(info));
  }

  file.data_offset = AlignUp(reader.position(), file.alignment);
  const uint64_t data_size = size >= file.data_offset ? size - file.data_offset : 0;
  if (!file.tensors.empty() && file.data_offset > size) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": file is truncated: the data region should start at offset ",
                     file.data_offset, " but the file has ", size, " bytes"));
  }
  for (const GgufTensorInfo& info : file.tensors) {
    if (info.offset > data_size || info.size_bytes > data_size - info.offset) {
      return absl::InvalidArgumentError(
          absl::StrCat(source, ": tensor '", Printable(info.name), "' (", DTypeName(info.dtype),
                       ", ", info.size_bytes, " bytes at data offset ", info.offset,
                       ") extends past the end of the file (data region is ", data_size,
                       " bytes; file truncated?)"));
    }
  }
  std::vector<const GgufTensorInfo*> by_offset;
  by_offset.reserve(file.tensors.size());
  for (const GgufTensorInfo& info : file.tensors) by_offset.push_back(&info);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo& previous = *by_offset[i - 1];
    if (previous.offset + previous.size_bytes > by_offset[i]->offset) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": tensors '", Printable(previous.name), "' (bytes ", previous.offset, "..",
          previous.offset + previous.size_bytes, ") and '", Printable(by_offset[i]->name),
          "' (from byte ", by_offset[i]->offset, ") overlap in the data region"));
    }
  }
  return file;
}

GgufWriter::~GgufWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove((path_ + ".tmp").c_str());
  }
}

void GgufWriter::Set(std::string key, GgufValue value) {
  for (auto& [existing, existing_value] : metadata_) {
    if (existing == key) {
      existing_value = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(std::move(key), std::move(value));
}

absl::Status GgufWriter::AddTensor(std::string name, DType dtype, std::vector<int64_t> shape) {
  if (file_ != nullptr) {
    return absl::FailedPreconditionError("GGUF writer: tensors must be declared before Open");
  }
  if (!IsSupportedDType(dtype) || shape.empty() || shape.size() > kMaxDims) {
    return absl::InvalidArgumentError(absl::StrCat("GGUF writer: tensor '", name, "': type ",
                                                   DTypeName(dtype), " with ", shape.size(),
                                                   " dimensions cannot be written"));
  }
  int64_t elements = 1;
  for (int64_t extent : shape) elements *= extent;
  const int64_t bytes = ByteSize(dtype, elements);
  if (bytes < 0 || shape[0] % BlockElements(dtype) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("GGUF writer: tensor '", name, "': contiguous dimension ", shape[0],
                     " is not a multiple of the ", DTypeName(dtype), " block size"));
  }
  GgufTensorInfo info;
  info.name = std::move(name);
  info.dtype = dtype;
  info.shape = std::move(shape);
  info.size_bytes = static_cast<uint64_t>(bytes);
  info.offset = data_bytes_;
  data_bytes_ = AlignUp(info.offset + info.size_bytes, alignment_);
  tensors_.push_back(std::move(info));
  return absl::OkStatus();
}

std::string GgufWriter::SerializeHeader() const {
  std::string out;
  AppendBytes(&out, kMagic, 4);
  AppendPod<uint32_t>(&out, 3);
  AppendPod<uint64_t>(&out, tensors_.size());
  const bool has_alignment_key =
      std::any_of(metadata_.begin(), metadata_.end(),
                  [](const auto& kv) { return kv.first == "general.alignment"; });
  AppendPod<uint64_t>(&out, metadata_.size() + (has_alignment_key || alignment_ == 32 ? 0 : 1));
  for (const auto& [key, value] : metadata_) {
    AppendString(&out, key);
    AppendPod<uint32_t>(&out, static_cast<uint32_t>(value.type));
    AppendValue(&out, value);
  }
  if (!has_alignment_key && alignment_ != 32) {
    AppendString(&out, "general.alignment");
    AppendPod<uint32_t>(&out, static_cast<uint32_t>(GgufType::kUint32));
    AppendPod<uint32_t>(&out, static_cast<uint32_t>(alignment_));
  }
  for (const GgufTensorInfo& info : tensors_) {
    AppendString(&out, info.name);
    AppendPod<uint32_t>(&out, static_cast<uint32_t>(info.shape.size()));
    for (int64_t extent : info.shape) AppendPod<uint64_t>(&out, static_cast<uint64_t>(extent));
    AppendPod<uint32_t>(&out, static_cast<uint32_t>(info.dtype));
    AppendPod<uint64_t>(&out, info.offset);
  }
  out.resize(AlignUp(out.size(), alignment_), '\0');
  return out;
}

absl::Status GgufWriter::Open(const std::string& path) {
  if (file_ != nullptr) return absl::FailedPreconditionError("GGUF writer: already open");
  path_ = path;
  const std::string temporary = path + ".tmp";
  file_ = std::fopen(temporary.c_str(), "wb");
  if (file_ == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot create '", temporary, "': ", std::strerror(errno)));
  }
  std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
  const std::string header = SerializeHeader();
  if (std::fwrite(header.data(), 1, header.size(), file_) != header.size()) {
    return absl::InternalError(absl::StrCat("writing '", temporary, "': ", std::strerror(errno)));
  }
  current_ = 0;
  current_written_ = 0;
  data_written_ = 0;
  return absl::OkStatus();
}

absl::Status GgufWriter::Append(const void* data, size_t size) {
  if (file_ == nullptr) return absl::FailedPreconditionError("GGUF writer: not open");
  const auto* bytes = static_cast<const uint8_t*>(data);
  while (size > 0) {
    if (current_ >= tensors_.size()) {
      return absl::InvalidArgumentError("GGUF writer: more data than the declared tensors hold");
    }
    const GgufTensorInfo& info = tensors_[current_];
    const uint64_t take = std::min<uint64_t>(size, info.size_bytes - current_written_);
    if (std::fwrite(bytes, 1, take, file_) != take) {
      return absl::InternalError(absl::StrCat("writing '", path_, ".tmp': ", std::strerror(errno)));
    }
    bytes += take;
    size -= take;
    current_written_ += take;
    data_written_ += take;
    if (current_written_ == info.size_bytes) {
      const uint64_t padded = AlignUp(data_written_, alignment_);
      static const char kZeros[64] = {};
      for (uint64_t left = padded - data_written_; left > 0;) {
        const uint64_t chunk = std::min<uint64_t>(left, sizeof(kZeros));
        if (std::fwrite(kZeros, 1, chunk, file_) != chunk) {
          return absl::InternalError(
              absl::StrCat("writing '", path_, ".tmp': ", std::strerror(errno)));
        }
        left -= chunk;
      }
      data_written_ = padded;
      ++current_;
      current_written_ = 0;
    }
  }
  return absl::OkStatus();
}

absl::Status GgufWriter::Finish() {
  if (file_ == nullptr) return absl::FailedPreconditionError("GGUF writer: not open");
  if (current_ != tensors_.size()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "GGUF writer: tensor '", tensors_[current_].name, "' was not written in full (",
        current_written_, " of ", tensors_[current_].size_bytes, " bytes)"));
  }
  const bool flushed = std::fflush(file_) == 0;
  const bool closed = std::fclose(file_) == 0;
  file_ = nullptr;
  const std::string temporary = path_ + ".tmp";
  if (!flushed || !closed) {
    std::remove(temporary.c_str());
    return absl::InternalError(absl::StrCat("writing '", temporary, "': ", std::strerror(errno)));
  }
  if (std::rename(temporary.c_str(), path_.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("renaming '", temporary, "' to '", path_, "': ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace tandem::model
