// AVX2+FMA kernels (8 floats per vector), chosen at run time on CPUs without AVX-512.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/internal/kernels_isa.h"
#include "engine/weight_types.h"

#define TANDEM_TARGET __attribute__((target("avx2,fma,f16c")))

namespace tandem::engine::internal {
namespace {

using V = __m256;
constexpr int kW = 8;
TANDEM_TARGET inline V VZero() { return _mm256_setzero_ps(); }
TANDEM_TARGET inline V VLoad(const float* p) { return _mm256_loadu_ps(p); }
TANDEM_TARGET inline void VStore(float* p, V v) { _mm256_storeu_ps(p, v); }
TANDEM_TARGET inline V VFma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
TANDEM_TARGET inline V VMul(V a, V b) { return _mm256_mul_ps(a, b); }
TANDEM_TARGET inline V VSet1(float x) { return _mm256_set1_ps(x); }
TANDEM_TARGET inline float VReduce(V v) {
  __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
  sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
  return _mm_cvtss_f32(sum);
}
TANDEM_TARGET inline V VAdd(V a, V b) { return _mm256_add_ps(a, b); }
TANDEM_TARGET inline V VSub(V a, V b) { return _mm256_sub_ps(a, b); }
TANDEM_TARGET inline V VDiv(V a, V b) { return _mm256_div_ps(a, b); }
TANDEM_TARGET inline V VMax(V a, V b) { return _mm256_max_ps(a, b); }
TANDEM_TARGET inline V VMin(V a, V b) { return _mm256_min_ps(a, b); }
TANDEM_TARGET inline V VRound(V v) {
  return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
// v * 2^n for integral n in [-127, 127]: add n to the exponent field of 1.0.
TANDEM_TARGET inline V VScale2(V v, V n) {
  const __m256i bits =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(v, _mm256_castsi256_ps(bits));
}
TANDEM_TARGET inline V VLoadBf16(const uint8_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
TANDEM_TARGET inline V VLoadF16(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
TANDEM_TARGET inline V VLoadI8(const uint8_t* p) {
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}

}  // namespace

#include "engine/internal/kernels_simd.inc"

IsaKernels Avx2Kernels() { return MakeKernels(); }

}  // namespace tandem::engine::internal
