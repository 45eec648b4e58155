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

enum class WeightType : uint8_t { kF32, kF16, kBF16, kQ8_0, kQ4_K, kQ6_K, kQ8_0x16 };

std::string_view WeightTypeName(WeightType type);
// The types a model file holds (kQ8_0x16 is made at load time, never parsed).
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

// Q8_0x16: a Q8_0 matrix's bytes reordered for the int8 kernel (kernels.h), which reads 16 rows'
// block at a time as whole vectors: made by PackQ8Tiles from a Q8_0 matrix whose row count is a
// multiple of 16, never stored in a file. docs/weight-packing.md shows it in full.
//   - Tile t (rows 16t .. 16t+15) takes the bytes those rows take in Q8_0, so whole tiles from
//     row 16t on start at row(16t), and row_bytes()/bytes() are Q8_0's.
//   - Within a tile the blocks (32 columns each) go in pairs of 1088 bytes: block 2p's values
//     (512 bytes), block 2p+1's values (512), block 2p's 16 scales (F16, row order, 32 bytes),
//     block 2p+1's scales (32). An unpaired last block is its values, then its scales.
//   - A block's values are 8 groups of 64 bytes: group g holds columns 4g .. 4g+3 of the 16 rows,
//     4 bytes per row in row order, each value stored plus 128 (as an unsigned byte).
inline constexpr int64_t kQ8TileRows = 16;
struct Q8TileBlockOffsets {
  int64_t values;  // from the tile's first byte
  int64_t scales;
};
inline Q8TileBlockOffsets Q8TileBlockAt(int64_t block, int64_t blocks) {
  const int64_t pair = block / 2 * 1088;
  if (block % 2 == 1) return {pair + 512, pair + 1024 + 32};
  return {pair, pair + (block + 1 < blocks ? 1024 : 512)};
}
// Tiles [first_tile, first_tile + tiles) of the Q8_0 matrix `q8` (rows a multiple of 16) into
// `out`, the packed matrix's first byte (each tile at its own offset).
void PackQ8Tiles(const WeightMatrix& q8, int64_t first_tile, int64_t tiles, uint8_t* out);

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
