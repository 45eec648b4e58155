#include "engine/weight_types.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace tandem::engine {

std::string_view WeightTypeName(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return "f32";
    case WeightType::kF16:
      return "f16";
    case WeightType::kBF16:
      return "bf16";
    case WeightType::kQ8_0:
      return "q8_0";
    case WeightType::kQ4_K:
      return "q4_k";
    case WeightType::kQ6_K:
      return "q6_k";
    case WeightType::kQ8_0x16:
      return "q8_0x16";
  }
  return "unknown";
}

absl::StatusOr<WeightType> ParseWeightType(std::string_view name) {
  for (WeightType type : {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0,
                          WeightType::kQ4_K, WeightType::kQ6_K}) {
    if (WeightTypeName(type) == name) return type;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("weight type '", std::string(name),
                   "' is not supported; expected f32, f16, bf16, q8_0, ", "q4_k or q6_k"));
}

int64_t WeightBlockElements(WeightType type) {
  switch (type) {
    case WeightType::kQ8_0:
    case WeightType::kQ8_0x16:
      return 32;
    case WeightType::kQ4_K:
    case WeightType::kQ6_K:
      return 256;
    default:
      return 1;
  }
}

int64_t WeightBlockBytes(WeightType type) {
  switch (type) {
    case WeightType::kF32:
      return 4;
    case WeightType::kF16:
    case WeightType::kBF16:
      return 2;
    case WeightType::kQ8_0:
    case WeightType::kQ8_0x16:
      return 34;
    case WeightType::kQ4_K:
      return 144;
    case WeightType::kQ6_K:
      return 210;
  }
  return 1;
}

float F16ToF32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t word;
  if (exponent == 0) {
    if (mantissa == 0) {
      word = sign;
    } else {  // subnormal: normalize
      int shift = 0;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        ++shift;
      }
      mantissa &= 0x3ffu;
      word = sign | ((127 - 15 - shift + 1) << 23) | (mantissa << 13);
    }
  } else if (exponent == 31) {
    word = sign | 0x7f800000u | (mantissa << 13);
  } else {
    word = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}

uint16_t F32ToF16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  const uint16_t sign = static_cast<uint16_t>((word >> 16) & 0x8000u);
  const uint32_t abs = word & 0x7fffffffu;
  if (abs > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // overflow (rounds past 65504) -> inf
  if (abs < 0x38800000u) {                        // subnormal or zero in f16
    if (abs < 0x33000000u) return sign;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // 14..24
    const uint32_t rounded = mantissa >> shift;
    const uint32_t remainder = mantissa & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    uint32_t result =
        rounded + ((remainder > half || (remainder == half && (rounded & 1))) ? 1 : 0);
    return sign | static_cast<uint16_t>(result);
  }
  uint32_t result = ((abs - 0x38000000u) >> 13);
  const uint32_t remainder = abs & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (result & 1))) ++result;
  return sign | static_cast<uint16_t>(result);
}

