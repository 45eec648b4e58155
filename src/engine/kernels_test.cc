#include "engine/kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "engine/cpu_features.h"
#include "engine/internal/kernels_isa.h"
#include "engine/sampling.h"
#include "gtest/gtest.h"

namespace tandem::engine {
namespace {

constexpr uint64_t kSeed = 99;

std::vector<float> RandomFloats(int64_t n, Random& random) {
  std::vector<float> values(n);
  for (float& v : values) v = static_cast<float>(2 * random.Uniform() - 1);
  return values;
}

struct Matrix {
  std::vector<uint8_t> bytes;
  WeightMatrix view;
};
Matrix MakeMatrix(WeightType type, int64_t rows, int64_t cols, Random& random) {
  Matrix m;
  m.bytes.resize(rows * WeightRowBytes(type, cols));
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> row = RandomFloats(cols, random);
    EXPECT_TRUE(
        QuantizeRow(type, row.data(), cols, m.bytes.data() + r * WeightRowBytes(type, cols)).ok());
  }
  m.view = {.data = m.bytes.data(), .type = type, .rows = rows, .cols = cols};
  return m;
}

// A random Q8_0 matrix (rows a multiple of 16) in the int8 kernel's Q8_0x16 layout.
Matrix MakePackedQ8(int64_t rows, int64_t cols, Random& random) {
  Matrix q8 = MakeMatrix(WeightType::kQ8_0, rows, cols, random);
  Matrix m;
  m.bytes.resize(q8.bytes.size());
  PackQ8Tiles(q8.view, 0, rows / kQ8TileRows, m.bytes.data());
  m.view = q8.view;
  m.view.data = m.bytes.data();
  m.view.type = WeightType::kQ8_0x16;
  return m;
}

// out[i][r] in double from the dequantized weights.
std::vector<double> Reference(const WeightMatrix& w, const std::vector<float>& x, int64_t n) {
  std::vector<double> out(n * w.rows);
  std::vector<float> row(w.cols);
  for (int64_t r = 0; r < w.rows; ++r) {
    DequantizeWeightRow(w, r, row.data());
    for (int64_t i = 0; i < n; ++i) {
      double sum = 0;
      for (int64_t c = 0; c < w.cols; ++c) sum += double(row[c]) * x[i * w.cols + c];
      out[i * w.rows + r] = sum;
    }
  }
  return out;
}

// Every ISA path this CPU can run, named, scalar first.
std::vector<std::pair<std::string, internal::IsaKernels>> IsaPaths() {
  std::vector<std::pair<std::string, internal::IsaKernels>> paths = {
      {"scalar", internal::ScalarKernels()}};
  const CpuFeatures& f = GetCpuFeatures();
  if (f.avx2 && f.fma && f.f16c) paths.push_back({"avx2", internal::Avx2Kernels()});
  if (ActiveIsaTier() == IsaTier::kAvx512) paths.push_back({"avx512", internal::Avx512Kernels()});
  return paths;
}

TEST(WeightTypesTest, ConversionsRoundTrip) {
  EXPECT_EQ(F16ToF32(0x3c00), 1.0f);
  EXPECT_EQ(F16ToF32(0xc000), -2.0f);
  EXPECT_EQ(F16ToF32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(F32ToF16(1.0f), 0x3c00);
  EXPECT_EQ(F32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(F32ToF16(1e6f), 0x7c00);
  EXPECT_EQ(F32ToF16(std::ldexp(1.0f, -24)), 0x0001);
  for (uint32_t bits = 0; bits < 0x7c00; bits += 7) {
    EXPECT_EQ(F32ToF16(F16ToF32(bits)), bits) << bits;
  }
  EXPECT_EQ(Bf16ToF32(F32ToBf16(1.5f)), 1.5f);
  EXPECT_EQ(F32ToBf16(1.00390625f), 0x3f80);  // ties to even
  EXPECT_TRUE(std::isnan(Bf16ToF32(F32ToBf16(NAN))));
  EXPECT_EQ(*ParseWeightType("q8_0"), WeightType::kQ8_0);
  EXPECT_FALSE(ParseWeightType("q5_1").ok());
}

TEST(WeightTypesTest, Q4KAndQ6KDequantizeAsGgufDefines) {
  // Q4_K: d = 1, dmin = 0.5; sub-blocks 0-3 scale 2 min 1, sub-blocks 4-7 scale 3 min 1;
  // every byte of qs = 0x21 (low nibble 1, high nibble 2).
  std::vector<uint8_t> q4(144);
  uint16_t d = 0x3c00, dmin = 0x3800;
  std::memcpy(q4.data(), &d, 2);
  std::memcpy(q4.data() + 2, &dmin, 2);
  for (int j = 0; j < 4; ++j) q4[4 + j] = 2;
  for (int j = 4; j < 8; ++j) q4[4 + j] = 1;
  for (int j = 8; j < 12; ++j) q4[4 + j] = 0x13;
  for (int i = 16; i < 144; ++i) q4[i] = 0x21;
  std::vector<float> out(256);
  DequantizeWeightRow({.data = q4.data(), .type = WeightType::kQ4_K, .rows = 1, .cols = 256}, 0,
                      out.data());
  EXPECT_EQ(out[0], 1.5f);   // 2*1 - 0.5
  EXPECT_EQ(out[32], 3.5f);  // 2*2 - 0.5
  EXPECT_EQ(out[64], 1.5f);
  EXPECT_EQ(out[128], 2.5f);  // 3*1 - 0.5
  EXPECT_EQ(out[160], 5.5f);  // 3*2 - 0.5
  // Q6_K: d = 1, all scales 1 except scales[0] = 2, quants 0 (-32) except ql[0] = 5.
  std::vector<uint8_t> q6(210, 0);
  for (int i = 0; i < 16; ++i) q6[192 + i] = 1;
  q6[192] = 2;
  q6[0] = 5;
  std::memcpy(q6.data() + 208, &d, 2);
  DequantizeWeightRow({.data = q6.data(), .type = WeightType::kQ6_K, .rows = 1, .cols = 256}, 0,
                      out.data());
  EXPECT_EQ(out[0], -54.0f);  // 2 * (5 - 32)
  EXPECT_EQ(out[1], -64.0f);
  EXPECT_EQ(out[16], -32.0f);
  EXPECT_EQ(out[64], -32.0f);
}

TEST(KernelsTest, EveryIsaPathMatchesTheReference) {
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  Random random(kSeed);
  const std::vector<std::pair<std::string, internal::IsaKernels>> paths = IsaPaths();
  const int64_t cols = 96 + 32;  // exercises the 2x-unrolled loop, the single step and no tail
  for (WeightType type :
       {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0}) {
    Matrix m = MakeMatrix(type, 3, cols, random);
    for (int64_t n : {1, 2, 3, 4, 7}) {
      std::vector<float> x = RandomFloats(n * cols, random);
      std::vector<double> expected = Reference(m.view, x, n);
      for (auto& [name, k] : paths) {
        internal::RowDotsFn fn = type == WeightType::kF32    ? k.f32
                                 : type == WeightType::kF16  ? k.f16
                                 : type == WeightType::kBF16 ? k.bf16
                                                             : k.q8_0;
        std::vector<float> out(n * 3);
        for (int64_t r = 0; r < 3; ++r)
          fn(m.view.row(r), cols, x.data(), cols, n, out.data() + r, 3);
        for (int64_t i = 0; i < n * 3; ++i) {
          ASSERT_NEAR(out[i], expected[i], 1e-4)
              << name << " " << WeightTypeName(type) << " n=" << n;
        }
      }
    }
  }
  std::vector<float> a = RandomFloats(37, random), b = RandomFloats(37, random);
  double dot = 0;
  for (int i = 0; i < 37; ++i) dot += double(a[i]) * b[i];
  for (auto& [name, k] : paths) {
    EXPECT_NEAR(k.dot(a.data(), b.data(), 37), dot, 1e-5) << name;
    std::vector<float> y = b;
    k.axpy(0.5f, a.data(), y.data(), 37);
    for (int i = 0; i < 37; ++i) EXPECT_FLOAT_EQ(y[i], b[i] + 0.5f * a[i]) << name;
    std::vector<float> converted(cols), dequantized(cols);
    Matrix q8 = MakeMatrix(WeightType::kQ8_0, 1, cols, random);
    k.q8_0_to_f32(q8.view.row(0), cols, converted.data());
    DequantizeWeightRow(q8.view, 0, dequantized.data());
    EXPECT_EQ(converted, dequantized) << name;
  }
}

// The maximum kernel: exact on every path for lengths around the vector widths, and any NaN or
// infinity anywhere (vector body or tail) reported as not finite.
TEST(KernelsTest, MaxFindsTheLargestAndReportsNonFiniteValues) {
  Random random(kSeed);
  const std::vector<std::pair<std::string, internal::IsaKernels>> paths = IsaPaths();
  for (int64_t n : {1, 7, 16, 63, 64, 65, 200, 8192 + 5}) {
    std::vector<float> x = RandomFloats(n, random);
    for (float& v : x) v -= 10;  // all negative: a max that starts from 0 would be wrong
    const float expected = *std::max_element(x.begin(), x.end());
    for (auto& [name, k] : paths) {
      bool finite = false;
      EXPECT_EQ(k.max(x.data(), n, &finite), expected) << name << " n=" << n;
      EXPECT_TRUE(finite) << name << " n=" << n;
      for (int64_t at : {int64_t{0}, n / 2, n - 1}) {
        for (float bad : {NAN, INFINITY, -INFINITY}) {
          std::vector<float> y = x;
          y[at] = bad;
          finite = true;
          k.max(y.data(), n, &finite);
          EXPECT_FALSE(finite) << name << " n=" << n << " at " << at << " value " << bad;
        }
      }
    }
  }
}

// The BF16 attention kernels read a BF16 block exactly as the F32 ones read its widened copy:
// same arithmetic, same order, so they agree to rounding noise (in practice bit for bit) on
// every ISA path, for full and partly filled blocks, and both match a double reference.
TEST(KernelsTest, Bf16BlockKernelsMatchF32OnRoundedInputs) {
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  Random random(kSeed);
  const std::vector<std::pair<std::string, internal::IsaKernels>> paths = IsaPaths();
  // Block sizes below, at and above a vector; dims with and without the tails of the chain and
  // 4-vector loops; query groups of every size the kernels special-case and past their 4 (2 for
  // 8-float vectors) at a time.
  for (int64_t stride : {4, 16, 32}) {
    for (int64_t dims : {20, 64, 72, 128}) {
      for (int64_t heads : {1, 2, 3, 4, 7}) {
        std::vector<float> keys = RandomFloats(dims * stride, random);
        std::vector<float> values = RandomFloats(stride * dims, random);
        std::vector<uint16_t> keys16(keys.size()), values16(values.size());
        for (size_t i = 0; i < keys.size(); ++i) {
          keys16[i] = F32ToBf16(keys[i]);
          keys[i] = Bf16ToF32(keys16[i]);
          values16[i] = F32ToBf16(values[i]);
          values[i] = Bf16ToF32(values16[i]);
        }
        const std::vector<float> q = RandomFloats(heads * dims, random);
        // Rows of weights (and scores) a padded stride apart, as attention lays them out.
        const int64_t wstride = stride + 3;
        const std::vector<float> weights = RandomFloats(heads * wstride, random);
        const std::vector<float> start = RandomFloats(heads * dims, random);
        for (int64_t slots : {int64_t{1}, stride / 2 + 1, stride - 1, stride}) {
          if (slots < 1 || slots > stride) continue;
          std::vector<double> scores_ref(heads * wstride), out_ref(start.begin(), start.end());
          for (int64_t h = 0; h < heads; ++h) {
            for (int64_t j = 0; j < slots; ++j) {
              for (int64_t d = 0; d < dims; ++d) {
                scores_ref[h * wstride + j] += double(q[h * dims + d]) * keys[d * stride + j];
                out_ref[h * dims + d] += double(weights[h * wstride + j]) * values[j * dims + d];
              }
            }
          }
          for (auto& [name, k] : paths) {
            SCOPED_TRACE(testing::Message() << name << " stride " << stride << " dims " << dims
                                            << " heads " << heads << " slots " << slots);
            std::vector<float> scores(heads * wstride, -7.0f), scores16 = scores;
            k.block_scores(keys.data(), stride, slots, q.data(), heads, dims, scores.data(),
                           wstride);
            k.block_scores_bf16(keys16.data(), stride, slots, q.data(), heads, dims,
                                scores16.data(), wstride);
            std::vector<float> out = start, out16 = start;
            k.block_accumulate(values.data(), slots, weights.data(), wstride, heads, dims,
                               out.data());
            k.block_accumulate_bf16(values16.data(), slots, weights.data(), wstride, heads, dims,
                                    out16.data());
            for (int64_t h = 0; h < heads; ++h) {
              for (int64_t j = 0; j < wstride; ++j) {
                const int64_t i = h * wstride + j;
                if (j >= slots) {  // past the block's slots: untouched
                  ASSERT_EQ(scores[i], -7.0f);
                  ASSERT_EQ(scores16[i], -7.0f);
                  continue;
                }
                ASSERT_NEAR(scores16[i], scores[i], 1e-6 * (1 + std::fabs(scores[i])));
                ASSERT_NEAR(scores16[i], scores_ref[i], 1e-4);
              }
            }
            for (int64_t i = 0; i < heads * dims; ++i) {
              ASSERT_NEAR(out16[i], out[i], 1e-6 * (1 + std::fabs(out[i])));
              ASSERT_NEAR(out16[i], out_ref[i], 1e-4);
            }
          }
        }
      }
    }
  }
}

// A head's scores and output are the same whatever the size of the group it goes through a
// block with: attention results depend on the model, never on how heads are grouped.
TEST(KernelsTest, BlockKernelsGiveAHeadTheSameResultInAnyGroupPosition) {
  Random random(kSeed + 7);
  const int64_t stride = 16, dims = 64, heads = 4;
  const std::vector<float> keys = RandomFloats(dims * stride, random);
  const std::vector<float> values = RandomFloats(stride * dims, random);
  const std::vector<float> q = RandomFloats(heads * dims, random);
  const std::vector<float> weights = RandomFloats(heads * stride, random);
  for (auto& [name, k] : IsaPaths()) {
    SCOPED_TRACE(name);
    std::vector<float> scores(heads * stride), out(heads * dims, 0.0f);
    k.block_scores(keys.data(), stride, stride, q.data(), heads, dims, scores.data(), stride);
    k.block_accumulate(values.data(), stride, weights.data(), stride, heads, dims, out.data());
    for (int64_t h = 0; h < heads; ++h) {
      for (int64_t j = 0; j < stride; ++j) {
        double ref = 0;
        for (int64_t d = 0; d < dims; ++d) ref += double(q[h * dims + d]) * keys[d * stride + j];
        EXPECT_NEAR(scores[h * stride + j], ref, 1e-4) << "head " << h << " slot " << j;
      }
      for (int64_t d = 0; d < dims; ++d) {
        double ref = 0;
        for (int64_t j = 0; j < stride; ++j)
          ref += double(weights[h * stride + j]) * values[j * dims + d];
        EXPECT_NEAR(out[h * dims + d], ref, 1e-4) << "head " << h << " dim " << d;
      }
    }
  }
}

TEST(KernelsTest, SoftmaxMatchesDoublePrecisionOnEveryPath) {
  Random random(kSeed + 3);
  for (int64_t n : {1, 5, 16, 17, 63, 64, 65, 200, 1000}) {
    std::vector<float> x = RandomFloats(n, random);
    for (float& v : x) v *= 30;  // scores well apart, so e^x spans many orders of magnitude
    const float scale = 0.125f;
    double top = -INFINITY;
    for (float v : x) top = std::max(top, double(v) * scale);
    std::vector<double> ref(n);
    double sum = 0;
    for (int64_t i = 0; i < n; ++i) sum += ref[i] = std::exp(double(x[i]) * scale - top);
    for (auto& [name, k] : IsaPaths()) {
      SCOPED_TRACE(testing::Message() << name << " n " << n);
      std::vector<float> y = x;
      k.softmax(y.data(), n, scale);
      double total = 0;
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_NEAR(y[i], ref[i] / sum, 1e-6 * (1 + ref[i] / sum));
        total += y[i];
      }
      EXPECT_NEAR(total, 1.0, 1e-5);
    }
  }
}

TEST(KernelsTest, MatMulPathsAgreeForEveryType) {
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  Random random(kSeed + 1);
  ThreadPool pool(2);
  for (WeightType type :
       {WeightType::kF32, WeightType::kF16, WeightType::kBF16, WeightType::kQ8_0}) {
    Matrix m = MakeMatrix(type, 70, 256, random);
    for (int64_t n : {1, 5, 20}) {
      std::vector<float> x = RandomFloats(n * 256, random);
      std::vector<double> expected = Reference(m.view, x, n);
      std::vector<float> rows(n * 70), gemm(n * 70), chosen(n * 70);
      MatMulRowKernels(pool, m.view, x.data(), n, rows.data());
      MatMulGemm(pool, m.view, x.data(), n, gemm.data());
      MatMul(pool, m.view, x.data(), n, chosen.data());
      for (int64_t i = 0; i < n * 70; ++i) {
        ASSERT_NEAR(rows[i], expected[i], 2e-4) << WeightTypeName(type) << " n=" << n;
        ASSERT_NEAR(gemm[i], expected[i], 2e-4) << WeightTypeName(type) << " n=" << n;
        ASSERT_NEAR(chosen[i], expected[i], HasLowPrecisionPath(type) ? 0.1 : 2e-4);
      }
    }
  }
}

TEST(KernelsTest, KQuantsGoThroughTheDequantizedPath) {
  // Random bytes with sane F16 scales: the kernels must agree with DequantizeWeightRow.
  Random random(kSeed + 2);
  for (WeightType type : {WeightType::kQ4_K, WeightType::kQ6_K}) {
    const int64_t rows = 5, cols = 512, row_bytes = WeightRowBytes(type, cols);
    std::vector<uint8_t> bytes(rows * row_bytes);
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(random.Next());
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t blk = 0; blk < cols / 256; ++blk) {
        uint8_t* block = bytes.data() + r * row_bytes + blk * WeightBlockBytes(type);
        uint16_t scale = F32ToF16(0.01f);
        if (type == WeightType::kQ4_K) {
          std::memcpy(block, &scale, 2);
          std::memcpy(block + 2, &scale, 2);
        } else {
          std::memcpy(block + 208, &scale, 2);
        }
      }
    }
    WeightMatrix w{.data = bytes.data(), .type = type, .rows = rows, .cols = cols};
    std::vector<float> x = RandomFloats(2 * cols, random);
    std::vector<double> expected = Reference(w, x, 2);
    std::vector<float> out(2 * rows);
    ThreadPool pool(1);
    MatMul(pool, w, x.data(), 2, out.data());
    for (int64_t i = 0; i < 2 * rows; ++i) EXPECT_NEAR(out[i], expected[i], 1e-3);
  }
}

