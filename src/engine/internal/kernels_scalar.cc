// Portable kernels: the reference path and the fallback on CPUs without AVX2.
#include <cmath>
#include <cstring>

#include "engine/internal/kernels_isa.h"
#include "engine/weight_types.h"

namespace tandem::engine::internal {
namespace {

template <typename Load>
void RowDots(const uint8_t* row, int64_t cols, const float* x, int64_t x_stride, int64_t n,
             float* out, int64_t out_stride, Load load) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * x_stride;
    float sum = 0;
    for (int64_t c = 0; c < cols; ++c) sum += load(row, c) * xt[c];
    out[t * out_stride] = sum;
  }
}

void RowDotsF32(const uint8_t* row, int64_t cols, const float* x, int64_t xs, int64_t n, float* out,
                int64_t os) {
  RowDots(row, cols, x, xs, n, out, os, [](const uint8_t* r, int64_t c) {
    float v;
    std::memcpy(&v, r + 4 * c, 4);
    return v;
  });
}
void RowDotsBf16(const uint8_t* row, int64_t cols, const float* x, int64_t xs, int64_t n,
                 float* out, int64_t os) {
  RowDots(row, cols, x, xs, n, out, os, [](const uint8_t* r, int64_t c) {
    uint16_t v;
    std::memcpy(&v, r + 2 * c, 2);
    return Bf16ToF32(v);
  });
}
void RowDotsF16(const uint8_t* row, int64_t cols, const float* x, int64_t xs, int64_t n, float* out,
                int64_t os) {
  RowDots(row, cols, x, xs, n, out, os, [](const uint8_t* r, int64_t c) {
    uint16_t v;
    std::memcpy(&v, r + 2 * c, 2);
    return F16ToF32(v);
  });
}
void RowDotsQ8(const uint8_t* row, int64_t cols, const float* x, int64_t xs, int64_t n, float* out,
               int64_t os) {
  for (int64_t t = 0; t < n; ++t) {
    const float* xt = x + t * xs;
    float sum = 0;
    for (int64_t b = 0; b < cols / 32; ++b) {
      BlockQ8_0 block;
      std::memcpy(&block, row + b * sizeof(BlockQ8_0), sizeof(block));
      float partial = 0;
      for (int i = 0; i < 32; ++i) partial += block.values[i] * xt[b * 32 + i];
      sum += F16ToF32(block.scale_f16) * partial;
    }
    out[t * os] = sum;
  }
}
float Dot(const float* a, const float* b, int64_t n) {
  float sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += a[i] * b[i];
  return sum;
}
void Axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}
void Bf16ToF32Row(const uint8_t* row, int64_t cols, float* out) {
  for (int64_t c = 0; c < cols; ++c) {
    uint16_t v;
    std::memcpy(&v, row + 2 * c, 2);
    out[c] = Bf16ToF32(v);
  }
}
void Q8ToF32Row(const uint8_t* row, int64_t cols, float* out) {
  for (int64_t b = 0; b < cols / 32; ++b) {
    BlockQ8_0 block;
    std::memcpy(&block, row + b * sizeof(BlockQ8_0), sizeof(block));
    const float scale = F16ToF32(block.scale_f16);
    for (int i = 0; i < 32; ++i) out[b * 32 + i] = scale * block.values[i];
  }
}

void SiluMul(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

float Max(const float* x, int64_t n, bool* finite) {
  float result = -INFINITY;
  bool all_finite = true;
  for (int64_t i = 0; i < n; ++i) {
    all_finite &= std::isfinite(x[i]);
    result = std::max(result, x[i]);
  }
  *finite = all_finite;
  return result;
}

// x = softmax(scale * x), the sum in double.
void Softmax(float* x, int64_t n, float scale) {
  float top = -INFINITY;
  for (int64_t i = 0; i < n; ++i) top = std::max(top, x[i]);
  const float scaled_top = scale * top;
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] * scale - scaled_top);
    sum += x[i];
  }
  const float inverse = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inverse;
}

template <typename T, float (*Widen)(T)>
void BlockScoresOf(const T* keys_t, int64_t stride, int64_t slots, const float* q, int64_t heads,
                   int64_t dims, float* scores, int64_t scores_stride) {
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t j = 0; j < slots; ++j) {
      float sum = 0;
      for (int64_t d = 0; d < dims; ++d) sum += q[h * dims + d] * Widen(keys_t[d * stride + j]);
      scores[h * scores_stride + j] = sum;
    }
  }
}
template <typename T, float (*Widen)(T)>
void BlockAccumulateOf(const T* values, int64_t slots, const float* weights, int64_t weights_stride,
                       int64_t heads, int64_t dims, float* out) {
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t j = 0; j < slots; ++j) {
      for (int64_t d = 0; d < dims; ++d)
        out[h * dims + d] += weights[h * weights_stride + j] * Widen(values[j * dims + d]);
    }
  }
}
float Same(float x) { return x; }
float WidenBf16(uint16_t x) { return Bf16ToF32(x); }

}  // namespace

IsaKernels ScalarKernels() {
  return {.f32 = RowDotsF32,
          .bf16 = RowDotsBf16,
          .f16 = RowDotsF16,
          .q8_0 = RowDotsQ8,
          .dot = Dot,
          .axpy = Axpy,
          .bf16_to_f32 = Bf16ToF32Row,
          .q8_0_to_f32 = Q8ToF32Row,
          .silu_mul = SiluMul,
          .max = Max,
          .softmax = Softmax,
          .block_scores = BlockScoresOf<float, Same>,
          .block_accumulate = BlockAccumulateOf<float, Same>,
          .block_scores_bf16 = BlockScoresOf<uint16_t, WidenBf16>,
          .block_accumulate_bf16 = BlockAccumulateOf<uint16_t, WidenBf16>};
}

}  // namespace tandem::engine::internal
