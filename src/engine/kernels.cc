#include "engine/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/cpu_features.h"
#include "engine/internal/kernels_isa.h"

namespace tandem::engine {
namespace {

const internal::IsaKernels& Kernels() {
  static const internal::IsaKernels kernels = [] {
    switch (ActiveIsaTier()) {
      case IsaTier::kAvx512:
        return internal::Avx512Kernels();
      case IsaTier::kAvx2:
        return internal::Avx2Kernels();
      default:
        return internal::ScalarKernels();
    }
  }();
  return kernels;
}

const internal::LowPrecisionKernels& LowPrecision() {
  static const internal::LowPrecisionKernels kernels = [] {
    if (ActiveIsaTier() != IsaTier::kAvx512) return internal::LowPrecisionKernels{};
    const CpuFeatures& f = GetCpuFeatures();
    return internal::Avx512LowPrecisionKernels(f.avx512bf16, f.avx512vnni);
  }();
  return kernels;
}

// OpenBLAS runs single-threaded inside our pool's tiles; set once, before the first call.
void EnsureBlasSingleThreaded() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

// Types without a row kernel of their own go through a per-row dequantization to F32.
void DequantizedRowDots(const WeightMatrix& w, int64_t row, const float* x, int64_t n, float* out,
                        int64_t out_stride) {
  thread_local std::vector<float> buffer;
  buffer.resize(w.cols);
  DequantizeWeightRow(w, row, buffer.data());
  Kernels().f32(reinterpret_cast<const uint8_t*>(buffer.data()), w.cols, x, w.cols, n, out,
                out_stride);
}

// Writes rows [begin, end) of `w` as F32 into `out` (row-major, w.cols per row).
void DequantizeRows(const WeightMatrix& w, int64_t begin, int64_t end, float* out) {
  const internal::IsaKernels& k = Kernels();
  for (int64_t r = begin; r < end; ++r) {
    float* dst = out + (r - begin) * w.cols;
    switch (w.type) {
      case WeightType::kBF16:
        k.bf16_to_f32(w.row(r), w.cols, dst);
        break;
      case WeightType::kQ8_0:
        k.q8_0_to_f32(w.row(r), w.cols, dst);
        break;
      default:
        DequantizeWeightRow(w, r, dst);
        break;
    }
  }
}

// Runs kernel(first, count, out, out_stride) over rows [begin, end) in slices of kStageRows.
// With many input rows the outputs of one slice go to a small thread-local buffer first and are
// then copied out row by row: written straight into `out` (n rows `out_stride` apart), every
// slice would touch n distant cache lines a few floats at a time, and for wide outputs (the LM
// head: 32 x 152k logits) those partial-line stores cost more than the arithmetic.
constexpr int64_t kStageRows = 64;
template <typename Kernel>
void StagedRows(int64_t begin, int64_t end, int64_t n, float* out, int64_t out_stride,
                const Kernel& kernel) {
  if (n < 4) {
    kernel(begin, end - begin, out + begin, out_stride);
    return;
  }
  thread_local std::vector<float> stage;
  stage.resize(n * kStageRows);
  for (int64_t first = begin; first < end; first += kStageRows) {
    const int64_t count = std::min(kStageRows, end - first);
    kernel(first, count, stage.data(), count);
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(out + t * out_stride + first, stage.data() + t * count, count * sizeof(float));
    }
  }
}

}  // namespace

float DotF32(const float* a, const float* b, int64_t n) { return Kernels().dot(a, b, n); }
void AxpyF32(float alpha, const float* x, float* y, int64_t n) { Kernels().axpy(alpha, x, y, n); }
void SoftmaxF32(float* x, int64_t n, float scale) { Kernels().softmax(x, n, scale); }
void BlockScoresF32(const float* keys_t, int64_t stride, int64_t slots, const float* q,
                    int64_t heads, int64_t dims, float* scores, int64_t scores_stride) {
  Kernels().block_scores(keys_t, stride, slots, q, heads, dims, scores, scores_stride);
}
void BlockAccumulateF32(const float* values, int64_t slots, const float* weights,
                        int64_t weights_stride, int64_t heads, int64_t dims, float* out) {
  Kernels().block_accumulate(values, slots, weights, weights_stride, heads, dims, out);
}
void BlockScoresBf16(const uint16_t* keys_t, int64_t stride, int64_t slots, const float* q,
                     int64_t heads, int64_t dims, float* scores, int64_t scores_stride) {
  Kernels().block_scores_bf16(keys_t, stride, slots, q, heads, dims, scores, scores_stride);
}
void BlockAccumulateBf16(const uint16_t* values, int64_t slots, const float* weights,
                         int64_t weights_stride, int64_t heads, int64_t dims, float* out) {
  Kernels().block_accumulate_bf16(values, slots, weights, weights_stride, heads, dims, out);
}
void SiluMulF32(float* gate, const float* up, int64_t n) { Kernels().silu_mul(gate, up, n); }
float MaxF32(const float* x, int64_t n, bool* finite) { return Kernels().max(x, n, finite); }

