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
#include "kernels/host_matrix.h"
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

// One panel's rows into their packed places, `Unit` = the bytes that stay together in
// the layout (a bf16 k pair, or one f16 / f32 element): unit u of a row goes to
// u * kPanel + lane. A tile of 16 units of every row is read (each row sequentially),
// then written transposed as 16 whole panel lines.
template <typename Unit>
void PackPanel(const uint8_t* const* rows, int64_t num_rows, int64_t units, uint8_t* panel) {
  constexpr int64_t kTile = 16;
  Unit tile[kPanel][kTile] = {};  // rows past num_rows stay zero
  Unit* dst = reinterpret_cast<Unit*>(panel);
  for (int64_t u0 = 0; u0 < units; u0 += kTile) {
    const int64_t n = std::min(kTile, units - u0);
    for (int64_t lane = 0; lane < num_rows; ++lane) {
      const uint8_t* src = rows[lane] + u0 * sizeof(Unit);
      if (n == kTile) {
        std::memcpy(tile[lane], src, sizeof tile[lane]);  // a constant size: plain vector moves
      } else {
        std::memcpy(tile[lane], src, n * sizeof(Unit));
      }
    }
    for (int64_t j = 0; j < n; ++j) {
      for (int64_t lane = 0; lane < kPanel; ++lane) dst[(u0 + j) * kPanel + lane] = tile[lane][j];
    }
  }
}

}  // namespace

bool MatmulHasBf16Dot() { return internal::ActiveKernels().has_bf16_dot; }

size_t PackedMatrixBytes(int64_t rows, int64_t cols, DType dtype) {
  PackedMatrix shape;
  shape.rows = rows;
  shape.cols = cols;
  return static_cast<size_t>(shape.panels() * PanelStrideElems(shape)) * DTypeSize(dtype);
}

PackedMatrix PackMatrix(std::span<const uint8_t* const> rows, int64_t cols, DType dtype, ThreadPool* pool) {
  PackedMatrix w;
  w.rows = static_cast<int64_t>(rows.size());
  w.cols = cols;
  w.dtype = dtype;
  // Zeroed: padding rows and the odd k's partner stay zero.
  const size_t elem = DTypeSize(dtype);
  w.data = AlignedBuffer(PackedMatrixBytes(w.rows, cols, dtype));
  auto pack = [&](int p) {
    const int64_t row0 = static_cast<int64_t>(p) * kPanel;
    const int64_t panel_rows = std::min<int64_t>(kPanel, w.rows - row0);
    const uint8_t* const* src = rows.data() + row0;
    uint8_t* panel = w.data.as<uint8_t>() + p * PanelStrideElems(w) * elem;
    if (dtype == DType::kBF16) {
      PackPanel<uint32_t>(src, panel_rows, cols / 2, panel);
      if (cols % 2) {  // the last k alone, its partner left zero
        for (int64_t lane = 0; lane < panel_rows; ++lane) {
          std::memcpy(panel + PackedIndex(w, lane, cols - 1) * elem, src[lane] + (cols - 1) * elem, elem);
        }
      }
    } else if (dtype == DType::kF16) {
      PackPanel<uint16_t>(src, panel_rows, cols, panel);
    } else {
      PackPanel<uint32_t>(src, panel_rows, cols, panel);
    }
  };
  const int panels = static_cast<int>(w.panels());
  if (pool != nullptr) {
    pool->Run(panels, pack);
  } else {
    for (int p = 0; p < panels; ++p) pack(p);
  }
  return w;
}

PackedMatrix PackMatrix(const float* src, int64_t rows, int64_t cols, DType dtype) {
  const HostMatrix m = HostMatrix::FromFloats(rows, cols, dtype, src);
  return PackMatrix(m.row_data(), cols, dtype, nullptr);
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
