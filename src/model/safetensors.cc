#include "model/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "model/internal/text.h"
#include "nlohmann/json.hpp"

namespace tandem::model {
namespace {

using Json = nlohmann::json;

// Real headers are a few hundred KB at most; the safetensors library refuses above 100 MB too.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

}  // namespace

absl::StatusOr<DType> SafetensorsDType(std::string_view name) {
  if (name == "F32") return DType::kF32;
  if (name == "F16") return DType::kF16;
  if (name == "BF16") return DType::kBF16;
  return absl::InvalidArgumentError(
      absl::StrCat("dtype '", internal::Printable(absl::string_view(name.data(), name.size()), 80),
                   "' is not supported (supported: F32, F16, BF16)"));
}

std::string SafetensorsDTypeName(DType dtype) {
  switch (dtype) {
    case DType::kF32:
      return "F32";
    case DType::kF16:
      return "F16";
    case DType::kBF16:
      return "BF16";
    default:
      return "";
  }
}

absl::StatusOr<SafetensorsFile> ParseSafetensors(const uint8_t* data, size_t size,
                                                 std::string_view source_name) {
  const std::string source(source_name);
  auto error = [&](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": ", what));
  };
  if (size < 8) {
    return error(absl::StrCat("file is truncated: ", size,
                              " bytes, expected at least the 8-byte header length"));
  }
  uint64_t header_length;
  std::memcpy(&header_length, data, 8);
  if (header_length > kMaxHeaderBytes) {
    return error(absl::StrCat("header length ", header_length, " exceeds ", kMaxHeaderBytes,
                              " bytes (not a safetensors file?)"));
  }
  if (header_length > size - 8) {
    return error(absl::StrCat("file is truncated: header of ", header_length,
                              " bytes does not fit in the ", size, "-byte file"));
  }
  if (header_length < 2 || data[8] != '{') {
    return error("not a safetensors file: the header is not a JSON object");
  }
  SafetensorsFile file;
  file.data_offset = 8 + header_length;
  const uint64_t data_size = size - file.data_offset;
  const char* header = reinterpret_cast<const char*>(data + 8);
  Json json = Json::parse(header, header + header_length, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return error("malformed header: not valid JSON (expected an object of tensors)");
  }
  for (auto it = json.begin(); it != json.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) return error("'__metadata__' must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) {
          return error(absl::StrCat("'__metadata__' key '", internal::Printable(m.key(), 80),
                                    "': expected a string"));
        }
        file.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", internal::Printable(name, 80), "'");
    if (!it->is_object()) return error(absl::StrCat(where, ": expected an object"));
    const Json& entry = *it;
    SafetensorsTensor tensor;
    tensor.name = name;
    auto dtype = entry.find("dtype");
    if (dtype == entry.end() || !dtype->is_string()) {
      return error(
          absl::StrCat(where, ": missing 'dtype' (expected \"F32\", \"F16\" or \"BF16\")"));
    }
    absl::StatusOr<DType> parsed = SafetensorsDType(dtype->get<std::string>());
    if (!parsed.ok()) return error(absl::StrCat(where, ": ", parsed.status().message()));
    tensor.dtype = *parsed;
    auto shape = entry.find("shape");
    if (shape == entry.end() || !shape->is_array() || shape->size() > 8) {
      return error(absl::StrCat(where, ": 'shape' must be a list of at most 8 dimensions"));
    }
    int64_t elements = 1;
    for (const Json& extent : *shape) {
      if (!extent.is_number_unsigned() || extent.get<uint64_t>() > (uint64_t{1} << 40)) {
        return error(absl::StrCat(where, ": 'shape' entries must be non-negative integers"));
      }
      const auto value = static_cast<int64_t>(extent.get<uint64_t>());
      if (value != 0 && elements > std::numeric_limits<int64_t>::max() / value) {
        return error(absl::StrCat(where, ": shape is impossibly large"));
      }
      elements *= value;
      tensor.shape.push_back(value);
    }
    auto offsets = entry.find("data_offsets");
    if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
        !(*offsets)[0].is_number_unsigned() || !(*offsets)[1].is_number_unsigned()) {
      return error(absl::StrCat(where, ": 'data_offsets' must be [begin, end]"));
    }
    tensor.begin = (*offsets)[0].get<uint64_t>();
    tensor.end = (*offsets)[1].get<uint64_t>();
    if (tensor.end < tensor.begin) {
      return error(absl::StrCat(where, ": data_offsets [", tensor.begin, ", ", tensor.end,
                                "] end before they begin"));
    }
    const int64_t expected = ByteSize(tensor.dtype, elements);
    if (expected < 0 || tensor.end - tensor.begin != static_cast<uint64_t>(expected)) {
      return error(absl::StrCat(where, ": data_offsets [", tensor.begin, ", ", tensor.end,
                                "] hold ", tensor.end - tensor.begin, " bytes, but ",
                                SafetensorsDTypeName(tensor.dtype), " x ", elements,
                                " elements needs ", expected));
    }
    if (tensor.end > data_size) {
      return error(absl::StrCat(where, ": data_offsets [", tensor.begin, ", ", tensor.end,
                                "] extend past the end of the data region (", data_size,
                                " bytes; file truncated?)"));
    }
    file.tensors.push_back(std::move(tensor));
  }
  std::sort(file.tensors.begin(), file.tensors.end(),
            [](const SafetensorsTensor& a, const SafetensorsTensor& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  for (size_t i = 1; i < file.tensors.size(); ++i) {
    const SafetensorsTensor& previous = file.tensors[i - 1];
    const SafetensorsTensor& next = file.tensors[i];
    if (previous.end > next.begin && next.end > next.begin && previous.end > previous.begin) {
      return error(absl::StrCat("tensors '", internal::Printable(previous.name, 80), "' (bytes ",
                                previous.begin, "..", previous.end, ") and '",
                                internal::Printable(next.name, 80), "' (bytes ", next.begin, "..",
                                next.end, ") overlap"));
    }
  }
  return file;
}

SafetensorsWriter::~SafetensorsWriter() {
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove((path_ + ".tmp").c_str());
  }
}

