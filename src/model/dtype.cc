#include "model/dtype.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace tandem::model {
namespace {

struct DTypeInfo {
  DType type;
  const char* name;
  int64_t block_elements;  // 0: not readable by Tandem
  int64_t block_bytes;
};

constexpr DTypeInfo kDTypes[] = {
    {DType::kF32, "F32", 1, 4},       {DType::kF16, "F16", 1, 2},
    {DType::kQ4_0, "Q4_0", 0, 0},     {DType::kQ4_1, "Q4_1", 0, 0},
    {DType::kQ5_0, "Q5_0", 0, 0},     {DType::kQ5_1, "Q5_1", 0, 0},
    {DType::kQ8_0, "Q8_0", 32, 34},   {DType::kQ8_1, "Q8_1", 0, 0},
    {DType::kQ2_K, "Q2_K", 0, 0},     {DType::kQ3_K, "Q3_K", 0, 0},
    {DType::kQ4_K, "Q4_K", 256, 144}, {DType::kQ5_K, "Q5_K", 0, 0},
    {DType::kQ6_K, "Q6_K", 256, 210}, {DType::kQ8_K, "Q8_K", 0, 0},
    {DType::kI8, "I8", 0, 0},         {DType::kI16, "I16", 0, 0},
    {DType::kI32, "I32", 0, 0},       {DType::kI64, "I64", 0, 0},
    {DType::kF64, "F64", 0, 0},       {DType::kBF16, "BF16", 1, 2},
};

const DTypeInfo* Find(DType type) {
  for (const DTypeInfo& info : kDTypes) {
    if (info.type == type) return &info;
  }
  return nullptr;
}

// The fields of ggml blocks are read with memcpy: mapped tensor data need not be aligned.
inline uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

void DequantizeQ8_0(const uint8_t* src, int64_t blocks, float* dst) {
  for (int64_t b = 0; b < blocks; ++b, src += sizeof(BlockQ8_0), dst += kQ8_0BlockElements) {
    const float d = F16ToF32(LoadU16(src));
    const int8_t* q = reinterpret_cast<const int8_t*>(src + 2);
    for (int i = 0; i < kQ8_0BlockElements; ++i) dst[i] = d * static_cast<float>(q[i]);
  }
}

// The 6-bit scale and min of sub-block j (0..7) of a Q4_K super-block: sub-blocks 0-3 keep
// them in the low 6 bits of bytes j and j+4; sub-blocks 4-7 split them into a low nibble in
// byte j+4 and two high bits in the top bits of bytes j-4 (scale) and j (min).
inline void Q4KScaleMin(int j, const uint8_t* scales, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = scales[j] & 63;
    *min = scales[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
  }
}

void DequantizeQ4_K(const uint8_t* src, int64_t blocks, float* dst) {
  for (int64_t b = 0; b < blocks; ++b, src += sizeof(BlockQ4_K)) {
    const float d = F16ToF32(LoadU16(src));
    const float dmin = F16ToF32(LoadU16(src + 2));
    const uint8_t* scales = src + 4;
    const uint8_t* q = src + 16;
    // Four groups of 64 elements; each uses 32 bytes: low nibbles give the first 32 elements
    // (sub-block 2g), high nibbles the next 32 (sub-block 2g+1).
    for (int group = 0; group < 4; ++group, q += 32) {
      uint8_t scale, min;
      Q4KScaleMin(2 * group, scales, &scale, &min);
      const float d1 = d * scale, m1 = dmin * min;
      Q4KScaleMin(2 * group + 1, scales, &scale, &min);
      const float d2 = d * scale, m2 = dmin * min;
      for (int l = 0; l < 32; ++l) *dst++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *dst++ = d2 * static_cast<float>(q[l] >> 4) - m2;
    }
  }
}

void DequantizeQ6_K(const uint8_t* src, int64_t blocks, float* dst) {
  for (int64_t b = 0; b < blocks; ++b, src += sizeof(BlockQ6_K)) {
    const uint8_t* ql = src;
    const uint8_t* qh = src + 128;
    const int8_t* sc = reinterpret_cast<const int8_t*>(src + 192);
    const float d = F16ToF32(LoadU16(src + 208));
    // Two halves of 128 elements; in each, element l of the four 32-element quarters takes its
    // low 4 bits from ql (low/high nibble of bytes l and l+32) and its top 2 bits from qh[l].
    for (int half = 0; half < 2; ++half, dst += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        dst[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
        dst[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        dst[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        dst[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

void QuantizeQ8_0(const float* src, int64_t blocks, uint8_t* dst) {
  for (int64_t b = 0; b < blocks; ++b, src += kQ8_0BlockElements, dst += sizeof(BlockQ8_0)) {
    float amax = 0.0f;
    for (int i = 0; i < kQ8_0BlockElements; ++i) amax = std::max(amax, std::fabs(src[i]));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const uint16_t d16 = F32ToF16(d);
    std::memcpy(dst, &d16, 2);
    for (int i = 0; i < kQ8_0BlockElements; ++i) {
      dst[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(std::lround(src[i] * id)));
    }
  }
}

}  // namespace

std::string DTypeName(DType type) {
  const DTypeInfo* info = Find(type);
  if (info != nullptr) return info->name;
  return absl::StrCat("type ", static_cast<uint32_t>(type));
}

absl::StatusOr<DType> ParseDType(std::string_view name) {
  const std::string upper = absl::AsciiStrToUpper(std::string(name));
  for (const DTypeInfo& info : kDTypes) {
    if (upper == info.name) return info.type;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown tensor type '", std::string(name),
                                                 "'; expected one of ", SupportedDTypeNames()));
}

bool IsSupportedDType(DType type) {
  const DTypeInfo* info = Find(type);
  return info != nullptr && info->block_elements > 0;
}

std::string SupportedDTypeNames() { return "F32, F16, BF16, Q8_0, Q4_K, Q6_K"; }

bool IsWritableDType(DType type) {
  return type == DType::kF32 || type == DType::kF16 || type == DType::kBF16 || type == DType::kQ8_0;
}

int64_t BlockElements(DType type) {
  const DTypeInfo* info = Find(type);
  return info == nullptr ? 0 : info->block_elements;
}

int64_t BlockBytes(DType type) {
  const DTypeInfo* info = Find(type);
  return info == nullptr ? 0 : info->block_bytes;
}

int64_t ByteSize(DType type, int64_t elements) {
  const int64_t block = BlockElements(type);
  if (block <= 0 || elements < 0 || elements % block != 0) return -1;
  const int64_t blocks = elements / block;
  if (blocks > std::numeric_limits<int64_t>::max() / BlockBytes(type)) return -1;
  return blocks * BlockBytes(type);
}

float F16ToF32(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1f;
  uint32_t mantissa = bits & 0x3ffu;
  uint32_t word;
  if (exponent == 0x1f) {
    word = sign | 0x7f800000u | (mantissa << 13);  // inf / NaN
  } else if (exponent != 0) {
    word = sign | ((exponent + 112) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    word = sign;
  } else {
    // Subnormal: normalise the mantissa.
    int shift = 0;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      ++shift;
    }
    mantissa &= 0x3ffu;
    word = sign | (static_cast<uint32_t>(113 - shift) << 23) | (mantissa << 13);
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
  if (abs > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): value / 2^-24 rounded to nearest even.
    if (abs < 0x33000000u) return sign;  // below half the smallest subnormal
    const uint32_t exponent = abs >> 23;
    const uint32_t mantissa = (abs & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - exponent;  // 14..24 for the subnormal range
    uint32_t half = mantissa >> shift;
    const uint32_t remainder = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    if (remainder > halfway || (remainder == halfway && (half & 1u))) ++half;
    return static_cast<uint16_t>(sign | half);
  }
  // Normal: rebias the exponent and round the mantissa to 10 bits (a carry into the exponent
  // is the correct result).
  uint32_t half = ((abs - 0x38000000u) >> 13);
  const uint32_t remainder = abs & 0x1fffu;
  if (remainder > 0x1000u || (remainder == 0x1000u && (half & 1u))) ++half;
  return static_cast<uint16_t>(sign | half);
}

uint16_t F32ToBF16(float value) {
  uint32_t word;
  std::memcpy(&word, &value, sizeof(word));
  if ((word & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((word >> 16) | 0x40u);
  word += 0x7fffu + ((word >> 16) & 1u);
  return static_cast<uint16_t>(word >> 16);
}

absl::Status DequantizeRow(DType type, const void* src, int64_t n, float* dst) {
  if (!IsSupportedDType(type)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot dequantize tensor type ", DTypeName(type), "; supported: ", SupportedDTypeNames()));
  }
  if (ByteSize(type, n) < 0) {
    return absl::InvalidArgumentError(absl::StrCat(n, " elements of ", DTypeName(type),
                                                   " are not a whole number of blocks of ",
                                                   BlockElements(type)));
  }
  const auto* bytes = static_cast<const uint8_t*>(src);
  switch (type) {
    case DType::kF32:
      std::memcpy(dst, bytes, static_cast<size_t>(n) * 4);
      break;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(LoadU16(bytes + 2 * i));
      break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = BF16ToF32(LoadU16(bytes + 2 * i));
      break;
    case DType::kQ8_0:
      DequantizeQ8_0(bytes, n / kQ8_0BlockElements, dst);
      break;
    case DType::kQ4_K:
      DequantizeQ4_K(bytes, n / kQKBlockElements, dst);
      break;
    case DType::kQ6_K:
      DequantizeQ6_K(bytes, n / kQKBlockElements, dst);
      break;
    default:
      break;  // unreachable: IsSupportedDType
  }
  return absl::OkStatus();
}

absl::Status QuantizeRow(DType type, const float* src, int64_t n, void* dst) {
  if (!IsWritableDType(type)) {
    return absl::InvalidArgumentError(absl::StrCat("cannot write tensor type ", DTypeName(type),
                                                   "; writable: F32, F16, BF16, Q8_0"));
  }
  if (ByteSize(type, n) < 0) {
    return absl::InvalidArgumentError(absl::StrCat(n, " elements of ", DTypeName(type),
                                                   " are not a whole number of blocks of ",
                                                   BlockElements(type)));
  }
  auto* bytes = static_cast<uint8_t*>(dst);
  switch (type) {
    case DType::kF32:
      std::memcpy(bytes, src, static_cast<size_t>(n) * 4);
      break;
    case DType::kF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToF16(src[i]);
        std::memcpy(bytes + 2 * i, &h, 2);
      }
      break;
    case DType::kBF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = F32ToBF16(src[i]);
        std::memcpy(bytes + 2 * i, &h, 2);
      }
      break;
    case DType::kQ8_0:
      QuantizeQ8_0(src, n / kQ8_0BlockElements, bytes);
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

}  // namespace tandem::model
