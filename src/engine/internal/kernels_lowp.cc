// Decode kernels that round the activations to the weights' precision so the multiply runs on the
// CPU's narrow dot-product instructions: BF16 x BF16 with AVX512-BF16 (vdpbf16ps, 32 products per
// instruction) and Q8_0 x Q8 with AVX512-VNNI (vpdpbusd, 32 int8 products per block). Batched
// decode is compute-bound; these double to quadruple its arithmetic rate over widening to F32.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

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

// Requests `bytes` from `first` into the cache at once.
inline void PrefetchRange(const uint8_t* first, int64_t bytes) {
  for (int64_t i = 0; i < bytes; i += 64)
    _mm_prefetch(reinterpret_cast<const char*>(first + i), _MM_HINT_T0);
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
      // One input row is bound by memory: fetch the same line of the next tile's rows now.
      if constexpr (T == 1) {
        _mm_prefetch(reinterpret_cast<const char*>(rows + (R + r) * row_bytes + 2 * c),
                     _MM_HINT_T0);
      }
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

// Q8 activations (kernels_isa.h): per block of 32, scale = max|x| / 127 and values
// round(x / scale), and -128 x the sum of the block's values, which cancels the +128 the kernel
// adds to the weights to make them unsigned for vpdpbusd. Row t of a group of T rows.
TANDEM_VNNI void QuantizeQ8GroupRow(const float* x, int64_t cols, int64_t t, int64_t group_rows,
                                    uint8_t* group) {
  const int64_t padded_blocks = Q8PaddedCols(cols) / 32;
  const int64_t block_bytes = group_rows * 40;
  for (int64_t b = 0; b < padded_blocks; ++b) {
    uint8_t* block = group + b * block_bytes;
    int8_t* values = reinterpret_cast<int8_t*>(block + t * 32);
    float* scale_out = reinterpret_cast<float*>(block + group_rows * 32) + t;
    int32_t* correction = reinterpret_cast<int32_t*>(block + group_rows * 36) + t;
    if (b >= cols / 32) {
      std::memset(values, 0, 32);
      *scale_out = 0;
      *correction = 0;
      continue;
    }
    const __m512 lo = _mm512_loadu_ps(x + b * 32), hi = _mm512_loadu_ps(x + b * 32 + 16);
    const float max_abs = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(lo), _mm512_abs_ps(hi)));
    const float scale = max_abs / 127.0f;
    const __m512 inverse = _mm512_set1_ps(scale > 0 ? 1.0f / scale : 0.0f);
    const __m512i qlo = _mm512_cvtps_epi32(_mm512_mul_ps(lo, inverse));  // round to nearest
    const __m512i qhi = _mm512_cvtps_epi32(_mm512_mul_ps(hi, inverse));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(values), _mm512_cvtsepi32_epi8(qlo));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(values + 16), _mm512_cvtsepi32_epi8(qhi));
    *scale_out = scale;
    // |x| / scale <= 127 (the largest rounds to 127), so the int32 values are the bytes stored.
    *correction = -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(qlo, qhi));
  }
}

TANDEM_VNNI void QuantizeQ8Rows(const float* x, int64_t n, int64_t cols, uint8_t* out) {
  const int64_t xs = Q8ActivationBytes(cols);
  for (int64_t first = 0; first < n; first += kQ8Group) {
    const int64_t rows = std::min(kQ8Group, n - first);
    for (int64_t t = 0; t < rows; ++t)
      QuantizeQ8GroupRow(x + (first + t) * cols, cols, t, rows, out + first * xs);
  }
}