void MatMulRowKernels(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n,
                      float* out) {
  const internal::IsaKernels& k = Kernels();
  internal::RowDotsFn fn = nullptr;
  switch (w.type) {
    case WeightType::kF32:
      fn = k.f32;
      break;
    case WeightType::kBF16:
      fn = k.bf16;
      break;
    case WeightType::kF16:
      fn = k.f16;
      break;
    case WeightType::kQ8_0:
      fn = k.q8_0;
      break;
    default:
      break;
  }
  // Rows per chunk: enough work per chunk that the hand-off cost stays small.
  const int64_t grain = std::max<int64_t>(8, 16384 / std::max<int64_t>(1, w.cols));
  pool.ParallelFor(w.rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      if (fn != nullptr) {
        fn(w.row(r), w.cols, x, w.cols, n, out + r, w.rows);
      } else {
        DequantizedRowDots(w, r, x, n, out + r, w.rows);
      }
    }
  });
}

void MatMulGemm(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n, float* out) {
  EnsureBlasSingleThreaded();
  // Tiles of weight rows small enough to stay in L2 once dequantized.
  const int64_t tile = std::clamp<int64_t>((256 * 1024) / (w.cols * 4), 16, 256) / 16 * 16;
  const int64_t tiles = (w.rows + tile - 1) / tile;
  pool.ParallelFor(tiles, 1, [&](int64_t begin, int64_t end) {
    thread_local std::vector<float> buffer;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t r0 = t * tile;
      const int64_t r1 = std::min(w.rows, r0 + tile);
      const float* b;
      if (w.type == WeightType::kF32) {
        b = reinterpret_cast<const float*>(w.row(r0));
      } else {
        buffer.resize(tile * w.cols);
        DequantizeRows(w, r0, r1, buffer.data());
        b = buffer.data();
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(n),
                  static_cast<int>(r1 - r0), static_cast<int>(w.cols), 1.0f, x,
                  static_cast<int>(w.cols), b, static_cast<int>(w.cols), 0.0f, out + r0,
                  static_cast<int>(w.rows));
    }
  });
}

namespace {

// The low-precision path in two parts: the activations converted once per product (BF16, or
// int8 Q8 with VNNI), then any range of weight rows against them on any thread.
enum class LowPrecisionKind { kNone, kBf16, kQ8Int8, kQ8ViaBf16 };

LowPrecisionKind LowPrecisionKindFor(WeightType type) {
  const internal::LowPrecisionKernels& k = LowPrecision();
  if (type == WeightType::kBF16 && k.bf16_dots != nullptr) return LowPrecisionKind::kBf16;
  if (type == WeightType::kQ8_0x16 && k.q8_dots != nullptr) return LowPrecisionKind::kQ8Int8;
  if (type == WeightType::kQ8_0 && k.q8_to_bf16 != nullptr) return LowPrecisionKind::kQ8ViaBf16;
  return LowPrecisionKind::kNone;
}

// Converts n rows of `cols` floats for `kind`, into a buffer of the calling thread (workers see
// their own thread_local objects, so it is handed to them by pointer). Many rows are converted
// on the pool, a group of rows per chunk: one thread alone kept the others waiting through it
// (a 32 x 1536 quantization is ~14 % of its product on 2 threads).
const void* ConvertActivations(ThreadPool& pool, LowPrecisionKind kind, const float* x, int64_t n,
                               int64_t cols) {
  const internal::LowPrecisionKernels& k = LowPrecision();
  // Rows per chunk: whole Q8 groups (the layout's unit), and enough work to hand off.
  const int64_t group = kind == LowPrecisionKind::kQ8Int8 ? internal::kQ8Group : 1;
  const int64_t grain =
      std::max<int64_t>(1, (16384 / std::max<int64_t>(1, cols) + group - 1) / group);
  const int64_t groups = (n + group - 1) / group;
  if (kind == LowPrecisionKind::kQ8Int8) {
    // Q8_0 x Q8 activations on VNNI for every batch size: one kernel, so an output never
    // depends on the batch, and int8 products need no widening of the weights.
    const int64_t xs = internal::Q8ActivationBytes(cols);
    thread_local std::vector<uint8_t> quantized;
    quantized.resize(n * xs);
    uint8_t* out = quantized.data();
    pool.ParallelFor(groups, grain, [&](int64_t begin, int64_t end) {
      const int64_t first = begin * group, last = std::min(n, end * group);
      k.quantize_q8(x + first * cols, last - first, cols, out + first * xs);
    });
    return out;
  }
  thread_local std::vector<uint16_t> xb;
  xb.resize(n * cols);
  uint16_t* out = xb.data();
  pool.ParallelFor(groups, grain, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) k.f32_to_bf16(x + i * cols, cols, out + i * cols);
  });
  return out;
}