TEST(ThreadPoolTest, CoversEveryIndexOnce) {
  ThreadPool pool(3);
  EXPECT_EQ(pool.num_threads(), 3);
  std::vector<int> hits(1000);
  for (int round = 0; round < 20; ++round) {
    pool.ParallelFor(1000, 7, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) ++hits[i];
    });
  }
  for (int h : hits) ASSERT_EQ(h, 20);
}

// Jobs of different sizes back to back: every index runs once, and ParallelFor returns only
// after every body has finished. A worker that had seen the previous job fully claimed once
// read the next job's size and body before that job was published and claimed a chunk of it
// under the old job's generation: indices ran twice and the caller returned while the body ran.
TEST(ThreadPoolTest, ReturnsOnlyAfterEveryChunkOfEveryJob) {
  ThreadPool pool(3);
  std::atomic<int> active{0};
  std::vector<std::atomic<int>> hits(64);
  bool ok = true;
  for (int round = 0; round < 100000 && ok; ++round) {
    const int64_t count = round % 2 == 0 ? 2 + round % 5 : 64;
    for (int64_t i = 0; i < count; ++i) hits[i].store(0, std::memory_order_relaxed);
    pool.ParallelFor(count, 1, [&](int64_t begin, int64_t end) {
      active.fetch_add(1);
      for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      active.fetch_sub(1);
    });
    ok = active.load() == 0;
    for (int64_t i = 0; i < count && ok; ++i) ok = hits[i].load() == 1;
    ASSERT_TRUE(ok) << "round " << round << " count " << count;
  }
}