// The int8 kernel works on Q8_0x16 tiles (weight_types.h): 16 weight rows, one per 32-bit lane.
// Per block, eight vectors hold the rows' values 4 columns at a time (already unsigned, +128), so
// a vpdpbusd against 4 activation bytes broadcast to every lane adds 64 products into the 16
// rows' dot sums, and the block's 8 vpdpbusd accumulate into int32 sums, exactly. Only then does
// the block's sum go to float, once per 16 rows: scaled by the activation's scale, then by the
// rows' scales into the accumulator. The float work, which bounds a kernel that spreads a block
// over many lanes, is an eighth of that; the packed layout makes every load a whole vector of
// consecutive bytes, so a tile streams from memory in order.
//
// The 16 rows' results for T activation rows: out[t * os + r]. An output's arithmetic (its
// block sums exact in int32, then per block: to float, times the activation scale, fused
// multiply-add of the weight scale into one float accumulator, blocks in order) depends only on
// its weight row and its activation row, never on T, the batch or its lane, so results are the
// same alone or batched.
template <int T>
TANDEM_VNNI void Q8Tile(const uint8_t* tile, int64_t blocks, const uint8_t* x, float* out,
                        int64_t os, const uint8_t* next_tile) {
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const Q8TileBlockOffsets at = Q8TileBlockAt(b, blocks);
    const uint8_t* values = tile + at.values;
    if (next_tile != nullptr) {
      // A block's share of the next tile (kQ8TileRows * 34 bytes), so its lines arrive spread
      // over this tile's work.
      const uint8_t* ahead = next_tile + b * (kQ8TileRows * 34);
      for (int line = 0; line < kQ8TileRows * 34; line += 64)
        _mm_prefetch(reinterpret_cast<const char*>(ahead + line), _MM_HINT_T0);
    }
    // The group's T rows of block b (kernels_isa.h): values, scales and sums at fixed offsets
    // from one pointer.
    const uint8_t* xb = x + b * (T * 40);
    const float* x_scales = reinterpret_cast<const float*>(xb + T * 32);
    const int32_t* corrections = reinterpret_cast<const int32_t*>(xb + T * 36);
    // With one input, two sums (even and odd groups) so each chain is four vpdpbusd long; with
    // more, the inputs' chains are independent already and one sum each keeps the registers
    // free. int32 addition is exact, so the split changes no result.
    constexpr int kChains = T == 1 ? 2 : 1;
    __m512i sums[kChains][T];
    for (int t = 0; t < T; ++t) {
      sums[0][t] = _mm512_set1_epi32(corrections[t]);
      if constexpr (kChains == 2) sums[1][t] = _mm512_setzero_si512();
    }
    for (int g = 0; g < 8; ++g) {
      const __m512i w = _mm512_loadu_si512(values + 64 * g);
      for (int t = 0; t < T; ++t) {
        int32_t four;
        std::memcpy(&four, xb + t * 32 + 4 * g, 4);
        sums[g % kChains][t] =
            _mm512_dpbusd_epi32(sums[g % kChains][t], w, _mm512_set1_epi32(four));
      }
    }
    const __m512 scales =
        _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(tile + at.scales)));
    for (int t = 0; t < T; ++t) {
      __m512i sum = sums[0][t];
      if constexpr (kChains == 2) sum = _mm512_add_epi32(sum, sums[1][t]);
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(x_scales[t])),
                               scales, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + t * os, acc[t]);
}

// Inputs from which a tile call prefetches the next tile.
constexpr int64_t kQ8PrefetchInputs = 4;

static_assert(kQ8Group == 8, "Q8TileRest covers groups of up to 8 rows");

// A last group of n < kQ8Group activation rows: Q8Tile<n>, picked at run time.
template <int T>
TANDEM_VNNI void Q8TileRest(int64_t n, const uint8_t* tile, int64_t blocks, const uint8_t* x,
                            float* out, int64_t os, const uint8_t* next_tile) {
  if (n == T) return Q8Tile<T>(tile, blocks, x, out, os, next_tile);
  if constexpr (T > 1) Q8TileRest<T - 1>(n, tile, blocks, x, out, os, next_tile);
}

// `nrows` (a multiple of 16) rows of a Q8_0x16 matrix from its tile at `rows`, against n
// activation rows, a group of kQ8Group rows per tile call (8 dot sums and 8 accumulators stay in
// registers beside the block's weight vectors). A tile's bytes stay in L1/L2 while every group
// passes over them. With one activation row the kernel is bound by memory and reads the matrix
// in order, which the hardware prefetcher follows (prefetching the next tile by hand as well
// was slower: 21-22 against 25-28 GB/s per product from memory on one thread); only a call's
// first tile is requested at once, as the prefetcher has not yet seen the stream.
TANDEM_VNNI void Q8RowDots(const uint8_t* rows, int64_t row_bytes, int64_t nrows, int64_t cols,
                           const uint8_t* x, int64_t n, float* out, int64_t os) {
  const int64_t xs = Q8ActivationBytes(cols);
  const int64_t blocks = cols / 32;
  const int64_t tile_bytes = kQ8TileRows * row_bytes;
  PrefetchRange(rows, std::min<int64_t>(nrows, kQ8TileRows) * row_bytes);
  for (int64_t r = 0; r < nrows; r += kQ8TileRows) {
    const uint8_t* tile = rows + r / kQ8TileRows * tile_bytes;
    // With several inputs a tile takes long enough that the hardware prefetcher, which stops at
    // page boundaries, leaves the next tile's first lines to arrive on demand; the first group
    // requests the next tile instead.
    const uint8_t* next =
        n >= kQ8PrefetchInputs && r + kQ8TileRows < nrows ? tile + tile_bytes : nullptr;
    int64_t t = 0;
    for (; t + kQ8Group <= n; t += kQ8Group) {
      Q8Tile<kQ8Group>(tile, blocks, x + t * xs, out + t * os + r, os, next);
      next = nullptr;
    }
    Q8TileRest<kQ8Group - 1>(n - t, tile, blocks, x + t * xs, out + t * os + r, os, next);
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
    k.quantize_q8 = QuantizeQ8Rows;
    k.q8_dots = Q8RowDots;
  }
  return k;
}

}  // namespace tandem::engine::internal