// Rows [begin, end) of `w` against the converted activations; out[t * w.rows + r].
void LowPrecisionRows(LowPrecisionKind kind, const WeightMatrix& w, const void* activations,
                      int64_t n, int64_t begin, int64_t end, float* out) {
  const internal::LowPrecisionKernels& k = LowPrecision();
  switch (kind) {
    case LowPrecisionKind::kBf16: {
      const auto* converted = static_cast<const uint16_t*>(activations);
      StagedRows(begin, end, n, out, w.rows, [&](int64_t r, int64_t rows, float* o, int64_t os) {
        k.bf16_dots(w.row(r), w.row_bytes(), rows, w.cols, converted, w.cols, n, o, os);
      });
      return;
    }
    case LowPrecisionKind::kQ8Int8:
      // Written straight out: the int8 kernel stores 16 neighbouring outputs of an input row at
      // once, whole cache lines, so staging would only add a copy.
      k.q8_dots(w.row(begin), w.row_bytes(), end - begin, w.cols,
                static_cast<const uint8_t*>(activations), n, out + begin, w.rows);
      return;
    case LowPrecisionKind::kQ8ViaBf16: {
      // Without VNNI: each 4-row tile is widened to BF16 in L1 once and then used by every
      // input row on the BF16 kernel.
      const auto* converted = static_cast<const uint16_t*>(activations);
      thread_local std::vector<uint16_t> tile;
      tile.resize(4 * w.cols);
      StagedRows(
          begin, end, n, out, w.rows, [&](int64_t first, int64_t count, float* o, int64_t os) {
            for (int64_t r = first; r < first + count; r += 4) {
              const int64_t rows = std::min<int64_t>(4, first + count - r);
              // The next tile's bytes arrive while this one is multiplied.
              if (r + 4 < end) {
                PrefetchBytes(w.row(r + 4), std::min<int64_t>(4, end - r - 4) * w.row_bytes());
              }
              for (int64_t i = 0; i < rows; ++i)
                k.q8_to_bf16(w.row(r + i), w.cols, tile.data() + i * w.cols);
              k.bf16_dots(reinterpret_cast<const uint8_t*>(tile.data()), w.cols * 2, rows, w.cols,
                          converted, w.cols, n, o + (r - first), os);
            }
          });
      return;
    }
    case LowPrecisionKind::kNone:
      return;
  }
}

// Row chunks in multiples of 16 (the int8 kernel's tiles, which a chunk boundary would leave
// partly empty; the BF16 kernel's 4-row tiles divide it), with enough work per chunk that the
// hand-off cost stays small.
//
// Int8 products of several inputs are bound by arithmetic, and the kernel then requests each
// tile's successor while it works (kernels_lowp.cc); a chunk's first tile still comes from
// memory on demand. Those chunks are larger: about four per thread.
int64_t LowPrecisionGrain(LowPrecisionKind kind, int64_t rows, int64_t cols, int64_t n,
                          int threads) {
  int64_t grain = std::max<int64_t>(16, 16384 / std::max<int64_t>(1, cols));
  if (kind == LowPrecisionKind::kQ8Int8 && n >= 4) {
    grain = std::max<int64_t>(grain, rows / (4 * std::max(1, threads)));
  }
  return (grain + 15) / 16 * 16;
}

}  // namespace

void MatMulLowPrecision(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n,
                        float* out) {
  const LowPrecisionKind kind = LowPrecisionKindFor(w.type);
  if (kind == LowPrecisionKind::kNone) {
    MatMulRowKernels(pool, w, x, n, out);
    return;
  }
  const void* activations = ConvertActivations(pool, kind, x, n, w.cols);
  const int64_t grain = LowPrecisionGrain(kind, w.rows, w.cols, n, pool.num_threads());
  pool.ParallelFor(w.rows, grain, [&](int64_t begin, int64_t end) {
    LowPrecisionRows(kind, w, activations, n, begin, end, out);
  });
}

