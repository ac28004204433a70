// SIMD primitives of the kernels compiled once per ISA level. The same source becomes
// AVX-512, AVX2 or portable code by the flags of the translation unit that includes it
// (kernels/CMakeLists.txt): `Vec` is a zmm register, a ymm register, or a GCC vector of
// four floats that the x86-64 baseline (SSE2) computes.
//
// Everything here is `static`: translation units built for different levels must not
// share an out-of-line copy of any of these functions (see internal/isa_kernels.h).
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "common/bf16.h"

namespace tessera::kernels::simd {

#if defined(__AVX512F__)

using Vec = __m512;
constexpr int kLanes = 16;

static inline Vec Zero() { return _mm512_setzero_ps(); }
static inline Vec Set1(float v) { return _mm512_set1_ps(v); }
static inline Vec Add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
static inline Vec Mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
static inline Vec Fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }  // a·b + c
static inline Vec LoadAligned(const float* p) { return _mm512_load_ps(p); }
static inline __mmask16 FirstN(int n) { return static_cast<__mmask16>((1u << n) - 1); }
static inline Vec LoadN(const float* p, int n) {
  return n == kLanes ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(FirstN(n), p);
}
static inline void StoreN(float* p, Vec v, int n) {
  if (n == kLanes) {
    _mm512_storeu_ps(p, v);
  } else {
    _mm512_mask_storeu_ps(p, FirstN(n), v);
  }
}
static inline float ReduceAdd(Vec v) { return _mm512_reduce_add_ps(v); }
// kLanes pairs of bf16 (each 32-bit word: the even k in its low half, the odd k in its
// high half), aligned: the lanes of the even and of the odd k, widened exactly.
static inline void WidenBf16Pairs(const uint16_t* p, Vec* even, Vec* odd) {
  const __m512i v = _mm512_load_si512(p);
  *even = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  *odd = _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
}
// kLanes IEEE halves, aligned, widened exactly.
static inline Vec WidenF16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(p)));
}

#elif defined(__AVX2__)

using Vec = __m256;
constexpr int kLanes = 8;

static inline Vec Zero() { return _mm256_setzero_ps(); }
static inline Vec Set1(float v) { return _mm256_set1_ps(v); }
static inline Vec Add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
static inline Vec Mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
static inline Vec Fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline Vec LoadAligned(const float* p) { return _mm256_load_ps(p); }
static inline __m256i FirstN(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline Vec LoadN(const float* p, int n) {
  return n == kLanes ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, FirstN(n));
}
static inline void StoreN(float* p, Vec v, int n) {
  if (n == kLanes) {
    _mm256_storeu_ps(p, v);
  } else {
    _mm256_maskstore_ps(p, FirstN(n), v);
  }
}
static inline float ReduceAdd(Vec v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
static inline void WidenBf16Pairs(const uint16_t* p, Vec* even, Vec* odd) {
  const __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(p));
  *even = _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  *odd = _mm256_castsi256_ps(_mm256_and_si256(v, _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}
static inline Vec WidenF16(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(p)));
}

#else  // the portable floor: GCC vector extensions, SSE2 code on x86-64

typedef float Vec __attribute__((vector_size(16)));
typedef uint32_t VecU32 __attribute__((vector_size(16)));
constexpr int kLanes = 4;

static inline Vec Zero() { return Vec{0.0f, 0.0f, 0.0f, 0.0f}; }
static inline Vec Set1(float v) { return Vec{v, v, v, v}; }
static inline Vec Add(Vec a, Vec b) { return a + b; }
static inline Vec Mul(Vec a, Vec b) { return a * b; }
static inline Vec Fma(Vec a, Vec b, Vec c) { return a * b + c; }
static inline Vec LoadAligned(const float* p) {
  Vec v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
static inline Vec LoadN(const float* p, int n) {
  Vec v = Zero();
  std::memcpy(&v, p, sizeof(float) * n);
  return v;
}
static inline void StoreN(float* p, Vec v, int n) { std::memcpy(p, &v, sizeof(float) * n); }
static inline float ReduceAdd(Vec v) { return (v[0] + v[2]) + (v[1] + v[3]); }
static inline void WidenBf16Pairs(const uint16_t* p, Vec* even, Vec* odd) {
  VecU32 v;
  std::memcpy(&v, p, sizeof(v));
  *even = reinterpret_cast<Vec>(v << 16);
  *odd = reinterpret_cast<Vec>(v & 0xffff0000u);
}
static inline Vec WidenF16(const uint16_t* p) {
  return Vec{F16ToFloat(p[0]), F16ToFloat(p[1]), F16ToFloat(p[2]), F16ToFloat(p[3])};
}

#endif

// Σ a[i]·b[i]
static inline float Dot(const float* a, const float* b, int n) {
  Vec acc = Zero();
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) acc = Fma(LoadN(a + i, kLanes), LoadN(b + i, kLanes), acc);
  if (i < n) acc = Fma(LoadN(a + i, n - i), LoadN(b + i, n - i), acc);
  return ReduceAdd(acc);
}

// y = y·scale + a·x
static inline void ScaleAxpy(float scale, float a, const float* x, float* y, int n) {
  const Vec vs = Set1(scale), va = Set1(a);
  int i = 0;
  for (; i + kLanes <= n; i += kLanes) StoreN(y + i, Fma(va, LoadN(x + i, kLanes), Mul(vs, LoadN(y + i, kLanes))), kLanes);
  if (i < n) StoreN(y + i, Fma(va, LoadN(x + i, n - i), Mul(vs, LoadN(y + i, n - i))), n - i);
}

}  // namespace tessera::kernels::simd
