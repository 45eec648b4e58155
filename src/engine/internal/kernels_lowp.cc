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

// Q8 activations (Q8ActivationBytes per row, see kernels_isa.h): per block of 32, scale =
// max|x| / 127 and values round(x / scale), and -128 x the sum of the block's values, which
// cancels the +128 the kernel adds to the weights to make them unsigned for vpdpbusd. Blocks
// past `cols` up to the 64-value padding are zero.
TANDEM_VNNI void QuantizeQ8Row(const float* x, int64_t cols, uint8_t* out) {
  const int64_t padded = Q8PaddedCols(cols);
  int8_t* values = reinterpret_cast<int8_t*>(out);
  float* scales = reinterpret_cast<float*>(out + padded);
  int32_t* corrections = reinterpret_cast<int32_t*>(out + padded) + padded / 32;
  for (int64_t b = 0; b < padded / 32; ++b) {
    if (b >= cols / 32) {
      std::memset(values + b * 32, 0, 32);
      scales[b] = 0;
      corrections[b] = 0;
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
    scales[b] = scale;
    corrections[b] =
        -128 * _mm512_reduce_add_epi32(_mm512_add_epi32(
                   _mm512_cvtepi8_epi32(
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(values + b * 32))),
                   _mm512_cvtepi8_epi32(
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(values + b * 32 + 16)))));
  }
}

// The int8 kernel works on tiles of 16 weight rows, one row per 32-bit lane: per block, eight
// vectors hold the rows' values 4 columns at a time (made unsigned, +128), so a vpdpbusd
// against 4 activation bytes broadcast to every lane adds 64 products into the 16 rows' dot
// sums, and the block's 8 vpdpbusd accumulate into one int32 vector, exactly. Only then does
// the block's sum go to float, once per 16 rows: scaled by the activation's scale, then by the
// rows' scales into the accumulator. The float work, which bounds a kernel that spreads a
// block over many lanes, is an eighth of that.
constexpr int kTileRows = 16;
struct TileBlock {
  __m512i values[8];  // values[g]: columns 4g .. 4g+3 of the 16 rows, 4 bytes per row
  __m512 scales;      // the rows' scales
};

// The transpose of a block of 16 rows (8 x 4 bytes each) into TileBlock::values, in three
// rounds of two-source permutes over 8 vectors; see TransposeIndices.
struct TransposeIndices {
  __m512i round1[2], round2[2], round3[2];
};
TANDEM_VNNI TransposeIndices MakeTransposeIndices() {
  alignas(64) int32_t idx[6][16];
  for (int q = 0; q < 16; ++q) {
    for (int h = 0; h < 2; ++h) {
      // Round 1: two vectors of rows (2 each, 8 columns) -> 4 rows x columns 4h .. 4h+3.
      idx[h][q] = (q / 4 < 2 ? 0 : 16) + (q / 4 % 2) * 8 + 4 * h + q % 4;
      // Round 2: two of those (rows 4m .. 4m+7) -> 8 rows x columns 2j, 2j+1 of the 4.
      idx[2 + h][q] = (q / 2 < 4 ? 0 : 16) + (q / 2 % 4) * 4 + 2 * h + q % 2;
      // Round 3: two of those (rows 0-7 and 8-15) -> 16 rows x one column e.
      idx[4 + h][q] = (q < 8 ? 0 : 16) + (q % 8) * 2 + h;
    }
  }
  TransposeIndices t;
  for (int h = 0; h < 2; ++h) {
    t.round1[h] = _mm512_load_si512(idx[h]);
    t.round2[h] = _mm512_load_si512(idx[2 + h]);
    t.round3[h] = _mm512_load_si512(idx[4 + h]);
  }
  return t;
}

// The 16 rows of a tile: their addresses, and their offsets from the first for gathers. Rows
// past the end of the matrix repeat its last row; their lanes are not stored.
struct TileRows {
  const uint8_t* row[kTileRows];
  __m512i offsets;
};
TANDEM_VNNI inline TileRows MakeTileRows(const uint8_t* first, int64_t row_bytes, int count) {
  TileRows rows;
  alignas(64) int32_t offsets[kTileRows];
  for (int i = 0; i < kTileRows; ++i) {
    offsets[i] = static_cast<int32_t>(std::min(i, count - 1) * row_bytes);
    rows.row[i] = first + offsets[i];
  }
  rows.offsets = _mm512_load_si512(offsets);
  return rows;
}

// Block b of rows 2k and 2k+1 in one vector (8 x 4 bytes each), as stored (signed).
TANDEM_VNNI inline __m512i LoadRowPair(const TileRows& rows, int k, int64_t b) {
  const int64_t offset = b * sizeof(BlockQ8_0) + 2;
  return _mm512_inserti64x4(
      _mm512_castsi256_si512(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows.row[2 * k] + offset))),
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows.row[2 * k + 1] + offset)), 1);
}