void MatMulShared(ThreadPool& pool, std::span<const WeightMatrix* const> w, const float* x,
                  int64_t n, std::span<float* const> out) {
  const LowPrecisionKind kind =
      w.empty() ? LowPrecisionKind::kNone : LowPrecisionKindFor(w[0]->type);
  bool same = kind != LowPrecisionKind::kNone;
  int64_t total = 0;
  for (const WeightMatrix* m : w) {
    same = same && m->type == w[0]->type && m->cols == w[0]->cols;
    total += m->rows;
  }
  if (!same) {
    for (size_t i = 0; i < w.size(); ++i) MatMul(pool, *w[i], x, n, out[i]);
    return;
  }
  // The matrices' rows as one range: one hand-off to the pool and one conversion of x for all.
  const void* activations = ConvertActivations(pool, kind, x, n, w[0]->cols);
  const int64_t grain = LowPrecisionGrain(kind, total, w[0]->cols, n, pool.num_threads());
  pool.ParallelFor(total, grain, [&](int64_t begin, int64_t end) {
    int64_t first = 0;
    for (size_t i = 0; i < w.size() && first < end; first += w[i]->rows, ++i) {
      const int64_t from = std::max(begin, first), to = std::min(end, first + w[i]->rows);
      if (from < to)
        LowPrecisionRows(kind, *w[i], activations, n, from - first, to - first, out[i]);
    }
  });
}

bool HasLowPrecisionPath(WeightType type) {
  return LowPrecisionKindFor(type) != LowPrecisionKind::kNone;
}

void MatMul(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n, float* out) {
  if (HasLowPrecisionPath(w.type)) {
    // One kernel for every batch size: faster than sgemm even for prefill, and an output's
    // arithmetic never depends on what else is in the batch.
    MatMulLowPrecision(pool, w, x, n, out);
  } else if (n >= kGemmMinRows) {
    MatMulGemm(pool, w, x, n, out);
  } else {
    MatMulRowKernels(pool, w, x, n, out);
  }
}

void PackedWeights::Free::operator()(uint8_t* p) const { std::free(p); }

bool WantsPacking(const WeightMatrix& w) {
  return w.type == WeightType::kQ8_0 && w.rows % kQ8TileRows == 0 && w.rows > 0 &&
         LowPrecision().q8_dots != nullptr;
}

absl::StatusOr<PackedWeights> PackWeights(
    ThreadPool& pool, const WeightMatrix& w,
    const std::function<void(const uint8_t*, int64_t)>& consumed) {
  PackedWeights packed;
  packed.matrix = w;
  if (!WantsPacking(w)) return packed;
  const int64_t bytes = w.bytes();
  // aligned_alloc wants a multiple of the alignment.
  auto* out = static_cast<uint8_t*>(std::aligned_alloc(64, (bytes + 63) / 64 * 64));
  if (out == nullptr) {
    return absl::ResourceExhaustedError(absl::StrCat("cannot allocate ", bytes, " bytes to pack a ",
                                                     w.rows, " x ", w.cols, " Q8_0 matrix"));
  }
  packed.storage.reset(out);
  const int64_t tile_bytes = kQ8TileRows * w.row_bytes();
  const int64_t tiles = w.rows / kQ8TileRows;
  const int64_t stretch = std::max<int64_t>(1, (8 << 20) / tile_bytes);  // tiles per stretch
  for (int64_t first = 0; first < tiles; first += stretch) {
    const int64_t count = std::min(stretch, tiles - first);
    pool.ParallelFor(count, 1, [&](int64_t begin, int64_t end) {
      PackQ8Tiles(w, first + begin, end - begin, out);
    });
    if (consumed) consumed(w.row(first * kQ8TileRows), count * tile_bytes);
  }
  packed.matrix.data = out;
  packed.matrix.type = WeightType::kQ8_0x16;
  return packed;
}

void SgemmPeakProbe(int threads, int64_t m, int64_t n, int64_t k, const float* a, const float* b,
                    float* c) {
  openblas_set_num_threads(threads);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(k), b, static_cast<int>(n), 0.0f, c,
              static_cast<int>(n));
  openblas_set_num_threads(1);
}

}  // namespace tandem::engine
