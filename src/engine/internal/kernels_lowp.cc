// Decode kernels that round the activations to the weights' precision so the multiply runs on the
// CPU's narrow dot-product instructions: BF16 x BF16 with AVX512-BF16 (vdpbf16ps, 32 products per
// instruction) and Q8_0 x Q8 with AVX512-VNNI (vpdpbusd, 32 int8 products per block). Batched
// decode is compute-bound; these double to quadruple its arithmetic rate over widening to F32.
#include <immintrin.h>

#include <algorithm>
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

// Q8 activations (Q8ActivationBytes per row, see kernels_isa.h): per block of 32, scale =
// max|x| / 127 and values round(x / scale); the scale repeated over the block's 8 dot lanes; and
// per lane -128 x the sum of its 4 values, which cancels the +128 the kernel adds to the
// weights to make them unsigned for vpdpbusd. Blocks past `cols` up to the 64-value padding
// are zero.
TANDEM_VNNI void QuantizeQ8Row(const float* x, int64_t cols, uint8_t* out) {
  const int64_t padded = Q8PaddedCols(cols);
  int8_t* values = reinterpret_cast<int8_t*>(out);
  float* scales = reinterpret_cast<float*>(out + padded);
  int32_t* corrections = reinterpret_cast<int32_t*>(out + 2 * padded);
  const __m256i unsigned_128 = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < padded / 32; ++b) {
    if (b >= cols / 32) {
      std::memset(values + b * 32, 0, 32);
      _mm256_storeu_ps(scales + b * 8, _mm256_setzero_ps());
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(corrections + b * 8), _mm256_setzero_si256());
      continue;
    }
    const __m512 lo = _mm512_loadu_ps(x + b * 32), hi = _mm512_loadu_ps(x + b * 32 + 16);
    const float max_abs = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const float scale = max_abs / 127.0f;
    const __m512 inverse = _mm512_set1_ps(scale > 0 ? 1.0f / scale : 0.0f);
    const __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inverse));  // round to nearest
    const __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inverse));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(values + b * 32), _mm512_cvtsepi32_epi8(qlo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(values + b * 32 + 16), _mm512_cvtsepi32_epi8(qhi));
    _mm256_storeu_ps(scales + b * 8, _mm256_set1_ps(scale));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(values + b * 32));
    const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(), unsigned_128, q);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(corrections + b * 8),
                        _mm256_sub_epi32(_mm256_setzero_si256(), sums));
  }
}

// Two Q8_0 blocks (b, b+1) of a weight row as one vector of unsigned bytes (value + 128) and the
// two scales spread over their 8 lanes each. `pair` false: block b alone, the upper half zero.
struct WeightPair {
  __m512i values;
  __m512 scales;
};
TANDEM_VNNI inline WeightPair LoadWeightPair(const uint8_t* block, bool pair) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 2));
  uint16_t scale_lo, scale_hi = 0;
  std::memcpy(&scale_lo, block, 2);
  __m512i values;
  if (pair) {
    values = _mm512_inserti64x4(
        _mm512_castsi256_si512(lo),
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + sizeof(BlockQ8_0) + 2)), 1);
    std::memcpy(&scale_hi, block + sizeof(BlockQ8_0), 2);
  } else {
    values = _mm512_zextsi256_si512(lo);
  }
  // Each F16 scale broadcast over its block's 8 lanes, then widened.
  const __m256i scales = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_set1_epi16(static_cast<int16_t>(scale_lo))),
      _mm_set1_epi16(static_cast<int16_t>(scale_hi)), 1);
  return {_mm512_xor_si512(values, flip), _mm512_cvtph_ps(scales)};
}

