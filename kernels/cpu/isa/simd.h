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
// The KV cache's element types (common/kv_dtype.h), kLanes of them, unaligned, widened
// exactly. E4M3 comes out as its value · 2^-8: its bits shifted into an IEEE half.
static inline Vec LoadBf16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(w, 16));
}
static inline Vec LoadF16(const uint16_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
static inline Vec LoadI8(const int8_t* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
static inline Vec LoadE4m3Scaled(const uint8_t* p) {
  const __m256i b = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i magnitude = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x7f)), 7);
  const __m256i sign = _mm256_slli_epi16(_mm256_and_si256(b, _mm256_set1_epi16(0x80)), 8);
  return _mm512_cvtph_ps(_mm256_or_si256(magnitude, sign));
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
static inline Vec LoadBf16(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
static inline Vec LoadF16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
static inline Vec LoadI8(const int8_t* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
static inline Vec LoadE4m3Scaled(const uint8_t* p) {
  const __m128i b = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m128i magnitude = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x7f)), 7);
  const __m128i sign = _mm_slli_epi16(_mm_and_si128(b, _mm_set1_epi16(0x80)), 8);
  return _mm256_cvtph_ps(_mm_or_si128(magnitude, sign));
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
static inline Vec LoadBf16(const uint16_t* p) {
  return Vec{Bf16ToFloat(p[0]), Bf16ToFloat(p[1]), Bf16ToFloat(p[2]), Bf16ToFloat(p[3])};
}
static inline Vec LoadF16(const uint16_t* p) { return WidenF16(p); }
static inline Vec LoadI8(const int8_t* p) {
  return Vec{static_cast<float>(p[0]), static_cast<float>(p[1]), static_cast<float>(p[2]), static_cast<float>(p[3])};
}
static inline float E4m3Scaled(uint8_t b) {
  return F16ToFloat(static_cast<uint16_t>(((b & 0x7f) << 7) | ((b & 0x80) << 8)));
}
static inline Vec LoadE4m3Scaled(const uint8_t* p) {
  return Vec{E4m3Scaled(p[0]), E4m3Scaled(p[1]), E4m3Scaled(p[2]), E4m3Scaled(p[3])};
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

}  // namespace tessera::kernels::simd
