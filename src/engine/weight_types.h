// Weight element types the engine computes with, and a view of one weight matrix in memory.
//
// A `WeightMatrix` is a non-owning view of a row-major [rows x cols] matrix as the model file
// stores it: `rows` output features, each a row of `cols` input features in `type`'s encoding
// (quantized types pack blocks of 32 or 256 elements along the row). The bytes usually live in
// the model file's mmap.
//
//   WeightMatrix w{.data = ptr, .type = WeightType::kBF16, .rows = 896, .cols = 896};
//   std::vector<float> row(w.cols);
//   DequantizeWeightRow(w, /*row=*/3, row.data());
//
// Thread-safety: plain data and stateless functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace tandem::engine {

enum class WeightType : uint8_t { kF32, kF16, kBF16, kQ8_0, kQ4_K, kQ6_K };

std::string_view WeightTypeName(WeightType type);
absl::StatusOr<WeightType> ParseWeightType(std::string_view name);

// Elements per quantization block (1 for plain float types) and bytes per block.
int64_t WeightBlockElements(WeightType type);
int64_t WeightBlockBytes(WeightType type);
// Bytes of one row of `cols` elements; cols must be a multiple of the block size.
inline int64_t WeightRowBytes(WeightType type, int64_t cols) {
  return cols / WeightBlockElements(type) * WeightBlockBytes(type);
}

struct WeightMatrix {
  const void* data = nullptr;
  WeightType type = WeightType::kF32;
  int64_t rows = 0;
  int64_t cols = 0;

  int64_t row_bytes() const { return WeightRowBytes(type, cols); }
  int64_t bytes() const { return rows * row_bytes(); }
  const uint8_t* row(int64_t r) const {
    return static_cast<const uint8_t*>(data) + r * row_bytes();
  }
  bool empty() const { return data == nullptr; }
};

// Q8_0: 32 int8 values sharing one F16 scale (the GGUF layout).
struct BlockQ8_0 {
  uint16_t scale_f16;
  int8_t values[32];
};
static_assert(sizeof(BlockQ8_0) == 34);

// Scalar conversions, exact (round-to-nearest-even for float -> bf16/f16).
inline float Bf16ToF32(uint16_t bits) {
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}
inline uint16_t F32ToBf16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((word >> 16) | 0x40);  // NaN
  word += 0x7fffu + ((word >> 16) & 1u);
  return static_cast<uint16_t>(word >> 16);
}
float F16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);

// Writes the `row`-th row of `matrix` as `matrix.cols` floats.
void DequantizeWeightRow(const WeightMatrix& matrix, int64_t row, float* out);

// Encodes `count` floats (a multiple of the block size) into `type`'s bytes; used by tests and
// benchmarks to build weights (Q4_K/Q6_K are read-only: InvalidArgument).
absl::Status QuantizeRow(WeightType type, const float* values, int64_t count, void* out);

}  // namespace tandem::engine
