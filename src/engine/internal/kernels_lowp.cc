// Decode kernels that round the activations to the weights' precision so the multiply runs on the
// CPU's narrow dot-product instructions: BF16 x BF16 with AVX512-BF16 (vdpbf16ps, 32 products per
// instruction) and Q8_0 x Q8 with AVX512-VNNI (vpdpbusd, 32 int8 products per block). Batched
// decode is compute-bound; these double to quadruple its arithmetic rate over widening to F32.
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "engine/internal/kernels_isa.h"
#include "engine/weight_types.h"

#define TANDEM_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")))
#define TANDEM_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

namespace tandem::engine::internal {
namespace {

TANDEM_BF16 void F32ToBf16Row(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512bh packed =
        _mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(x + i));
    _mm512_storeu_si512(out + i, reinterpret_cast<const __m512i&>(packed));
  }
  for (; i < n; ++i) out[i] = F32ToBf16(x[i]);
}

// R weight rows x T input rows, one accumulator per output: R*T independent chains hide the
// instruction latency, and each loaded activation vector feeds R rows. An output's arithmetic
// does not depend on R, T or the batch size, so results are the same alone or batched.
template <int R, int T>
TANDEM_BF16 void Bf16Tile(const uint8_t* rows, int64_t row_bytes, int64_t cols, const uint16_t* x,
                          int64_t xs, float* out, int64_t os) {
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  int64_t c = 0;
  for (; c + 32 <= cols; c += 32) {
    __m512i xv[T];
    for (int t = 0; t < T; ++t) xv[t] = _mm512_loadu_si512(x + t * xs + c);
    for (int r = 0; r < R; ++r) {
      const __m512i w = _mm512_loadu_si512(rows + r * row_bytes + 2 * c);
      for (int t = 0; t < T; ++t) {
        acc[r][t] = _mm512_dpbf16_ps(acc[r][t], reinterpret_cast<const __m512bh&>(w),
                                     reinterpret_cast<const __m512bh&>(xv[t]));
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float sum = _mm512_reduce_add_ps(acc[r][t]);
      for (int64_t k = c; k < cols; ++k) {
        uint16_t bits;
        std::memcpy(&bits, rows + r * row_bytes + 2 * k, 2);
        sum += Bf16ToF32(bits) * Bf16ToF32(x[t * xs + k]);
      }
      out[t * os + r] = sum;
    }
  }
}

template <int R>
void Bf16Rows(const uint8_t* rows, int64_t row_bytes, int64_t cols, const uint16_t* x, int64_t xs,
              int64_t n, float* out, int64_t os) {
  int64_t t = 0;
  for (; t + 2 <= n; t += 2)
    Bf16Tile<R, 2>(rows, row_bytes, cols, x + t * xs, xs, out + t * os, os);
  if (t < n) Bf16Tile<R, 1>(rows, row_bytes, cols, x + t * xs, xs, out + t * os, os);
}

void Bf16RowDots(const uint8_t* rows, int64_t row_bytes, int64_t nrows, int64_t cols,
                 const uint16_t* x, int64_t xs, int64_t n, float* out, int64_t os) {
  int64_t r = 0;
  for (; r + 4 <= nrows; r += 4)
    Bf16Rows<4>(rows + r * row_bytes, row_bytes, cols, x, xs, n, out + r, os);
  for (; r < nrows; ++r) Bf16Rows<1>(rows + r * row_bytes, row_bytes, cols, x, xs, n, out + r, os);
}

// One Q8_0 row as BF16 (scale * value rounded to nearest even), for the BF16 kernel.
TANDEM_BF16 void Q8ToBf16Row(const uint8_t* row, int64_t cols, uint16_t* out) {
  for (int64_t b = 0; b < cols / 32; ++b) {
    const uint8_t* block = row + b * sizeof(BlockQ8_0);
    uint16_t scale_bits;
    std::memcpy(&scale_bits, block, 2);
    const __m512 scale = _mm512_set1_ps(_cvtsh_ss(scale_bits));
    const __m512 lo = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                               reinterpret_cast<const __m128i*>(block + 2)))));
    const __m512 hi = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(
                                               reinterpret_cast<const __m128i*>(block + 18)))));
    const __m512bh packed = _mm512_cvtne2ps_pbh(hi, lo);
    _mm512_storeu_si512(out + b * 32, reinterpret_cast<const __m512i&>(packed));
  }
}

