// The paged-attention inner loop (one new token, one group of query heads), compiled
// once per ISA level (simd.h says how); kernels/cpu/attention.cc splits the work.
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

}  // namespace

void AttendOne(const float* q, int64_t pos, int kvh, int group, const PagedKvView& kv, const AttentionShape& shape,
               const AttentionSequence& s, float* out, float* scores) {
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
    const int n = static_cast<int>(end - start);
    const float* k0 = internal::KvSlot(kv.k_base, kv, s, kvh, start);
    const float* v0 = internal::KvSlot(kv.v_base, kv, s, kvh, start);
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
      float* o = out + g * hd;
      for (int t = 0; t < n; ++t) {
        const float p = expf(sc[t] - new_max);
        running_sum[g] += p;
        simd::ScaleAxpy(t == 0 ? correction : 1.0f, p, v0 + t * hd, o, hd);
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

}  // namespace tessera::kernels::TESSERA_ISA_NS
