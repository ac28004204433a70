// The paged-attention inner loop (one new token, one group of query heads), compiled
// once per ISA level (simd.h says how); kernels/cpu/attention.cc splits the work. The
// cache is read in its dtype (common/kv_dtype.h): an f32 block in place, any other
// widened (times its scales) once per block into float rows that every query head of
// the group then reads.
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

// The rows of a head record of each dtype other than f32: the element type, kLanes of
// them widened, and the factor that turns a widened token into its value.
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

// Tokens [slot0, slot0 + n) of a record as float rows of head_dim in `out`.
template <class Rows>
void Widen(const std::byte* record, const PagedKvView& kv, int slot0, int n, float* out) {
  using T = typename Rows::T;
  const int hd = kv.head_dim;
  for (int t = 0; t < n; ++t) {
    const T* row = reinterpret_cast<const T*>(record) + static_cast<int64_t>(slot0 + t) * hd;
    const simd::Vec factor = simd::Set1(Rows::Factor(record, kv, slot0 + t));
    float* o = out + static_cast<int64_t>(t) * hd;
    int i = 0;
    for (; i + simd::kLanes <= hd; i += simd::kLanes) simd::StoreN(o + i, simd::Mul(factor, Rows::Load(row + i)), simd::kLanes);
    if (i < hd) {
      T padded[simd::kLanes] = {};
      std::memcpy(padded, row + i, sizeof(T) * (hd - i));
      simd::StoreN(o + i, simd::Mul(factor, Rows::Load(padded)), hd - i);
    }
  }
}

// The chunk's K or V rows as float32: in place for an f32 cache, else widened into `out`.
const float* ChunkRows(const std::byte* record, const PagedKvView& kv, int slot0, int n, float* out) {
  switch (kv.dtype) {
    case KvDtype::kF32: return reinterpret_cast<const float*>(record) + static_cast<int64_t>(slot0) * kv.head_dim;
    case KvDtype::kBf16: Widen<Bf16Rows>(record, kv, slot0, n, out); break;
    case KvDtype::kF16: Widen<F16Rows>(record, kv, slot0, n, out); break;
    case KvDtype::kInt8: Widen<Int8Rows>(record, kv, slot0, n, out); break;
    case KvDtype::kFp8E4m3: Widen<E4m3Rows>(record, kv, slot0, n, out); break;
  }
  return out;
}

// o = o·correction + Σ_t p[t]·v[t], each column of o held in a register over the chunk's
// n rows of v (row stride v_stride): one load and one FMA per value.
void Accumulate(float correction, const float* p, const float* v, int n, int64_t v_stride, float* o, int hd) {
  const simd::Vec c = simd::Set1(correction);
  for (int i = 0; i < hd; i += simd::kLanes) {
    const int lanes = hd - i < simd::kLanes ? hd - i : simd::kLanes;
    simd::Vec acc = simd::Mul(c, simd::LoadN(o + i, lanes));
    for (int t = 0; t < n; ++t) acc = simd::Fma(simd::Set1(p[t]), simd::LoadN(v + t * v_stride + i, lanes), acc);
    simd::StoreN(o + i, acc, lanes);
  }
}

// Keys [begin, end) into the group's online softmax (running_max, running_sum, out),
// block by block: scores for a chunk, then one rescale per chunk.
void AttendKeys(const float* q, int64_t begin, int64_t end, int kvh, int group, const PagedKvView& kv,
                const AttentionShape& shape, const AttentionSequence& s, float* out, float* scores, float* rows,
                float* running_max, float* running_sum) {
  const int hd = shape.head_dim;
  for (int64_t start = begin; start < end;) {
    const int64_t block_end = (start / kv.block_size + 1) * kv.block_size;
    const int64_t stop = end < block_end ? end : block_end;
    const int n = static_cast<int>(stop - start), slot0 = static_cast<int>(start % kv.block_size);
    const float* k0 = ChunkRows(internal::KvRecord(kv.k_base, kv, s, kvh, start), kv, slot0, n, rows);
    const float* v0 =
        ChunkRows(internal::KvRecord(kv.v_base, kv, s, kvh, start), kv, slot0, n, rows + kv.block_size * hd);
    for (int g = 0; g < group; ++g) {
      float* sc = scores + g * kv.block_size;
      float chunk_max = -__builtin_inff();
      for (int t = 0; t < n; ++t) {
        sc[t] = simd::Dot(q + g * hd, k0 + t * hd, hd) * shape.scale;
        chunk_max = Max(chunk_max, sc[t]);
      }
      const float new_max = Max(running_max[g], chunk_max);
      const float correction = expf(running_max[g] - new_max);
      running_sum[g] *= correction;
      for (int t = 0; t < n; ++t) {
        sc[t] = expf(sc[t] - new_max);  // the score becomes its softmax weight
        running_sum[g] += sc[t];
      }
      Accumulate(correction, sc, v0, n, hd, out + g * hd, hd);
      running_max[g] = new_max;
    }
    start = stop;
  }
}

}  // namespace

void AttendOne(const float* q, const float* q_sink, int64_t pos, int kvh, int group, const PagedKvView& kv,
               const AttentionShape& shape, const AttentionSequence& s, float* out, float* scores, float* rows) {
  const int hd = shape.head_dim;
  const int64_t lo = internal::FirstWindowKey(shape, s, pos);
  const int64_t sinks = s.sink_tokens < lo ? s.sink_tokens : lo;  // sink keys before the window
  float running_max[kMaxGroup], running_sum[kMaxGroup];
  for (int g = 0; g < group; ++g) {
    running_max[g] = -__builtin_inff();
    running_sum[g] = 0.0f;
    std::memset(out + g * hd, 0, sizeof(float) * hd);
  }
  if (sinks > 0) {
    AttendKeys(q_sink != nullptr ? q_sink : q, 0, sinks, kvh, group, kv, shape, s, out, scores, rows, running_max,
               running_sum);
  }
  AttendKeys(q, lo, pos + 1, kvh, group, kv, shape, s, out, scores, rows, running_max, running_sum);
  for (int g = 0; g < group; ++g) {
    const float inv = 1.0f / running_sum[g];
    for (int i = 0; i < hd; ++i) out[g * hd + i] *= inv;
  }
}

}  // namespace tessera::kernels::TESSERA_ISA_NS
