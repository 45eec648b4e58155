#include "model/dtype.h"

#include <cmath>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace tandem::model {
namespace {

TEST(DTypeTest, F16RoundTripsEveryValue) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = F16ToF32(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(F32ToF16(f), h) << "f16 bits " << h;
  }
}

TEST(DTypeTest, F16KnownValuesAndRounding) {
  EXPECT_EQ(F16ToF32(0x3C00), 1.0f);
  EXPECT_EQ(F16ToF32(0xC000), -2.0f);
  EXPECT_EQ(F16ToF32(0x7BFF), 65504.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F16ToF32(0x0400), std::ldexp(1.0f, -14));
  EXPECT_TRUE(std::isinf(F16ToF32(0x7C00)));
  EXPECT_EQ(F32ToF16(1.0f + std::ldexp(1.0f, -11)), 0x3C00);      // tie -> even
  EXPECT_EQ(F32ToF16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);  // tie -> even
  EXPECT_EQ(F32ToF16(65519.0f), 0x7BFF);
  EXPECT_EQ(F32ToF16(65520.0f), 0x7C00);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(F32ToF16(1.5f * std::ldexp(1.0f, -25)), 0x0001);
  EXPECT_EQ(F32ToF16(3 * std::ldexp(1.0f, -25)), 0x0002);
  EXPECT_EQ(F32ToF16(-0.0f), 0x8000);
  EXPECT_TRUE(std::isnan(F16ToF32(F32ToF16(NAN))));
}

TEST(DTypeTest, BF16Rounding) {
  EXPECT_EQ(F32ToBF16(1.0f), 0x3F80);
  EXPECT_EQ(F32ToBF16(1.0f + std::ldexp(1.0f, -8)), 0x3F80);
  EXPECT_EQ(F32ToBF16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3F82);
  EXPECT_EQ(BF16ToF32(0xC040), -3.0f);
}

TEST(DTypeTest, SizesAndNames) {
  EXPECT_EQ(ByteSize(DType::kF32, 10), 40);
  EXPECT_EQ(ByteSize(DType::kQ8_0, 64), 68);
  EXPECT_EQ(ByteSize(DType::kQ4_K, 512), 288);
  EXPECT_EQ(ByteSize(DType::kQ6_K, 256), 210);
  EXPECT_EQ(ByteSize(DType::kQ8_0, 33), -1);
  EXPECT_EQ(ByteSize(DType::kQ5_1, 32), -1);
  EXPECT_EQ(DTypeName(DType::kQ6_K), "Q6_K");
  EXPECT_EQ(DTypeName(static_cast<DType>(99)), "type 99");
  EXPECT_EQ(*ParseDType("q8_0"), DType::kQ8_0);
  EXPECT_FALSE(ParseDType("q9").ok());
  float out[32];
  absl::Status status = DequantizeRow(DType::kQ5_1, out, 32, out);
  EXPECT_NE(status.message().find("Q5_1"), std::string::npos) << status;
}

TEST(DTypeTest, Q8_0QuantizesLikeGgml) {
  float values[32];
  for (int i = 0; i < 32; ++i) values[i] = (i - 16) * 0.25f;  // amax 4 at i = 0
  BlockQ8_0 block;
  ASSERT_TRUE(QuantizeRow(DType::kQ8_0, values, 32, &block).ok());
  const float d = 4.0f / 127.0f;
  EXPECT_EQ(block.scale_f16, F32ToF16(d));
  EXPECT_EQ(block.values[0], -127);
  EXPECT_EQ(block.values[16], 0);
  EXPECT_EQ(block.values[20], static_cast<int8_t>(std::lround(1.0f / d)));
  float back[32];
  ASSERT_TRUE(DequantizeRow(DType::kQ8_0, &block, 32, back).ok());
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(back[i], F16ToF32(block.scale_f16) * block.values[i]);
    EXPECT_NEAR(back[i], values[i], d);
  }
}

