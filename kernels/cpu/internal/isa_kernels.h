// The contract between the CPU kernels' dispatchers (kernels/cpu/*.cc, compiled for the
// x86-64 baseline) and their per-ISA bodies (kernels/cpu/isa/*.cc, compiled once per
// level with that level's flags). Only plain data crosses it, so that no inline function
// is ever compiled for two levels under one name: the linker keeps one copy of such a
// function, and it could be an AVX-512 one called on the portable path.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/attention.h"

namespace tessera::kernels::internal {

constexpr int kPanel = 16;  // output columns per packed weight panel (kernels/matmul.h)

enum class WeightFormat { kF32, kF16, kBf16 };

// The head record holding token `pos` of kv head `head` of a sequence, in a layer's K
// or V (`base`); the token is its slot pos % block_size.
static inline std::byte* KvRecord(std::byte* base, const PagedKvView& kv, const AttentionSequence& seq, int head,
                                  int64_t pos) {
  const int32_t block = seq.block_table[pos / kv.block_size];
  return base + block * kv.block_stride + head * kv.head_stride;
}

// The first key of the window that the token at `pos` reads: the narrower of the
// layer's and the sequence's windows (0: none, every key from 0).
static inline int64_t FirstWindowKey(const AttentionShape& shape, const AttentionSequence& seq, int64_t pos) {
  int window = shape.window;
  if (seq.window > 0 && (window == 0 || seq.window < window)) window = seq.window;
  return window > 0 && pos - window + 1 > 0 ? pos - window + 1 : 0;
}

// One matmul task's inputs: y[rows, n] (+)= x[rows, k] · Wᵀ (+ bias), over a range of
// rows and of weight panels.
struct MatmulTask {
  const float* x = nullptr;
  int64_t x_stride = 0;
  const void* w = nullptr;  // packed panels (kernels/matmul.h), 64-byte aligned
  WeightFormat format = WeightFormat::kF32;
  int64_t n = 0, k = 0;
  int64_t panel_stride = 0;  // elements per panel
  const float* bias = nullptr;
  float* y = nullptr;
  int64_t y_stride = 0;
  bool accumulate = false;
  // Set: bf16 weights times these bf16-rounded activations with vdpbf16ps
  // ([rows][k/2] pairs); only levels with has_bf16_dot take it.
  const uint32_t* x_bf16 = nullptr;
  int64_t x_bf16_stride = 0;  // in pairs
};

using MatmulTaskFn = void (*)(const MatmulTask& task, int64_t row_begin, int64_t row_end, int64_t panel0,
                              int num_panels);

// Attention of one new token (at position `pos`) for the `group` query heads that share
// kv head `kvh`: the window's keys with `q`, the sequence's sink keys before the window
// with `q_sink` (the same heads as the sinks see them; kernels/attention.h). Scratch:
// `scores` group x block_size floats, `rows` 2 x block_size x head_dim floats (a
// block's K and V widened from a cache dtype other than f32).
using AttendOneFn = void (*)(const float* q, const float* q_sink, int64_t pos, int kvh, int group, const PagedKvView& kv,
                             const AttentionShape& shape, const AttentionSequence& seq, float* out,
                             float* scores, float* rows);

struct IsaKernels {
  MatmulTaskFn matmul_task;
  AttendOneFn attend_one;
  bool has_bf16_dot;  // matmul_task takes MatmulTask::x_bf16
};

// One table per level (kernels/cpu/isa/kernel_table.cc, compiled per level).
extern const IsaKernels kPortableKernels;
extern const IsaKernels kAvx2Kernels;
extern const IsaKernels kAvx512Kernels;
extern const IsaKernels kAvx512Bf16Kernels;

// The table of the level selected now (kernels/cpu_isa.h).
const IsaKernels& ActiveKernels();

}  // namespace tessera::kernels::internal
