// AVX-512 kernels (16 floats per vector), chosen at run time when the CPU has AVX-512F/BW/VL.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/internal/kernels_isa.h"
#include "engine/weight_types.h"

#define TANDEM_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

namespace tandem::engine::internal {
namespace {

using V = __m512;
constexpr int kW = 16;
TANDEM_TARGET inline V VZero() { return _mm512_setzero_ps(); }
TANDEM_TARGET inline V VLoad(const float* p) { return _mm512_loadu_ps(p); }
TANDEM_TARGET inline void VStore(float* p, V v) { _mm512_storeu_ps(p, v); }
TANDEM_TARGET inline V VFma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
TANDEM_TARGET inline V VMul(V a, V b) { return _mm512_mul_ps(a, b); }
TANDEM_TARGET inline V VSet1(float x) { return _mm512_set1_ps(x); }
TANDEM_TARGET inline float VReduce(V v) { return _mm512_reduce_add_ps(v); }
TANDEM_TARGET inline V VAdd(V a, V b) { return _mm512_add_ps(a, b); }
TANDEM_TARGET inline V VSub(V a, V b) { return _mm512_sub_ps(a, b); }
TANDEM_TARGET inline V VDiv(V a, V b) { return _mm512_div_ps(a, b); }
TANDEM_TARGET inline V VMax(V a, V b) { return _mm512_max_ps(a, b); }
TANDEM_TARGET inline V VMin(V a, V b) { return _mm512_min_ps(a, b); }
TANDEM_TARGET inline V VRound(V v) {
  return _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
TANDEM_TARGET inline V VScale2(V v, V n) { return _mm512_scalef_ps(v, n); }
TANDEM_TARGET inline V VLoadBf16(const uint8_t* p) {
  const __m512i wide =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16));
}
TANDEM_TARGET inline V VLoadF16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
TANDEM_TARGET inline V VLoadI8(const uint8_t* p) {
  return _mm512_cvtepi32_ps(
      _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

}  // namespace

#include "engine/internal/kernels_simd.inc"

IsaKernels Avx512Kernels() { return MakeKernels(); }

}  // namespace tandem::engine::internal
