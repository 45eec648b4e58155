// The engine's CPU kernels: weight-matrix products for every supported weight type, with the
// instruction-set path chosen at run time (cpu_features.h), and the small dense helpers of the
// forward pass.
//
// MatMul computes out[i][r] = sum_c x[i][c] * W[r][c] for n input rows x (activations, F32):
//   - Q8_0 weights on CPUs with AVX512-VNNI, packed at load into the int8 kernel's tiles of 16
//     rows (PackWeights below; WeightType::kQ8_0x16): the activations are quantized to int8 per
//     block of 32 (as llama.cpp's Q8_0 x Q8_0 dot) and multiplied with vpdpbusd, 64 products per
//     instruction, for every batch size: each loaded weight vector serves up to 8 input rows,
//     and one kernel for every batch size means an output never depends on what else is in the
//     batch (single-sequence decode and a 32-sequence step compute a row identically).
//   - BF16 weights (and Q8_0 without VNNI) on CPUs with AVX512-BF16: the activations are
//     rounded to BF16 and multiplied with vdpbf16ps (Q8_0 rows widened to BF16 tile by tile in
//     L1), for every batch size, each output in the same order whatever else is in the batch.
//   - otherwise, few rows (decode batches): own kernels that stream each weight row once and
//     dot it with every input row (BF16/F16 widened in registers, Q8_0 scaled per block);
//   - otherwise, many rows (prefill): tiles of W are dequantized to F32 and multiplied with
//     OpenBLAS sgemm (one tile per pool thread, OpenBLAS single-threaded inside).
// F16, Q4_K and Q6_K take the F32 paths through dequantization.
//
//   ThreadPool pool;
//   MatMul(pool, w, x.data(), /*n=*/tokens, out.data());
//
// Thread-safety: stateless; MatMul uses `pool` and must not be called concurrently on one pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "absl/status/statusor.h"
#include "engine/thread_pool.h"
#include "engine/weight_types.h"

namespace tandem::engine {

// Input rows at which MatMul switches from row kernels to the tiled sgemm path.
inline constexpr int64_t kGemmMinRows = 12;

void MatMul(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n, float* out);
// out[i] = MatMul(w[i], x) for matrices sharing the input (Q, K and V; gate and up): where they
// have one type and width on the narrow-precision path, x is converted once and all their rows
// go to the pool as one range (one hand-off instead of one per matrix); else one MatMul each.
// Each output is computed exactly as MatMul computes it.
void MatMulShared(ThreadPool& pool, std::span<const WeightMatrix* const> w, const float* x,
                  int64_t n, std::span<float* const> out);

// The same, forcing one path (benchmarks and tests compare them).
void MatMulRowKernels(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n,
                      float* out);
void MatMulGemm(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n, float* out);
// The narrow-precision path (falls back to MatMulRowKernels where the CPU lacks it) and whether
// this CPU has one for `type`.
void MatMulLowPrecision(ThreadPool& pool, const WeightMatrix& w, const float* x, int64_t n,
                        float* out);
bool HasLowPrecisionPath(WeightType type);

// Weights in the layout this CPU's kernels read fastest: a Q8_0 matrix whose row count is a
// multiple of 16 becomes Q8_0x16 (weight_types.h) where the int8 kernel runs (AVX512-VNNI), the
// same bytes in the kernel's tile order, so no call rearranges them and single-token decode
// streams each matrix in order. Other matrices are used as they are. `storage` owns the packed
// bytes (null when `matrix` is the original view).
struct PackedWeights {
  struct Free {
    void operator()(uint8_t* p) const;
  };
  WeightMatrix matrix;
  std::unique_ptr<uint8_t, Free> storage;
};
bool WantsPacking(const WeightMatrix& w);
// Packs `w` on the pool's threads (or returns its view when !WantsPacking). `consumed(first,
// bytes)`, when set, is called on the calling thread for each stretch (a few MiB) of w's bytes
// once it is packed, so a caller can drop the source's pages as it goes instead of holding both
// copies of a large matrix. ResourceExhausted when the packed copy cannot be allocated.
absl::StatusOr<PackedWeights> PackWeights(
    ThreadPool& pool, const WeightMatrix& w,
    const std::function<void(const uint8_t* first, int64_t bytes)>& consumed = nullptr);

// Plain F32 GEMM through OpenBLAS on all pool threads: C[m x n] = A[m x k] * B[k x n], row-major.
// Used to measure the machine's matrix-multiply peak.
void SgemmPeakProbe(int threads, int64_t m, int64_t n, int64_t k, const float* a, const float* b,
                    float* c);

// Dot product of two F32 vectors on the best ISA path.
float DotF32(const float* a, const float* b, int64_t n);
// y += alpha * x on the best ISA path.
void AxpyF32(float alpha, const float* x, float* y, int64_t n);
// Attention over one KV block (docs/kv-layout.md) for `heads` query heads that share its KV head
// (a GQA group), each key and value read once for all of them. Keys stored transposed ([dim][slot],
// `stride` slots per dim): scores[h * scores_stride + j] = dot(query h, key j), query h at
// q + h * dims. Values stored [slot][dim]: out_h += sum_j weights[h * weights_stride + j] *
// value j, out_h at out + h * dims. A head's result depends only on its own query (weights), the
// block and the group size, never on the batch.
void BlockScoresF32(const float* keys_t, int64_t stride, int64_t slots, const float* q,
                    int64_t heads, int64_t dims, float* scores, int64_t scores_stride);
void BlockAccumulateF32(const float* values, int64_t slots, const float* weights,
                        int64_t weights_stride, int64_t heads, int64_t dims, float* out);
// The same over BF16 keys and values (a BF16 KV cache): each element is widened to F32 exactly
// and the arithmetic is the F32 kernels', in the same order, so the result equals the F32
// kernel's on the widened block.
void BlockScoresBf16(const uint16_t* keys_t, int64_t stride, int64_t slots, const float* q,
                     int64_t heads, int64_t dims, float* scores, int64_t scores_stride);
void BlockAccumulateBf16(const uint16_t* values, int64_t slots, const float* weights,
                         int64_t weights_stride, int64_t heads, int64_t dims, float* out);
// x = softmax(scale * x) in place, for scale > 0 (attention weights from raw scores).
void SoftmaxF32(float* x, int64_t n, float scale);
// gate[i] = silu(gate[i]) * up[i], the SwiGLU activation.
void SiluMulF32(float* gate, const float* up, int64_t n);
// The largest of x[0..n) (n >= 1), and whether every element is finite (when not, the returned
// value is meaningless).
float MaxF32(const float* x, int64_t n, bool* finite);
// Requests `bytes` from `p` into the cache (a hint; one prefetch per 64-byte line).
inline void PrefetchBytes(const void* p, int64_t bytes) {
  for (int64_t i = 0; i < bytes; i += 64) __builtin_prefetch(static_cast<const char*>(p) + i);
}

}  // namespace tandem::engine
