// The paged-attention inner loop (one new token, one group of query heads), compiled
// once per ISA level (simd.h says how); kernels/cpu/attention.cc splits the work. The
// cache is read in its dtype (common/kv_dtype.h) and widened in registers; a token's
// dequantization scale multiplies its score and its weight, never the values.
#include <math.h>

#include <cstring>

#include "kernels/cpu/isa/kernel_entry_points.h"
#include "kernels/cpu/isa/simd.h"

namespace tessera::kernels::TESSERA_ISA_NS {
namespace {

// Only C functions and builtins here: even std::exp(float) is an inline function that
// every translation unit may emit, and the linker keeps one copy for all levels.
constexpr int kMaxGroup = 64;  // query heads per kv head we support on the stack

inline float Max(float a, float b) { return a < b ? b : a; }

// The rows of a head record of each dtype: the element type, kLanes of them widened,
// and the factor that turns a widened token into its value.
struct F32Rows {
  using T = float;
  static simd::Vec Load(const T* p) { return simd::LoadN(p, simd::kLanes); }
  static float Factor(const std::byte*, const PagedKvView&, int) { return 1.0f; }
};
struct Bf16Rows {
  using T = uint16_t;
  static simd::Vec Load(const T* p) { return simd::LoadBf16(p); }
  static float Factor(const std::byte*, const PagedKvView&, int) { return 1.0f; }
};
struct F16Rows {
  using T = uint16_t;
  static simd::Vec Load(const T* p) { return simd::LoadF16(p); }
  static float Factor(const std::byte*, const PagedKvView&, int) { return 1.0f; }
};
struct Int8Rows {  // a scale per token
  using T = int8_t;
  static simd::Vec Load(const T* p) { return simd::LoadI8(p); }
  static float Factor(const std::byte* record, const PagedKvView& kv, int slot) {
    return reinterpret_cast<const float*>(record + kv.scales_offset)[slot];
  }
};
struct E4m3Rows {  // a scale per record; Load gives value · 2^-8
  using T = uint8_t;
  static simd::Vec Load(const T* p) { return simd::LoadE4m3Scaled(p); }
  static float Factor(const std::byte* record, const PagedKvView& kv, int) {
    return *reinterpret_cast<const float*>(record + kv.scales_offset) * 256.0f;
  }
};

// The last n < kLanes elements at p, zero-padded, widened.
template <class Rows>
simd::Vec LoadTail(const typename Rows::T* p, int n) {
  typename Rows::T padded[simd::kLanes] = {};
  std::memcpy(padded, p, sizeof(padded[0]) * n);
  return Rows::Load(padded);
}

// Σ a[i]·b[i]
template <class Rows>
float Dot(const float* a, const typename Rows::T* b, int n) {
  simd::Vec acc = simd::Zero();
  int i = 0;
  for (; i + simd::kLanes <= n; i += simd::kLanes) acc = simd::Fma(simd::LoadN(a + i, simd::kLanes), Rows::Load(b + i), acc);
  if (i < n) acc = simd::Fma(simd::LoadN(a + i, n - i), LoadTail<Rows>(b + i, n - i), acc);
  return simd::ReduceAdd(acc);
}

// y = y·scale + a·x
template <class Rows>
void ScaleAxpy(float scale, float a, const typename Rows::T* x, float* y, int n) {
  const simd::Vec vs = simd::Set1(scale), va = simd::Set1(a);
  int i = 0;
  for (; i + simd::kLanes <= n; i += simd::kLanes) {
    simd::StoreN(y + i, simd::Fma(va, Rows::Load(x + i), simd::Mul(vs, simd::LoadN(y + i, simd::kLanes))), simd::kLanes);
  }
  if (i < n) {
    simd::StoreN(y + i, simd::Fma(va, LoadTail<Rows>(x + i, n - i), simd::Mul(vs, simd::LoadN(y + i, n - i))), n - i);
  }
}

template <class Rows>
void Attend(const float* q, int64_t pos, int kvh, int group, const PagedKvView& kv, const AttentionShape& shape,
            const AttentionSequence& s, float* out, float* scores) {
  using T = typename Rows::T;
  const int hd = shape.head_dim;
  const int64_t lo = shape.window > 0 && pos - shape.window + 1 > 0 ? pos - shape.window + 1 : 0;
  float running_max[kMaxGroup], running_sum[kMaxGroup];
  for (int g = 0; g < group; ++g) {
    running_max[g] = -__builtin_inff();
    running_sum[g] = 0.0f;
    std::memset(out + g * hd, 0, sizeof(float) * hd);
  }
  // Walk keys block by block: scores for a chunk, then one rescale per chunk.
  for (int64_t start = lo; start <= pos;) {
    const int64_t block_end = (start / kv.block_size + 1) * kv.block_size;
    const int64_t end = pos + 1 < block_end ? pos + 1 : block_end;
    const int n = static_cast<int>(end - start), slot0 = static_cast<int>(start % kv.block_size);
    const std::byte* k_record = internal::KvRecord(kv.k_base, kv, s, kvh, start);
    const std::byte* v_record = internal::KvRecord(kv.v_base, kv, s, kvh, start);
    const T* k0 = reinterpret_cast<const T*>(k_record) + static_cast<int64_t>(slot0) * hd;
    const T* v0 = reinterpret_cast<const T*>(v_record) + static_cast<int64_t>(slot0) * hd;
    for (int g = 0; g < group; ++g) {
      float* sc = scores + g * kv.block_size;
      float chunk_max = -__builtin_inff();
      for (int t = 0; t < n; ++t) {
        sc[t] = Dot<Rows>(q + g * hd, k0 + t * hd, hd) * (shape.scale * Rows::Factor(k_record, kv, slot0 + t));
        chunk_max = Max(chunk_max, sc[t]);
      }
      const float new_max = Max(running_max[g], chunk_max);
      const float correction = expf(running_max[g] - new_max);
      running_sum[g] *= correction;
      float* o = out + g * hd;
      for (int t = 0; t < n; ++t) {
        const float p = expf(sc[t] - new_max);
        running_sum[g] += p;
        ScaleAxpy<Rows>(t == 0 ? correction : 1.0f, p * Rows::Factor(v_record, kv, slot0 + t), v0 + t * hd, o, hd);
      }
      running_max[g] = new_max;
    }
    start = end;
  }
  for (int g = 0; g < group; ++g) {
    const float inv = 1.0f / running_sum[g];
    for (int i = 0; i < hd; ++i) out[g * hd + i] *= inv;
  }
}

}  // namespace

void AttendOne(const float* q, int64_t pos, int kvh, int group, const PagedKvView& kv, const AttentionShape& shape,
               const AttentionSequence& s, float* out, float* scores) {
  switch (kv.dtype) {
    case KvDtype::kF32: return Attend<F32Rows>(q, pos, kvh, group, kv, shape, s, out, scores);
    case KvDtype::kBf16: return Attend<Bf16Rows>(q, pos, kvh, group, kv, shape, s, out, scores);
    case KvDtype::kF16: return Attend<F16Rows>(q, pos, kvh, group, kv, shape, s, out, scores);
    case KvDtype::kInt8: return Attend<Int8Rows>(q, pos, kvh, group, kv, shape, s, out, scores);
    case KvDtype::kFp8E4m3: return Attend<E4m3Rows>(q, pos, kvh, group, kv, shape, s, out, scores);
  }
}

}  // namespace tessera::kernels::TESSERA_ISA_NS