TEST(CpuFeaturesTest, ListsScalarLast) {
  std::vector<std::string> paths = EnabledIsaPaths();
  ASSERT_FALSE(paths.empty());
  EXPECT_EQ(paths.back(), "scalar");
}

}  // namespace
}  // namespace tandem::engine

namespace tandem::engine {
namespace {

TEST(KernelsTest, LowPrecisionPathsStayCloseToTheReference) {
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  Random random(kSeed + 3);
  ThreadPool pool(2);
  for (WeightType type : {WeightType::kBF16, WeightType::kQ8_0, WeightType::kQ8_0x16}) {
    if (!HasLowPrecisionPath(type)) {
      GTEST_LOG_(INFO) << "no narrow-precision path for " << WeightTypeName(type) << " here";
      continue;
    }
    const int64_t rows = type == WeightType::kQ8_0x16 ? 48 : 33;
    Matrix m = type == WeightType::kQ8_0x16 ? MakePackedQ8(rows, 256 + 64, random)
                                            : MakeMatrix(type, rows, 256 + 64, random);
    for (int64_t n : {1, 3, 4, 9, 40}) {
      std::vector<float> x = RandomFloats(n * m.view.cols, random);
      std::vector<double> expected = Reference(m.view, x, n);
      std::vector<float> out(n * rows), again(n * rows);
      MatMulLowPrecision(pool, m.view, x.data(), n, out.data());
      for (int64_t i = 0; i < n * rows; ++i) {
        // Rounding the activations (BF16: 2^-9 relative, Q8: 1/254 of the block maximum) moves
        // a 320-term dot product by a few hundredths; a wrong kernel is off by whole units.
        ASSERT_NEAR(out[i], expected[i], 0.1 + 0.01 * std::fabs(expected[i]))
            << WeightTypeName(type) << " n=" << n;
      }
      // Each output's arithmetic does not depend on how many rows share the call.
      const int64_t first = 1;
      if (n < 2 * first) continue;
      MatMulLowPrecision(pool, m.view, x.data(), first, again.data());
      MatMulLowPrecision(pool, m.view, x.data() + first * m.view.cols, n - first,
                         again.data() + first * rows);
      EXPECT_EQ(out, again) << WeightTypeName(type) << " n=" << n;
    }
  }
}

// Matrices sharing an input in one call give exactly what one MatMul each gives, for every path
// (mixed types fall back to one MatMul each).
TEST(KernelsTest, MatMulSharedEqualsOneMatMulEach) {
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  Random random(kSeed + 6);
  ThreadPool pool(2);
  for (WeightType type :
       {WeightType::kF32, WeightType::kBF16, WeightType::kQ8_0, WeightType::kQ8_0x16}) {
    const auto make = [&](WeightType t, int64_t rows) {
      return t == WeightType::kQ8_0x16 ? MakePackedQ8(rows, 96, random)
                                       : MakeMatrix(t, rows, 96, random);
    };
    Matrix a = make(type, 48), b = make(type, 16);
    Matrix c = make(type == WeightType::kF32 ? type : WeightType::kBF16, 16);
    for (int64_t n : {1, 5, 33}) {
      std::vector<float> x = RandomFloats(n * 96, random);
      for (bool mixed : {false, true}) {
        const Matrix& second = mixed ? c : b;
        std::vector<float> want_a(n * 48), want_b(n * 16), got_a(n * 48), got_b(n * 16);
        MatMul(pool, a.view, x.data(), n, want_a.data());
        MatMul(pool, second.view, x.data(), n, want_b.data());
        const WeightMatrix* w[] = {&a.view, &second.view};
        float* out[] = {got_a.data(), got_b.data()};
        MatMulShared(pool, w, x.data(), n, out);
        EXPECT_EQ(got_a, want_a) << WeightTypeName(type) << " n=" << n << " mixed " << mixed;
        EXPECT_EQ(got_b, want_b) << WeightTypeName(type) << " n=" << n << " mixed " << mixed;
      }
    }
  }
}

// The int8 Q8_0x16 kernel directly, on shapes the model tests do not reach: an odd number of
// blocks (the last one unpaired), every remainder of activation rows, one tile at a time.
TEST(KernelsTest, Q8Int8KernelMatchesTheReference) {
  const CpuFeatures& f = GetCpuFeatures();
  if (ActiveIsaTier() != IsaTier::kAvx512 || !f.avx512vnni) GTEST_SKIP() << "no AVX512-VNNI";
  SCOPED_TRACE(testing::Message() << "seed " << kSeed);
  internal::LowPrecisionKernels k = internal::Avx512LowPrecisionKernels(false, true);
  Random random(kSeed + 4);
  constexpr int64_t kRows = 32;
  for (int64_t cols : {32, 96, 256}) {
    Matrix m = MakePackedQ8(kRows, cols, random);
    const int64_t xs = internal::Q8ActivationBytes(cols);
    for (int64_t n : {1, 2, 5, 7, 8, 9, 21}) {
      std::vector<float> x = RandomFloats(n * cols, random);
      std::vector<double> expected = Reference(m.view, x, n);
      std::vector<uint8_t> quantized(n * xs);
      k.quantize_q8(x.data(), n, cols, quantized.data());
      std::vector<float> out(n * kRows), alone(n * kRows);
      k.q8_dots(m.view.row(0), m.view.row_bytes(), kRows, cols, quantized.data(), n, out.data(),
                kRows);
      for (int64_t i = 0; i < n * kRows; ++i) {
        ASSERT_NEAR(out[i], expected[i], 0.1 + 0.01 * std::fabs(expected[i]))
            << "cols=" << cols << " n=" << n;
      }
      // One tile and one input row at a time gives bit-identical results.
      std::vector<uint8_t> one(xs);
      for (int64_t t = 0; t < n; ++t) {
        k.quantize_q8(x.data() + t * cols, 1, cols, one.data());
        for (int64_t r = 0; r < kRows; r += kQ8TileRows) {
          k.q8_dots(m.view.row(r), m.view.row_bytes(), kQ8TileRows, cols, one.data(), 1,
                    &alone[t * kRows + r], kRows);
        }
      }
      EXPECT_EQ(out, alone) << "cols=" << cols << " n=" << n;
    }
  }
}

// Q8_0x16 holds the same values: every row dequantizes as it did in Q8_0.
TEST(KernelsTest, PackedQ8RowsDequantizeAsBefore) {
  Random random(kSeed + 7);
  for (int64_t cols : {32, 96, 256, 320}) {
    Matrix q8 = MakeMatrix(WeightType::kQ8_0, 48, cols, random);
    std::vector<uint8_t> packed(q8.bytes.size());
    PackQ8Tiles(q8.view, 0, 3, packed.data());
    WeightMatrix view = q8.view;
    view.data = packed.data();
    view.type = WeightType::kQ8_0x16;
    EXPECT_EQ(view.bytes(), q8.view.bytes());
    std::vector<float> want(cols), got(cols);
    for (int64_t r = 0; r < 48; ++r) {
      DequantizeWeightRow(q8.view, r, want.data());
      DequantizeWeightRow(view, r, got.data());
      ASSERT_EQ(got, want) << "cols=" << cols << " row " << r;
    }
  }
}

// PackWeights packs exactly the Q8_0 matrices the int8 kernel reads (rows a multiple of 16),
// reports every source byte once, in order, and MatMul on the result matches the reference.
TEST(KernelsTest, PackWeightsPacksWhatTheInt8KernelReads) {
  Random random(kSeed + 8);
  ThreadPool pool(2);
  Matrix odd = MakeMatrix(WeightType::kQ8_0, 33, 64, random);
  Matrix bf16 = MakeMatrix(WeightType::kBF16, 32, 64, random);
  for (const Matrix* m : {&odd, &bf16}) {
    EXPECT_FALSE(WantsPacking(m->view));
    auto same = PackWeights(pool, m->view);
    ASSERT_TRUE(same.ok()) << same.status();
    EXPECT_EQ(same->matrix.data, m->view.data);
    EXPECT_EQ(same->storage, nullptr);
  }
  // 4096 rows of 4096 columns: 70 MB in several stretches.
  Matrix big = MakeMatrix(WeightType::kQ8_0, 4096, 4096, random);
  const bool packs = WantsPacking(big.view);
  EXPECT_EQ(packs, HasLowPrecisionPath(WeightType::kQ8_0x16));
  if (!packs) GTEST_SKIP() << "no int8 kernel here";
  const uint8_t* next = big.view.row(0);
  int stretches = 0;
  auto packed_or = PackWeights(pool, big.view, [&](const uint8_t* first, int64_t bytes) {
    EXPECT_EQ(first, next);
    next = first + bytes;
    ++stretches;
  });
  ASSERT_TRUE(packed_or.ok()) << packed_or.status();
  const PackedWeights& packed = *packed_or;
  EXPECT_EQ(next, big.view.row(0) + big.view.bytes());
  EXPECT_GT(stretches, 1);
  EXPECT_EQ(packed.matrix.type, WeightType::kQ8_0x16);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(packed.matrix.data) % 64, 0u);
  std::vector<float> x = RandomFloats(3 * 4096, random), out(3 * 4096);
  MatMul(pool, packed.matrix, x.data(), 3, out.data());
  std::vector<double> expected = Reference(big.view, x, 3);
  for (int64_t i = 0; i < 3 * 4096; i += 97) {
    ASSERT_NEAR(out[i], expected[i], 0.5 + 0.01 * std::fabs(expected[i])) << i;
  }
}

// Q8_0 widened to BF16 serves CPUs with AVX512-BF16 but no VNNI; exercise it directly.
TEST(KernelsTest, Q8ToBf16KernelsMatchTheReference) {
  const CpuFeatures& f = GetCpuFeatures();
  if (ActiveIsaTier() != IsaTier::kAvx512 || !f.avx512bf16) GTEST_SKIP() << "no AVX512-BF16";
  internal::LowPrecisionKernels k = internal::Avx512LowPrecisionKernels(true, false);
  Random random(kSeed + 5);
  Matrix m = MakeMatrix(WeightType::kQ8_0, 5, 256, random);
  const int64_t n = 3;
  std::vector<float> x = RandomFloats(n * 256, random);
  std::vector<double> expected = Reference(m.view, x, n);
  std::vector<uint16_t> xb(n * 256), wb(5 * 256);
  for (int64_t i = 0; i < n; ++i) k.f32_to_bf16(&x[i * 256], 256, &xb[i * 256]);
  for (int64_t r = 0; r < 5; ++r) k.q8_to_bf16(m.view.row(r), 256, &wb[r * 256]);
  std::vector<float> out(n * 5);
  k.bf16_dots(reinterpret_cast<const uint8_t*>(wb.data()), 512, 5, 256, xb.data(), 256, n,
              out.data(), 5);
  for (int64_t i = 0; i < n * 5; ++i) {
    ASSERT_NEAR(out[i], expected[i], 0.1 + 0.01 * std::fabs(expected[i])) << i;
  }
}

}  // namespace
}  // namespace tandem::engine