// The scales of block b of the 16 rows: one gather of the 4 bytes at each block's start, whose
// low half is the F16 scale.
TANDEM_VNNI inline __m512 LoadTileScales(const TileRows& rows, int64_t b) {
  const __m512i words =
      _mm512_i32gather_epi32(rows.offsets, rows.row[0] + b * sizeof(BlockQ8_0), 1);
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(words));
}

// Block b of the tile's rows into `out`.
TANDEM_VNNI inline void PrepareTileBlock(const TileRows& rows, int64_t b,
                                         const TransposeIndices& ix, TileBlock* out) {
  __m512i z[8];
  for (int k = 0; k < 8; ++k) z[k] = LoadRowPair(rows, k, b);
  // z[k]: rows 2k, 2k+1 (8 columns-of-4 each) -> a[m][h]: rows 4m .. 4m+3, groups 4h .. 4h+3.
  __m512i a[4][2], c[2][2][2];
  for (int m = 0; m < 4; ++m) {
    for (int h = 0; h < 2; ++h)
      a[m][h] = _mm512_permutex2var_epi32(z[2 * m], ix.round1[h], z[2 * m + 1]);
  }
  // -> c[m'][h][j]: rows 8m' .. 8m'+7, groups 4h+2j, 4h+2j+1.
  for (int m = 0; m < 2; ++m) {
    for (int h = 0; h < 2; ++h) {
      for (int j = 0; j < 2; ++j)
        c[m][h][j] = _mm512_permutex2var_epi32(a[2 * m][h], ix.round2[j], a[2 * m + 1][h]);
    }
  }
  // -> values[4h + 2j + e]: all 16 rows, one group.
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int h = 0; h < 2; ++h) {
    for (int j = 0; j < 2; ++j) {
      for (int e = 0; e < 2; ++e) {
        out->values[4 * h + 2 * j + e] =
            _mm512_xor_si512(_mm512_permutex2var_epi32(c[0][h][j], ix.round3[e], c[1][h][j]), flip);
      }
    }
  }
  out->scales = LoadTileScales(rows, b);
}

// The tile's rows against a single activation row without the transpose, for memory-bound
// decode: per block, each pair of rows' dot lanes (row layout) is summed down to one lane per row
// with the transpose's permutes (the same lane order, half as many permutes, nothing stored),
// exact in int32; from there the float steps are Q8Tile's, so the results are bit-identical.
// Lanes of two vectors added in pairs, one permute per half (index[0] and index[1]).
TANDEM_VNNI inline __m512i PairSums(__m512i lo, __m512i hi, const __m512i* index) {
  return _mm512_add_epi32(_mm512_permutex2var_epi32(lo, index[0], hi),
                          _mm512_permutex2var_epi32(lo, index[1], hi));
}

template <typename Prefetch>
TANDEM_VNNI void Q8TileOneInput(const TileRows& rows, int64_t blocks, const TransposeIndices& ix,
                                const uint8_t* x, int64_t padded, float* out, __mmask16 mask,
                                const Prefetch& prefetch) {
  const float* scales = reinterpret_cast<const float*>(x + padded);
  const int32_t* corrections = reinterpret_cast<const int32_t*>(scales + padded / 32);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  __m512 acc = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    prefetch(b);
    const __m512i input =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + b * 32)));
    __m512i d[8];
    for (int k = 0; k < 8; ++k) {
      d[k] = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                 _mm512_xor_si512(LoadRowPair(rows, k, b), flip), input);
    }
    __m512i e[4], f[2];
    for (int m = 0; m < 4; ++m) e[m] = PairSums(d[2 * m], d[2 * m + 1], ix.round1);
    for (int m = 0; m < 2; ++m) f[m] = PairSums(e[2 * m], e[2 * m + 1], ix.round2);
    const __m512i sums =
        _mm512_add_epi32(PairSums(f[0], f[1], ix.round3), _mm512_set1_epi32(corrections[b]));
    acc = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums), _mm512_set1_ps(scales[b])),
                          LoadTileScales(rows, b), acc);
  }
  _mm512_mask_storeu_ps(out, mask, acc);
}

// The 16 rows' results for T activation rows: out[t * os + r] for the first `rows` rows. An
// output's arithmetic (its block sums exact in int32, then per block: to float, times the
// activation scale, fused multiply-add of the weight scale into one float accumulator, blocks in
// order) depends only on its weight row and its activation row, never on T, the batch or its
// lane, so results are the same alone or batched.
template <int T>
TANDEM_VNNI void Q8Tile(const TileBlock* tile, int64_t blocks, const uint8_t* x, int64_t xs,
                        int64_t padded, float* out, int64_t os, __mmask16 rows) {
  __m512 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < blocks; ++b) {
    const TileBlock& w = tile[b];
    __m512i sums[T];
    for (int t = 0; t < T; ++t) {
      const int32_t* corrections =
          reinterpret_cast<const int32_t*>(x + t * xs + padded) + padded / 32;
      sums[t] = _mm512_set1_epi32(corrections[b]);
    }
    for (int g = 0; g < 8; ++g) {
      for (int t = 0; t < T; ++t) {
        int32_t four;
        std::memcpy(&four, x + t * xs + b * 32 + 4 * g, 4);
        sums[t] = _mm512_dpbusd_epi32(sums[t], w.values[g], _mm512_set1_epi32(four));
      }
    }
    for (int t = 0; t < T; ++t) {
      const float scale = reinterpret_cast<const float*>(x + t * xs + padded)[b];
      acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sums[t]), _mm512_set1_ps(scale)),
                               w.scales, acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) _mm512_mask_storeu_ps(out + t * os, rows, acc[t]);
}

