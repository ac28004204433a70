// The scaled KV cache encodings element by element (common/kv_dtype.h describes the
// record), in one place for the CPU and the CUDA kernels, so that both write the same
// bytes: under nvcc every function here is __host__ __device__.
#pragma once

#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__CUDACC__)
#define TESSERA_HOST_DEVICE __host__ __device__
#else
#define TESSERA_HOST_DEVICE
#endif

namespace tessera {

// Largest finite E4M3 magnitude (OCP FP8 "E4M3FN": no infinities, one NaN code).
inline constexpr float kE4m3Max = 448.0f;
inline constexpr float kInt8Max = 127.0f;

// E4M3 -> float, exactly.
TESSERA_HOST_DEVICE inline float E4m3ToFloat(uint8_t q) {
  const int e = (q >> 3) & 15, m = q & 7;
  if (e == 15 && m == 7) return NAN;
  const float mag = e == 0 ? ldexpf(static_cast<float>(m), -9) : ldexpf(1.0f + m / 8.0f, e - 7);
  return (q & 0x80) ? -mag : mag;
}

// float -> E4M3: round to nearest even, saturating at ±448 (infinities too); NaN stays NaN.
TESSERA_HOST_DEVICE inline uint8_t FloatToE4m3(float x) {
  uint32_t bits;
  memcpy(&bits, &x, sizeof(bits));
  const uint8_t sign = (bits >> 31) ? 0x80 : 0;
  bits &= 0x7fffffffu;  // |x|
  float a;
  memcpy(&a, &bits, sizeof(a));
  if (a != a) return sign | 0x7f;
  if (a >= kE4m3Max) return sign | 0x7e;
  if (a < 0x1p-6f) {  // the subnormal grid, steps of 2^-9; 8 steps is the smallest normal
    return sign | static_cast<uint8_t>(nearbyintf(a * 512.0f));
  }
  bits += 0x7ffffu + ((bits >> 20) & 1u);  // round the mantissa to 3 bits, to nearest even
  const int e = static_cast<int>(bits >> 23) - 127 + 7, m = (bits >> 20) & 7;
  if (e > 15 || (e == 15 && m == 7)) return sign | 0x7e;
  return sign | static_cast<uint8_t>((e << 3) | m);
}

// The fp8 record scale for a largest magnitude: the smallest power of two s with
// amax / s <= 448 (a power of two, so that raising it moves encoded values by whole
// binades and re-encodes them exactly); 0 for an all-zero token.
TESSERA_HOST_DEVICE inline float Fp8ScaleFor(float amax) {
  if (!(amax > 0.0f)) return 0.0f;
  int e;
  const float m = frexpf(amax / kE4m3Max, &e);  // amax / 448 = m · 2^e, m in [0.5, 1)
  return ldexpf(1.0f, m == 0.5f ? e - 1 : e);
}

// One int8 value at 1 / scale = `inv` (127 / the token's largest magnitude).
TESSERA_HOST_DEVICE inline int8_t Int8Encode(float x, float inv) {
  return static_cast<int8_t>(fminf(fmaxf(nearbyintf(x * inv), -kInt8Max), kInt8Max));
}

}  // namespace tessera