// Q4_K: 8 sub-blocks of 32 elements, x = d * scale_j * q - dmin * min_j with 6-bit scale_j and
// min_j. Encoded here from the layout description, independently of the decoder.
TEST(DTypeTest, Q4_KHandBuiltBlock) {
  const uint8_t scale[8] = {1, 2, 3, 63, 17, 40, 5, 33};
  const uint8_t min[8] = {0, 1, 62, 7, 48, 2, 21, 63};
  BlockQ4_K block{};
  block.d_f16 = F32ToF16(0.5f);
  block.dmin_f16 = F32ToF16(0.25f);
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      block.scales[j] |= scale[j];
      block.scales[j + 4] |= min[j];
    } else {
      block.scales[j + 4] = static_cast<uint8_t>((scale[j] & 0xF) | ((min[j] & 0xF) << 4));
      block.scales[j - 4] |= static_cast<uint8_t>((scale[j] >> 4) << 6);
      block.scales[j] |= static_cast<uint8_t>((min[j] >> 4) << 6);
    }
  }
  uint8_t quant[256];
  for (int e = 0; e < 256; ++e) {
    quant[e] = static_cast<uint8_t>((e * 7 + 3) % 16);
    // Elements 64g..64g+31 are low nibbles of bytes 32g..32g+31, the next 32 the high nibbles.
    const int byte = 32 * (e / 64) + e % 32;
    block.quants[byte] |= static_cast<uint8_t>(((e / 32) % 2 == 0) ? quant[e] : quant[e] << 4);
  }
  float out[256];
  ASSERT_TRUE(DequantizeRow(DType::kQ4_K, &block, 256, out).ok());
  for (int e = 0; e < 256; ++e) {
    const int j = e / 32;
    const double expected = 0.5 * scale[j] * quant[e] - 0.25 * min[j];
    ASSERT_EQ(out[e], static_cast<float>(expected)) << "element " << e;
  }
}

// Q6_K: 16 sub-blocks of 16 elements, x = d * scale_k * (q - 32), 6-bit q split into 4 low bits
// (ql) and 2 high bits (qh).
TEST(DTypeTest, Q6_KHandBuiltBlock) {
  BlockQ6_K block{};
  block.d_f16 = F32ToF16(0.125f);
  for (int k = 0; k < 16; ++k) block.scales[k] = static_cast<int8_t>((k * 37) % 255 - 127);
  uint8_t quant[256];
  for (int e = 0; e < 256; ++e) {
    quant[e] = static_cast<uint8_t>((e * 13 + 5) % 64);
    const int half = e / 128, within = e % 128, quarter = within / 32, l = within % 32;
    const int low_byte = 64 * half + l + (quarter % 2) * 32;
    block.ql[low_byte] |=
        static_cast<uint8_t>(quarter < 2 ? (quant[e] & 0xF) : (quant[e] & 0xF) << 4);
    block.qh[32 * half + l] |= static_cast<uint8_t>((quant[e] >> 4) << (2 * quarter));
  }
  float out[256];
  ASSERT_TRUE(DequantizeRow(DType::kQ6_K, &block, 256, out).ok());
  for (int e = 0; e < 256; ++e) {
    const double expected = 0.125 * block.scales[e / 16] * (quant[e] - 32);
    ASSERT_EQ(out[e], static_cast<float>(expected)) << "element " << e;
  }
}

TEST(DTypeTest, UnalignedSourcesAreFine) {
  std::vector<uint8_t> buffer(1 + 34 * 2);
  float values[64];
  for (int i = 0; i < 64; ++i) values[i] = std::sin(i * 0.3f);
  ASSERT_TRUE(QuantizeRow(DType::kQ8_0, values, 64, buffer.data() + 1).ok());
  float out[64];
  ASSERT_TRUE(DequantizeRow(DType::kQ8_0, buffer.data() + 1, 64, out).ok());
  for (int i = 0; i < 64; ++i) EXPECT_NEAR(out[i], values[i], 0.01f);
}

}  // namespace
}  // namespace tandem::model