namespace {

void ScaleMinK4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// GGUF Q4_K: per 256 values {f16 d, f16 dmin, u8 scales[12], u8 qs[128]}.
void DequantizeQ4K(const uint8_t* block, float* out) {
  uint16_t d_bits, min_bits;
  std::memcpy(&d_bits, block, 2);
  std::memcpy(&min_bits, block + 2, 2);
  const float d = F16ToF32(d_bits);
  const float dmin = F16ToF32(min_bits);
  const uint8_t* scales = block + 4;
  const uint8_t* q = block + 16;
  int is = 0;
  for (int j = 0; j < 256; j += 64) {
    uint8_t sc, m;
    ScaleMinK4(is, scales, &sc, &m);
    const float d1 = d * sc, m1 = dmin * m;
    ScaleMinK4(is + 1, scales, &sc, &m);
    const float d2 = d * sc, m2 = dmin * m;
    for (int l = 0; l < 32; ++l) *out++ = d1 * (q[l] & 0xf) - m1;
    for (int l = 0; l < 32; ++l) *out++ = d2 * (q[l] >> 4) - m2;
    q += 32;
    is += 2;
  }
}

// GGUF Q6_K: per 256 values {u8 ql[128], u8 qh[64], i8 scales[16], f16 d}.
void DequantizeQ6K(const uint8_t* block, float* out) {
  const uint8_t* ql = block;
  const uint8_t* qh = block + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(block + 192);
  uint16_t d_bits;
  std::memcpy(&d_bits, block + 208, 2);
  const float d = F16ToF32(d_bits);
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = static_cast<int>((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = static_cast<int>((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = static_cast<int>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = static_cast<int>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      out[l] = d * sc[is] * q1;
      out[l + 32] = d * sc[is + 2] * q2;
      out[l + 64] = d * sc[is + 4] * q3;
      out[l + 96] = d * sc[is + 6] * q4;
    }
    out += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

void DequantizeWeightRow(const WeightMatrix& matrix, int64_t row, float* out) {
  const uint8_t* bytes = matrix.row(row);
  const int64_t cols = matrix.cols;
  switch (matrix.type) {
    case WeightType::kF32:
      std::memcpy(out, bytes, cols * sizeof(float));
      return;
    case WeightType::kBF16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);
        out[i] = Bf16ToF32(bits);
      }
      return;
    case WeightType::kF16:
      for (int64_t i = 0; i < cols; ++i) {
        uint16_t bits;
        std::memcpy(&bits, bytes + 2 * i, 2);
        out[i] = F16ToF32(bits);
      }
      return;
    case WeightType::kQ8_0:
      for (int64_t b = 0; b < cols / 32; ++b) {
        BlockQ8_0 block;
        std::memcpy(&block, bytes + b * sizeof(BlockQ8_0), sizeof(block));
        const float scale = F16ToF32(block.scale_f16);
        for (int i = 0; i < 32; ++i) out[b * 32 + i] = scale * block.values[i];
      }
      return;
    case WeightType::kQ4_K:
      for (int64_t b = 0; b < cols / 256; ++b) DequantizeQ4K(bytes + b * 144, out + b * 256);
      return;
    case WeightType::kQ6_K:
      for (int64_t b = 0; b < cols / 256; ++b) DequantizeQ6K(bytes + b * 210, out + b * 256);
      return;
    case WeightType::kQ8_0x16: {
      const int64_t blocks = cols / 32, lane = row % kQ8TileRows;
      const uint8_t* tile = matrix.row(row - lane);
      for (int64_t b = 0; b < blocks; ++b) {
        const Q8TileBlockOffsets at = Q8TileBlockAt(b, blocks);
        uint16_t scale_bits;
        std::memcpy(&scale_bits, tile + at.scales + 2 * lane, 2);
        const float scale = F16ToF32(scale_bits);
        for (int i = 0; i < 32; ++i) {
          const uint8_t stored = tile[at.values + 64 * (i / 4) + 4 * lane + i % 4];
          out[b * 32 + i] = scale * static_cast<float>(static_cast<int>(stored) - 128);
        }
      }
      return;
    }
  }
}

void PackQ8Tiles(const WeightMatrix& q8, int64_t first_tile, int64_t tiles, uint8_t* out) {
  const int64_t blocks = q8.cols / 32, tile_bytes = kQ8TileRows * q8.row_bytes();
  for (int64_t t = first_tile; t < first_tile + tiles; ++t) {
    uint8_t* tile = out + t * tile_bytes;
    for (int64_t lane = 0; lane < kQ8TileRows; ++lane) {
      const uint8_t* row = q8.row(t * kQ8TileRows + lane);
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = row + b * sizeof(BlockQ8_0);
        const Q8TileBlockOffsets at = Q8TileBlockAt(b, blocks);
        std::memcpy(tile + at.scales + 2 * lane, block, 2);
        for (int g = 0; g < 8; ++g) {
          uint32_t four;
          std::memcpy(&four, block + 2 + 4 * g, 4);
          four ^= 0x80808080u;  // signed -> plus 128
          std::memcpy(tile + at.values + 64 * g + 4 * lane, &four, 4);
        }
      }
    }
  }
}

absl::Status QuantizeRow(WeightType type, const float* values, int64_t count, void* out) {
  uint8_t* bytes = static_cast<uint8_t*>(out);
  if (count % WeightBlockElements(type) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("row of ", count, " values is not a multiple of ",
                     std::string(WeightTypeName(type)), "'s block of ", WeightBlockElements(type)));
  }
  switch (type) {
    case WeightType::kF32:
      std::memcpy(bytes, values, count * sizeof(float));
      return absl::OkStatus();
    case WeightType::kBF16:
    case WeightType::kF16:
      for (int64_t i = 0; i < count; ++i) {
        uint16_t bits = type == WeightType::kBF16 ? F32ToBf16(values[i]) : F32ToF16(values[i]);
        std::memcpy(bytes + 2 * i, &bits, 2);
      }
      return absl::OkStatus();
    case WeightType::kQ8_0:
      for (int64_t b = 0; b < count / 32; ++b) {
        float max_abs = 0;
        for (int i = 0; i < 32; ++i) max_abs = std::max(max_abs, std::fabs(values[b * 32 + i]));
        const float scale = max_abs / 127.0f;
        const float inverse = scale > 0 ? 1.0f / scale : 0.0f;
        BlockQ8_0 block;
        block.scale_f16 = F32ToF16(scale);
        for (int i = 0; i < 32; ++i) {
          block.values[i] = static_cast<int8_t>(std::lround(values[b * 32 + i] * inverse));
        }
        std::memcpy(bytes + b * sizeof(BlockQ8_0), &block, sizeof(block));
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("quantizing to ", std::string(WeightTypeName(type)), " is not supported"));
  }
}

}  // namespace tandem::engine