// Activation rows per tile call: 8 dot sums and 8 accumulators stay in registers beside the
// block's 8 weight vectors.
constexpr int kTileInputs = 8;

// The last n < kTileInputs activation rows: Q8Tile<n>, picked at run time.
template <int T>
TANDEM_VNNI void Q8TileRest(int64_t n, const TileBlock* tile, int64_t blocks, const uint8_t* x,
                            int64_t xs, int64_t padded, float* out, int64_t os, __mmask16 rows) {
  if (n == T) return Q8Tile<T>(tile, blocks, x, xs, padded, out, os, rows);
  if constexpr (T > 1) Q8TileRest<T - 1>(n, tile, blocks, x, xs, padded, out, os, rows);
}

TANDEM_VNNI void Q8TileAllInputs(const TileBlock* tile, int64_t blocks, const uint8_t* x,
                                 int64_t xs, int64_t padded, int64_t n, float* out, int64_t os,
                                 __mmask16 rows) {
  int64_t t = 0;
  for (; t + kTileInputs <= n; t += kTileInputs)
    Q8Tile<kTileInputs>(tile, blocks, x + t * xs, xs, padded, out + t * os, os, rows);
  Q8TileRest<kTileInputs - 1>(n - t, tile, blocks, x + t * xs, xs, padded, out + t * os, os, rows);
}

// Every batch size takes the same path: tiles of 16 rows are transposed once into a
// thread-local buffer (L1/L2) and then serve every activation row. A tile is one contiguous
// stretch of the matrix, and while it is transposed the next one is prefetched block by block,
// so memory-bound single-token decode streams the weights in order.
TANDEM_VNNI void Q8RowDots(const uint8_t* rows, int64_t row_bytes, int64_t nrows, int64_t cols,
                           const uint8_t* x, int64_t n, float* out, int64_t os) {
  static const TransposeIndices indices = MakeTransposeIndices();
  const int64_t xs = Q8ActivationBytes(cols);
  const int64_t padded = Q8PaddedCols(cols);
  const int64_t blocks = cols / 32;
  // Raw bytes, aligned by hand: std::vector does not honour TileBlock's 64-byte alignment.
  thread_local std::vector<uint8_t> tile_bytes;
  tile_bytes.resize(blocks * sizeof(TileBlock) + 64);
  auto* tile = reinterpret_cast<TileBlock*>((reinterpret_cast<uintptr_t>(tile_bytes.data()) + 63) &
                                            ~uintptr_t{63});
  const int64_t tile_bytes_in_matrix = kTileRows * row_bytes;
  const int64_t prefetch_per_block = (tile_bytes_in_matrix + 64 * blocks - 1) / (64 * blocks) * 64;
  // The first tile is requested all at once: each block of it touches 16 rows, so without this
  // a call (and each thread's share of a product) would start with one block's worth of cache
  // misses at a time, which costs as much as streaming several tiles on a small matrix.
  PrefetchRange(rows, std::min<int64_t>(nrows, kTileRows) * row_bytes);
  for (int64_t r = 0; r < nrows; r += kTileRows) {
    const int count = static_cast<int>(std::min<int64_t>(kTileRows, nrows - r));
    const TileRows tile_rows = MakeTileRows(rows + r * row_bytes, row_bytes, count);
    const auto mask = static_cast<__mmask16>((1u << count) - 1);
    // The tile after this one (the rows after this call's are the next call's).
    const uint8_t* next = rows + (r + kTileRows) * row_bytes;
    const auto prefetch = [&](int64_t b) {
      for (int64_t i = 0; i < prefetch_per_block; i += 64)
        _mm_prefetch(reinterpret_cast<const char*>(next + b * prefetch_per_block + i), _MM_HINT_T0);
    };
    if (n == 1) {
      Q8TileOneInput(tile_rows, blocks, indices, x, padded, out + r, mask, prefetch);
      continue;
    }
    for (int64_t b = 0; b < blocks; ++b) {
      prefetch(b);
      PrepareTileBlock(tile_rows, b, indices, &tile[b]);
    }
    Q8TileAllInputs(tile, blocks, x, xs, padded, n, out + r, os, mask);
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
