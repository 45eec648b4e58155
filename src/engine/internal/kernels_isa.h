// Per-ISA kernel entry points behind kernels.h (internal).
#pragma once

#include <cstdint>

namespace tandem::engine::internal {

// out[t * out_stride] = dot(row, x + t * x_stride) for t in [0, n), row of `cols` elements.
using RowDotsFn = void (*)(const uint8_t* row, int64_t cols, const float* x, int64_t x_stride,
                           int64_t n, float* out, int64_t out_stride);
using DotFn = float (*)(const float* a, const float* b, int64_t n);
using AxpyFn = void (*)(float alpha, const float* x, float* y, int64_t n);
using ToF32Fn = void (*)(const uint8_t* row, int64_t cols, float* out);
using SiluMulFn = void (*)(float* gate, const float* up, int64_t n);
// The largest of x[0..n) (n >= 1); *finite = whether every element is finite (when not, the
// returned value is meaningless).
using MaxFn = float (*)(const float* x, int64_t n, bool* finite);

struct IsaKernels {
  RowDotsFn f32 = nullptr;
  RowDotsFn bf16 = nullptr;
  RowDotsFn f16 = nullptr;
  RowDotsFn q8_0 = nullptr;
  DotFn dot = nullptr;
  AxpyFn axpy = nullptr;
  ToF32Fn bf16_to_f32 = nullptr;
  ToF32Fn q8_0_to_f32 = nullptr;
  SiluMulFn silu_mul = nullptr;  // gate[i] = silu(gate[i]) * up[i]
  MaxFn max = nullptr;
  // x = softmax(scale * x), scale > 0.
  void (*softmax)(float* x, int64_t n, float scale) = nullptr;
  // Attention over one KV block for `heads` query heads (docs/kv-layout.md; kernels.h).
  void (*block_scores)(const float* keys_t, int64_t stride, int64_t slots, const float* q,
                       int64_t heads, int64_t dims, float* scores, int64_t scores_stride) = nullptr;
  void (*block_accumulate)(const float* values, int64_t slots, const float* weights,
                           int64_t weights_stride, int64_t heads, int64_t dims,
                           float* out) = nullptr;
  void (*block_scores_bf16)(const uint16_t* keys_t, int64_t stride, int64_t slots, const float* q,
                            int64_t heads, int64_t dims, float* scores,
                            int64_t scores_stride) = nullptr;
  void (*block_accumulate_bf16)(const uint16_t* values, int64_t slots, const float* weights,
                                int64_t weights_stride, int64_t heads, int64_t dims,
                                float* out) = nullptr;
};

// Kernels with activations rounded to the weights' precision (null where the CPU lacks them).
struct LowPrecisionKernels {
  void (*f32_to_bf16)(const float* x, int64_t n, uint16_t* out) = nullptr;
  // `nrows` consecutive weight rows (row_bytes apart) against n inputs; out[t * out_stride + r].
  void (*bf16_dots)(const uint8_t* rows, int64_t row_bytes, int64_t nrows, int64_t cols,
                    const uint16_t* x, int64_t x_stride, int64_t n, float* out,
                    int64_t out_stride) = nullptr;
  // One Q8_0 row of `cols` values as BF16.
  void (*q8_to_bf16)(const uint8_t* row, int64_t cols, uint16_t* out) = nullptr;
  // n rows of `cols` floats -> n * Q8ActivationBytes(cols) bytes of Q8 activations, in the
  // grouped layout below.
  void (*quantize_q8)(const float* x, int64_t n, int64_t cols, uint8_t* out) = nullptr;
  // `nrows` (a multiple of 16) rows of a Q8_0x16 matrix (weight_types.h), from the tile at
  // `rows`, against n rows of Q8 activations (from quantize_q8 of those n rows).
  void (*q8_dots)(const uint8_t* rows, int64_t row_bytes, int64_t nrows, int64_t cols,
                  const uint8_t* x, int64_t n, float* out, int64_t out_stride) = nullptr;
};

// Q8 activations for the int8 kernel. Per row and block of 32 values: the int8 values, the
// block's scale (float) and -128 x the sum of its values (int32), 40 bytes; cols rounded up to
// 64, the padding blocks zero. Rows go in groups of kQ8Group (the last group holds the rest,
// T rows): a group starts kQ8Group * Q8ActivationBytes(cols) bytes after the previous one and
// holds, block after block, the T rows' 32 values, then their T scales, then their T sums (T * 40
// bytes a block), so the kernel reaches every row of a block at a fixed offset from one pointer.
inline constexpr int64_t kQ8Group = 8;
inline int64_t Q8PaddedCols(int64_t cols) { return (cols + 63) / 64 * 64; }
inline int64_t Q8ActivationBytes(int64_t cols) { return Q8PaddedCols(cols) / 32 * 40; }

IsaKernels ScalarKernels();
LowPrecisionKernels Avx512LowPrecisionKernels(bool bf16, bool vnni);
IsaKernels Avx2Kernels();
IsaKernels Avx512Kernels();

}  // namespace tandem::engine::internal