absl::Status SafetensorsWriter::AddTensor(std::string name, DType dtype,
                                          std::vector<int64_t> shape) {
  if (file_ != nullptr) {
    return absl::FailedPreconditionError("safetensors writer: declare tensors before Open");
  }
  if (SafetensorsDTypeName(dtype).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("safetensors files hold F32, F16 or BF16 tensors; tensor '", name, "' is ",
                     DTypeName(dtype), " (use --format gguf for quantized types)"));
  }
  int64_t elements = 1;
  for (int64_t extent : shape) elements *= extent;
  SafetensorsTensor tensor;
  tensor.name = std::move(name);
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.begin = data_bytes_;
  tensor.end = data_bytes_ + static_cast<uint64_t>(ByteSize(dtype, elements));
  data_bytes_ = tensor.end;
  tensors_.push_back(std::move(tensor));
  return absl::OkStatus();
}

std::string SafetensorsWriter::SerializeHeader() const {
  // Written by hand (not through nlohmann::json, which sorts keys) so tensors appear in data
  // order, as the Hugging Face writers do.
  std::string json = "{";
  if (!metadata_.empty()) {
    Json metadata = Json::object();
    for (const auto& [key, value] : metadata_) metadata[key] = value;
    absl::StrAppend(&json, "\"__metadata__\":", metadata.dump(), ",");
  }
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const SafetensorsTensor& t = tensors_[i];
    Json shape = Json::array();
    for (int64_t extent : t.shape) shape.push_back(extent);
    absl::StrAppend(&json, i == 0 ? "" : ",", Json(t.name).dump(), ":{\"dtype\":\"",
                    SafetensorsDTypeName(t.dtype), "\",\"shape\":", shape.dump(),
                    ",\"data_offsets\":[", t.begin, ",", t.end, "]}");
  }
  json += "}";
  // Pad with spaces so the data region starts 8-byte aligned, as the reference writer does.
  while ((json.size() + 8) % 8 != 0) json += ' ';
  std::string out(8, '\0');
  const uint64_t length = json.size();
  std::memcpy(out.data(), &length, 8);
  return out + json;
}

absl::Status SafetensorsWriter::Open(const std::string& path) {
  if (file_ != nullptr) return absl::FailedPreconditionError("safetensors writer: already open");
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
  written_ = 0;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Append(const void* data, size_t size) {
  if (file_ == nullptr) return absl::FailedPreconditionError("safetensors writer: not open");
  if (written_ + size > data_bytes_) {
    return absl::InvalidArgumentError("safetensors writer: more data than the declared tensors");
  }
  if (std::fwrite(data, 1, size, file_) != size) {
    return absl::InternalError(absl::StrCat("writing '", path_, ".tmp': ", std::strerror(errno)));
  }
  written_ += size;
  return absl::OkStatus();
}

absl::Status SafetensorsWriter::Finish() {
  if (file_ == nullptr) return absl::FailedPreconditionError("safetensors writer: not open");
  if (written_ != data_bytes_) {
    return absl::FailedPreconditionError(
        absl::StrCat("safetensors writer: ", written_, " of ", data_bytes_, " data bytes written"));
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