// R weight rows x T activation rows (Q8ActivationBytes(cols) apart). Per output and block pair:
// one vpdpbusd (64 products, exact in int32), a conversion and a scaled accumulate; an
// output's arithmetic depends only on its weight row and its activation row, never on R, T or
// the batch, so results are the same alone or batched.
template <int R, int T>
TANDEM_VNNI void Q8Tile(const uint8_t* rows, int64_t row_bytes, int64_t cols, const uint8_t* x,
                        int64_t xs, float* out, int64_t os) {
  const int64_t padded = Q8PaddedCols(cols);
  const int64_t blocks = cols / 32;
  __m512 acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; b += 2) {
    const bool pair = b + 1 < blocks;
    WeightPair w[R];
    for (int r = 0; r < R; ++r)
      w[r] = LoadWeightPair(rows + r * row_bytes + b * sizeof(BlockQ8_0), pair);
    for (int t = 0; t < T; ++t) {
      const uint8_t* xt = x + t * xs;
      const __m512i values = _mm512_loadu_si512(xt + b * 32);
      const __m512 scales = _mm512_loadu_ps(reinterpret_cast<const float*>(xt + padded) + b * 8);
      const __m512i correction = _mm512_loadu_si512(xt + 2 * padded + b * 32);
      for (int r = 0; r < R; ++r) {
        const __m512i dot = _mm512_dpbusd_epi32(correction, w[r].values, values);
        acc[r][t] =
            _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(w[r].scales, scales), acc[r][t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) out[t * os + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
}

template <int R>
void Q8Rows(const uint8_t* rows, int64_t row_bytes, int64_t cols, const uint8_t* x, int64_t xs,
            int64_t n, float* out, int64_t os) {
  int64_t t = 0;
  for (; t + 4 <= n; t += 4) Q8Tile<R, 4>(rows, row_bytes, cols, x + t * xs, xs, out + t * os, os);
  switch (n - t) {
    case 3:
      Q8Tile<R, 3>(rows, row_bytes, cols, x + t * xs, xs, out + t * os, os);
      break;
    case 2:
      Q8Tile<R, 2>(rows, row_bytes, cols, x + t * xs, xs, out + t * os, os);
      break;
    case 1:
      Q8Tile<R, 1>(rows, row_bytes, cols, x + t * xs, xs, out + t * os, os);
      break;
    default:
      break;
  }
}

// Q8_0 blocks are 34 bytes, so interleaved row streams split cache lines and confuse the
// prefetchers: memory-bound single-token decode is faster one row at a time.
void Q8RowDots(const uint8_t* rows, int64_t row_bytes, int64_t nrows, int64_t cols,
               const uint8_t* x, int64_t n, float* out, int64_t os) {
  const int64_t xs = Q8ActivationBytes(cols);
  if (n == 1) {
    for (int64_t r = 0; r < nrows; ++r)
      Q8Tile<1, 1>(rows + r * row_bytes, row_bytes, cols, x, xs, out + r, os);
    return;
  }
  // Activation rows in groups (~256 KB) that stay in L2 while every weight row of the call
  // passes; a 32-sequence decode step of a 896-wide model is one group, so each weight block
  // comes from memory once.
  const int64_t group = std::clamp<int64_t>((256 << 10) / xs, 4, 32) / 4 * 4;
  for (int64_t t = 0; t < n; t += group) {
    const int64_t count = std::min(group, n - t);
    const uint8_t* xt = x + t * xs;
    float* ot = out + t * os;
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
      // Four rows' bytes are too short a stream for the hardware prefetchers: ask two groups
      // ahead (the rows after this call's are the next call's).
      const uint8_t* ahead = rows + (r + 8) * row_bytes;
      for (int64_t i = 0; i < 4 * row_bytes; i += 64)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + i), _MM_HINT_T0);
      Q8Rows<4>(rows + r * row_bytes, row_bytes, cols, xt, xs, count, ot + r, os);
    }
    for (; r < nrows; ++r)
      Q8Rows<1>(rows + r * row_bytes, row_bytes, cols, xt, xs, count, ot + r, os);
  }
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
