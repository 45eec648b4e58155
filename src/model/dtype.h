// Tensor element types of model files (GGUF and safetensors) and their conversion to float.
//
// The enum values are the GGML type ids GGUF stores, so a GGUF tensor's type field maps
// directly. Quantized types pack blocks along the contiguous dimension: Q8_0 blocks of 32
// elements (34 bytes), Q4_K and Q6_K super-blocks of 256 elements (144 and 210 bytes), in the
// byte layout of ggml (documented in docs/model-formats.md).
//
//   std::vector<float> row(cols);
//   TANDEM_RETURN_IF_ERROR(DequantizeRow(DType::kQ4_K, row_bytes, cols, row.data()));
//
// Thread-safety: stateless functions.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace tandem::model {

enum class DType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

// "F32", "F16", "BF16", "Q8_0", "Q4_K", ...; "type 99" for ids ggml does not know.
std::string DTypeName(DType type);
// Parses "f32", "F16", "bf16", "q8_0", "Q4_K" (case-insensitive).
absl::StatusOr<DType> ParseDType(std::string_view name);

// True for the types Tandem reads (F32, F16, BF16, Q8_0, Q4_K, Q6_K).
bool IsSupportedDType(DType type);
// "F32, F16, BF16, Q8_0, Q4_K, Q6_K": for error messages.
std::string SupportedDTypeNames();
// True for the types `QuantizeRow` writes (F32, F16, BF16, Q8_0).
bool IsWritableDType(DType type);

// Elements per block (1 for plain types) and bytes per block; 0 for unsupported types.
int64_t BlockElements(DType type);
int64_t BlockBytes(DType type);
// Bytes of `elements` elements; -1 when `elements` is not a multiple of the block size, the
// type is unsupported, or the size overflows.
int64_t ByteSize(DType type, int64_t elements);

// Block layouts (ggml).
inline constexpr int kQ8_0BlockElements = 32;
inline constexpr int kQKBlockElements = 256;  // K-quant super-block
struct BlockQ8_0 {
  uint16_t scale_f16;  // d
  int8_t values[32];   // x = d * q
};
struct BlockQ4_K {
  uint16_t d_f16;       // super-block scale for the 6-bit scales
  uint16_t dmin_f16;    // super-block scale for the 6-bit mins
  uint8_t scales[12];   // 8 sub-blocks of 32: 6-bit scale and 6-bit min each, packed
  uint8_t quants[128];  // 4-bit values, two per byte
};
struct BlockQ6_K {
  uint8_t ql[128];    // low 4 bits
  uint8_t qh[64];     // high 2 bits
  int8_t scales[16];  // 16 sub-blocks of 16: 8-bit scales
  uint16_t d_f16;     // super-block scale
};
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ6_K) == 210);

// Exact scalar conversions (round to nearest even for float -> f16/bf16; NaN stays NaN).
float F16ToF32(uint16_t bits);
uint16_t F32ToF16(float value);
inline float BF16ToF32(uint16_t bits) {
  uint32_t word = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}
uint16_t F32ToBF16(float value);

// Writes `n` floats decoded from `src` (ByteSize(type, n) bytes, any alignment) into `dst`.
// InvalidArgument for unsupported types or an `n` that is not a whole number of blocks.
absl::Status DequantizeRow(DType type, const void* src, int64_t n, float* dst);

// Encodes `n` floats into `type` (F32, F16, BF16, Q8_0 with ggml's rounding); `dst` holds
// ByteSize(type, n) bytes. InvalidArgument for other types or a partial block.
absl::Status QuantizeRow(DType type, const float* src, int64_t n, void* dst);

}  // namespace tandem::model