// Q8 activations: per block of 32, scale = max|x| / 127 and values round(x / scale).
TANDEM_VNNI void QuantizeQ8Row(const float* x, int64_t cols, int8_t* q, float* scales) {
  for (int64_t b = 0; b < cols / 32; ++b) {
    const __m512 lo = _mm512_loadu_ps(x + b * 32), hi = _mm512_loadu_ps(x + b * 32 + 16);
    const float max_abs = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const float scale = max_abs / 127.0f;
    const __m512 inverse = _mm512_set1_ps(scale > 0 ? 1.0f / scale : 0.0f);
    const __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inverse));  // round to nearest
    const __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inverse));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 32), _mm512_cvtsepi32_epi8(qlo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + b * 32 + 16), _mm512_cvtsepi32_epi8(qhi));
    scales[b] = scale;
  }
}

template <int R, int T>
TANDEM_VNNI void Q8Tile(const uint8_t* rows, int64_t row_bytes, int64_t cols, const int8_t* xq,
                        const float* xd, float* out, int64_t os) {
  __m256 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
  }
  const __m256i zero = _mm256_setzero_si256();
  const int64_t blocks = cols / 32;
  for (int64_t b = 0; b < blocks; ++b) {
    __m256i x[T], x_abs[T];
    for (int t = 0; t < T; ++t) {
      x[t] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + t * cols + b * 32));
      x_abs[t] = _mm256_sign_epi8(x[t], x[t]);
    }
    for (int r = 0; r < R; ++r) {
      const uint8_t* block = rows + r * row_bytes + b * sizeof(BlockQ8_0);
      uint16_t scale_bits;
      std::memcpy(&scale_bits, block, 2);
      const float wscale = _cvtsh_ss(scale_bits);
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
      for (int t = 0; t < T; ++t) {
        // vpdpbusd multiplies unsigned by signed bytes: |x| times w carrying x's sign.
        const __m256i dot = _mm256_dpbusd_epi32(zero, x_abs[t], _mm256_sign_epi8(w, x[t]));
        acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot),
                                    _mm256_set1_ps(wscale * xd[t * blocks + b]), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      __m128 sum =
          _mm_add_ps(_mm256_castps256_ps128(acc[r][t]), _mm256_extractf128_ps(acc[r][t], 1));
      sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
      sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
      out[t * os + r] = _mm_cvtss_f32(sum);
    }
  }
}

template <int R>
void Q8Rows(const uint8_t* rows, int64_t row_bytes, int64_t cols, const int8_t* xq, const float* xd,
            int64_t n, float* out, int64_t os) {
  const int64_t sq = cols, sd = cols / 32;
  int64_t t = 0;
  for (; t + 2 <= n; t += 2)
    Q8Tile<R, 2>(rows, row_bytes, cols, xq + t * sq, xd + t * sd, out + t * os, os);
  if (t < n) Q8Tile<R, 1>(rows, row_bytes, cols, xq + t * sq, xd + t * sd, out + t * os, os);
}

// Q8_0 blocks are 34 bytes, so four interleaved row streams split cache lines and confuse the
// prefetchers: memory-bound single-token decode is faster one row at a time.
constexpr int64_t kQ8MinTokensForRowTiles = 2;

void Q8RowDots(const uint8_t* rows, int64_t row_bytes, int64_t nrows, int64_t cols,
               const int8_t* xq, const float* xd, int64_t n, float* out, int64_t os) {
  int64_t r = 0;
  for (; r + 4 <= nrows && n >= kQ8MinTokensForRowTiles; r += 4)
    Q8Rows<4>(rows + r * row_bytes, row_bytes, cols, xq, xd, n, out + r, os);
  for (; r < nrows; ++r) Q8Rows<1>(rows + r * row_bytes, row_bytes, cols, xq, xd, n, out + r, os);
}

}  // namespace

LowPrecisionKernels Avx512LowPrecisionKernels(bool bf16, bool vnni) {
  LowPrecisionKernels k;
  if (bf16) {
    k.f32_to_bf16 = F32ToBf16Row;
    k.bf16_dots = Bf16RowDots;
    k.q8_to_bf16 = Q8ToBf16Row;
  }
  if (vnni) {
    k.quantize_q8 = QuantizeQ8Row;
    k.q8_dots = Q8RowDots;
  }
  return k;
}

}  // namespace tandem::engine::internal
