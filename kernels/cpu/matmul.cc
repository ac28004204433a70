// CPU matmul against panel-packed weights (layout in kernels/matmul.h): splits the work
// into tasks and runs them through the register tiles of the selected ISA level
// (isa/matmul_tiles.cc).
//
// A task is (a chunk of rows of x) × (a group of kPanelsPerTask panels, 64 output
// columns); its weight panels stay in L2 while every row tile of its chunk streams past
// them, so a step with many rows reads each weight once.
#include <algorithm>
#include <cstring>

#include "common/bf16.h"
#include "kernels/cpu/internal/isa_kernels.h"
#include "kernels/matmul.h"

namespace tessera::kernels {
namespace {

using internal::kPanel;
constexpr int kPanelsPerTask = 4;  // 64 output columns per task
constexpr int kRowsPerChunk = 96;  // rows of x per task (a multiple of every row tile)

// Elements per panel: k padded to even (bf16 packs k in pairs; the others match so that
// every format walks k two at a time).
int64_t PanelStrideElems(const PackedMatrix& w) { return (w.cols + 1) / 2 * 2 * kPanel; }

// Where element (row, col) of the matrix lies in the packed buffer, in elements.
int64_t PackedIndex(const PackedMatrix& w, int64_t row, int64_t col) {
  const int64_t panel = row / kPanel, lane = row % kPanel;
  if (w.dtype == DType::kBF16) return panel * PanelStrideElems(w) + (col / 2) * 2 * kPanel + lane * 2 + col % 2;
  return panel * PanelStrideElems(w) + col * kPanel + lane;
}

internal::WeightFormat FormatOf(DType dtype) {
  switch (dtype) {
    case DType::kF32: return internal::WeightFormat::kF32;
    case DType::kF16: return internal::WeightFormat::kF16;
    case DType::kBF16: return internal::WeightFormat::kBf16;
  }
  return internal::WeightFormat::kF32;
}

// Rounds x to bf16 pairs ([m][k/2], the odd k's partner zero) for the vdpbf16ps tiles.
// Reused across calls: no allocation on the hot path once warmed up.
const uint32_t* RoundActivationsToBf16(const float* x, int64_t m, int64_t x_stride, int64_t k, ThreadPool* pool) {
  thread_local AlignedBuffer x_bf16;
  const int64_t pairs = (k + 1) / 2;
  x_bf16.Reserve(static_cast<size_t>(m * pairs) * sizeof(uint32_t));
  uint16_t* dst = x_bf16.as<uint16_t>();
  const int64_t per_task = (m + pool->num_threads() - 1) / pool->num_threads();
  pool->Run(pool->num_threads(), [&](int t) {
    for (int64_t r = t * per_task; r < std::min(m, (t + 1) * per_task); ++r) {
      for (int64_t c = 0; c < k; ++c) dst[r * pairs * 2 + c] = FloatToBf16(x[r * x_stride + c]);
      if (k % 2) dst[r * pairs * 2 + k] = 0;
    }
  });
  return x_bf16.as<uint32_t>();
}

}  // namespace

bool MatmulHasBf16Dot() { return internal::ActiveKernels().has_bf16_dot; }

PackedMatrix PackMatrix(const float* src, int64_t rows, int64_t cols, DType dtype) {
  PackedMatrix w;
  w.rows = rows;
  w.cols = cols;
  w.dtype = dtype;
  // Zeroed: padding rows and the odd k's partner stay zero.
  w.data = AlignedBuffer(static_cast<size_t>(w.panels() * PanelStrideElems(w)) * DTypeSize(w.dtype));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const float v = src[r * cols + c];
      const int64_t i = PackedIndex(w, r, c);
      switch (w.dtype) {
        case DType::kF32: w.data.as<float>()[i] = v; break;
        case DType::kF16: w.data.as<uint16_t>()[i] = FloatToF16(v); break;
        case DType::kBF16: w.data.as<uint16_t>()[i] = FloatToBf16(v); break;
      }
    }
  }
  return w;
}

void UnpackMatrix(const PackedMatrix& w, void* out) {
  const size_t elem = DTypeSize(w.dtype);
  for (int64_t r = 0; r < w.rows; ++r) {
    for (int64_t c = 0; c < w.cols; ++c) {
      std::memcpy(static_cast<char*>(out) + (r * w.cols + c) * elem, w.data.as<char>() + PackedIndex(w, r, c) * elem,
                  elem);
    }
  }
}

void Matmul(const float* x, int64_t m, int64_t x_stride, const PackedMatrix& w,
            const float* bias, float* y, int64_t y_stride, ThreadPool* pool,
            const MatmulOptions& options) {
  if (m <= 0 || w.rows <= 0) return;
  const internal::IsaKernels& kernels = internal::ActiveKernels();
  internal::MatmulTask task;
  task.x = x;
  task.x_stride = x_stride;
  task.w = w.data.data();
  task.format = FormatOf(w.dtype);
  task.n = w.rows;
  task.k = w.cols;
  task.panel_stride = PanelStrideElems(w);
  task.bias = bias;
  task.y = y;
  task.y_stride = y_stride;
  task.accumulate = options.accumulate;
  if (kernels.has_bf16_dot && w.dtype == DType::kBF16 && options.bf16_activation_min_rows > 0 &&
      m >= options.bf16_activation_min_rows) {
    task.x_bf16 = RoundActivationsToBf16(x, m, x_stride, w.cols, pool);
    task.x_bf16_stride = (w.cols + 1) / 2;
  }

  const int64_t panel_groups = (w.panels() + kPanelsPerTask - 1) / kPanelsPerTask;
  const int64_t row_chunks = (m + kRowsPerChunk - 1) / kRowsPerChunk;
  pool->Run(static_cast<int>(panel_groups * row_chunks), [&](int t) {
    const int64_t group = t / row_chunks, chunk = t % row_chunks;
    const int64_t row_begin = chunk * kRowsPerChunk;
    const int64_t panel0 = group * kPanelsPerTask;
    kernels.matmul_task(task, row_begin, std::min(m, row_begin + kRowsPerChunk), panel0,
                        static_cast<int>(std::min<int64_t>(kPanelsPerTask, w.panels() - panel0)));
  });
}

}  // namespace tessera::kernels
