// Small vector helpers shared by the CPU kernels: AVX-512 where the build has it,
// plain loops otherwise.
#pragma once

#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace tessera::kernels::internal {

inline float Dot(const float* a, const float* b, int n) {
#if defined(__AVX512F__)
  __m512 acc = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16)
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc);
  if (i < n) {
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i), acc);
  }
  return _mm512_reduce_add_ps(acc);
#else
  float s = 0.0f;
  for (int i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
#endif
}

// y = y * scale + a * x
inline void ScaleAxpy(float scale, float a, const float* x, float* y, int n) {
#if defined(__AVX512F__)
  const __m512 vs = _mm512_set1_ps(scale), va = _mm512_set1_ps(a);
  int i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i),
                                            _mm512_mul_ps(vs, _mm512_loadu_ps(y + i))));
  if (i < n) {
    __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(y + i, m,
                          _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(m, x + i),
                                          _mm512_mul_ps(vs, _mm512_maskz_loadu_ps(m, y + i))));
  }
#else
  for (int i = 0; i < n; ++i) y[i] = y[i] * scale + a * x[i];
#endif
}

}  // namespace tessera::kernels::internal
