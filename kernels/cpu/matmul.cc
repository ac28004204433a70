// CPU matmul against panel-packed weights (layout in kernels/matmul.h).
//
// Work is split into tasks of (a chunk of rows of x) × (a group of kPanelsPerTask
// panels, 64 output columns); a task's weight panels stay in L2 while every row tile
// of its chunk streams past them. Batch-1 decode reads kPanelsPerTask weight streams
// at once, which is what it takes to go past the single-stream memory bandwidth.
#include <algorithm>
#include <cstring>
#include <vector>

#include "common/bf16.h"
#include "kernels/matmul.h"

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>
#define TESSERA_AVX512_BF16 1
#endif

namespace tessera::kernels {
namespace {

constexpr int kPanel = 16;          // output columns per packed panel
constexpr int kPanelsPerTask = 4;   // 64 output columns per task
constexpr int kRowsPerChunk = 96;   // rows of x per task (a multiple of every row tile)

int64_t PanelStrideElems(const PackedMatrix& w) {
  // Elements (floats or bf16) per panel.
  int64_t k_padded = w.dtype == DType::kBF16 ? (w.cols + 1) / 2 * 2 : w.cols;
  return k_padded * kPanel;
}

struct Problem {
  const float* x;
  int64_t m, x_stride;
  const PackedMatrix* w;
  const float* bias;
  float* y;
  int64_t y_stride;
  bool accumulate;
  const uint32_t* x_bf16;  // [m][k/2] bf16 pairs, only on the fast path
  int64_t x_bf16_stride;   // in pairs
};

// Adds bias / the previous y and writes `count` columns starting at `col`.
[[maybe_unused]] inline void StoreRow(const Problem& p, int64_t row, int64_t col, const float* values,
                     int count) {
  float* out = p.y + row * p.y_stride + col;
  for (int i = 0; i < count; ++i) {
    float v = values[i];
    if (p.bias) v += p.bias[col + i];
    if (p.accumulate) v += out[i];
    out[i] = v;
  }
}

#ifdef TESSERA_AVX512_BF16

template <int MR, int NB>
inline void StoreTile(const Problem& p, int64_t row0, int64_t col0, __m512 (&acc)[MR][NB]) {
  for (int j = 0; j < NB; ++j) {
    int64_t col = col0 + j * kPanel;
    int64_t valid = std::min<int64_t>(kPanel, p.w->rows - col);
    if (valid <= 0) continue;
    __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    __m512 b = p.bias ? _mm512_maskz_loadu_ps(mask, p.bias + col) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      float* out = p.y + (row0 + r) * p.y_stride + col;
      __m512 v = _mm512_add_ps(acc[r][j], b);
      if (p.accumulate) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, out));
      _mm512_mask_storeu_ps(out, mask, v);
    }
  }
}

// fp32 activations × bf16 weights, exact: widen each bf16 pair to two fp32 vectors.
template <int MR, int NB>
void TileExactBf16(const Problem& p, int64_t row0, int64_t panel0) {
  const int64_t k = p.w->cols;
  const int64_t stride = PanelStrideElems(*p.w);
  const uint16_t* base = p.w->data.as<uint16_t>() + panel0 * stride;
  __m512 acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_ps();
  const __m512i high_mask = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
  const int64_t full_pairs = k / 2;
  const int64_t pairs = (k + 1) / 2;
  for (int64_t kp = 0; kp < pairs; ++kp) {
    __m512 w0[NB], w1[NB];
    for (int j = 0; j < NB; ++j) {
      __m512i v = _mm512_load_si512(base + j * stride + kp * 32);
      w0[j] = _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
      w1[j] = _mm512_castsi512_ps(_mm512_and_si512(v, high_mask));
    }
    for (int r = 0; r < MR; ++r) {
      const float* xr = p.x + (row0 + r) * p.x_stride + 2 * kp;
      __m512 x0 = _mm512_set1_ps(xr[0]);
      __m512 x1 = _mm512_set1_ps(kp < full_pairs ? xr[1] : 0.0f);
      for (int j = 0; j < NB; ++j) {
        acc[r][j] = _mm512_fmadd_ps(x0, w0[j], acc[r][j]);
        acc[r][j] = _mm512_fmadd_ps(x1, w1[j], acc[r][j]);
      }
    }
  }
  StoreTile<MR, NB>(p, row0, panel0 * kPanel, acc);
}

template <int MR, int NB>
void TileF32(const Problem& p, int64_t row0, int64_t panel0) {
  const int64_t k = p.w->cols;
  const int64_t stride = PanelStrideElems(*p.w);
  const float* base = p.w->data.as<float>() + panel0 * stride;
  __m512 acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t kk = 0; kk < k; ++kk) {
    __m512 w[NB];
    for (int j = 0; j < NB; ++j) w[j] = _mm512_load_ps(base + j * stride + kk * kPanel);
    for (int r = 0; r < MR; ++r) {
      __m512 xv = _mm512_set1_ps(p.x[(row0 + r) * p.x_stride + kk]);
      for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_fmadd_ps(xv, w[j], acc[r][j]);
    }
  }
  StoreTile<MR, NB>(p, row0, panel0 * kPanel, acc);
}

// bf16 activations × bf16 weights with vdpbf16ps (two k per instruction).
template <int MR, int NB>
void TileFastBf16(const Problem& p, int64_t row0, int64_t panel0) {
  const int64_t pairs = (p.w->cols + 1) / 2;
  const int64_t stride = PanelStrideElems(*p.w);
  const uint16_t* base = p.w->data.as<uint16_t>() + panel0 * stride;
  __m512 acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t kp = 0; kp < pairs; ++kp) {
    __m512bh w[NB];
    for (int j = 0; j < NB; ++j) w[j] = (__m512bh)_mm512_load_si512(base + j * stride + kp * 32);
    for (int r = 0; r < MR; ++r) {
      __m512bh xv = (__m512bh)_mm512_set1_epi32(
          static_cast<int>(p.x_bf16[(row0 + r) * p.x_bf16_stride + kp]));
      for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], xv, w[j]);
    }
  }
  StoreTile<MR, NB>(p, row0, panel0 * kPanel, acc);
}

enum class Path { kF32, kExactBf16, kFastBf16 };

template <Path P, int MR, int NB>
void Tile(const Problem& p, int64_t row0, int64_t panel0) {
  if constexpr (P == Path::kF32) TileF32<MR, NB>(p, row0, panel0);
  if constexpr (P == Path::kExactBf16) TileExactBf16<MR, NB>(p, row0, panel0);
  if constexpr (P == Path::kFastBf16) TileFastBf16<MR, NB>(p, row0, panel0);
}

// Dispatches a runtime (rows, panels) tile shape onto the templates.
template <Path P, int MR>
void TileRows(const Problem& p, int64_t row0, int64_t panel0, int nb) {
  switch (nb) {
    case 1: Tile<P, MR, 1>(p, row0, panel0); break;
    case 2: Tile<P, MR, 2>(p, row0, panel0); break;
    case 3: Tile<P, MR, 3>(p, row0, panel0); break;
    default: Tile<P, MR, 4>(p, row0, panel0); break;
  }
}

template <Path P>
void RunTask(const Problem& p, int64_t row_begin, int64_t row_end, int64_t panel0, int nb) {
  // Row tiles: 6 rows on the dot-product path (24 accumulators), 4 when widening.
  constexpr int kTile = P == Path::kFastBf16 ? 6 : 4;
  int64_t row = row_begin;
  for (; row + kTile <= row_end; row += kTile) TileRows<P, kTile>(p, row, panel0, nb);
  switch (row_end - row) {
    case 1: TileRows<P, 1>(p, row, panel0, nb); break;
    case 2: TileRows<P, 2>(p, row, panel0, nb); break;
    case 3: TileRows<P, 3>(p, row, panel0, nb); break;
    case 4: TileRows<P, 4>(p, row, panel0, nb); break;
    case 5: TileRows<P, 5>(p, row, panel0, nb); break;
    default: break;
  }
}

#endif  // TESSERA_AVX512_BF16

// Portable reference loops over the packed layout (used where AVX-512 BF16 is absent).
[[maybe_unused]] void RunTaskPortable(const Problem& p, int64_t row_begin, int64_t row_end, int64_t panel0,
                     int nb) {
  const PackedMatrix& w = *p.w;
  const int64_t stride = PanelStrideElems(w);
  float out[kPanel];
  for (int64_t row = row_begin; row < row_end; ++row) {
    const float* xr = p.x + row * p.x_stride;
    for (int j = 0; j < nb; ++j) {
      int64_t panel = panel0 + j;
      std::fill(out, out + kPanel, 0.0f);
      for (int64_t kk = 0; kk < w.cols; ++kk) {
        for (int c = 0; c < kPanel; ++c) {
          float wv;
          if (w.dtype == DType::kF32) {
            wv = w.data.as<float>()[panel * stride + kk * kPanel + c];
          } else {
            wv = Bf16ToFloat(
                w.data.as<uint16_t>()[panel * stride + (kk / 2) * 32 + c * 2 + (kk % 2)]);
          }
          out[c] += xr[kk] * wv;
        }
      }
      int64_t col = panel * kPanel;
      StoreRow(p, row, col, out, static_cast<int>(std::min<int64_t>(kPanel, w.rows - col)));
    }
  }
}

}  // namespace

bool MatmulUsesAvx512Bf16() {
#ifdef TESSERA_AVX512_BF16
  return true;
#else
  return false;
#endif
}

PackedMatrix PackMatrix(const float* src, int64_t rows, int64_t cols, DType dtype) {
  PackedMatrix w;
  w.rows = rows;
  w.cols = cols;
  w.dtype = dtype == DType::kBF16 ? DType::kBF16 : DType::kF32;
  const int64_t stride = PanelStrideElems(w);
  w.data = AlignedBuffer(static_cast<size_t>(w.panels() * stride) * DTypeSize(w.dtype));
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t panel = r / kPanel, lane = r % kPanel;
    for (int64_t c = 0; c < cols; ++c) {
      const float v = src[r * cols + c];
      if (w.dtype == DType::kF32) {
        w.data.as<float>()[panel * stride + c * kPanel + lane] = v;
      } else {
        w.data.as<uint16_t>()[panel * stride + (c / 2) * 32 + lane * 2 + (c % 2)] =
            FloatToBf16(v);
      }
    }
  }
  return w;
}

void UnpackMatrix(const PackedMatrix& w, void* out) {
  const int64_t stride = PanelStrideElems(w);
  for (int64_t r = 0; r < w.rows; ++r) {
    const int64_t panel = r / kPanel, lane = r % kPanel;
    for (int64_t c = 0; c < w.cols; ++c) {
      if (w.dtype == DType::kF32) {
        static_cast<float*>(out)[r * w.cols + c] = w.data.as<float>()[panel * stride + c * kPanel + lane];
      } else {
        static_cast<uint16_t*>(out)[r * w.cols + c] =
            w.data.as<uint16_t>()[panel * stride + (c / 2) * 32 + lane * 2 + (c % 2)];
      }
    }
  }
}

void Matmul(const float* x, int64_t m, int64_t x_stride, const PackedMatrix& w,
            const float* bias, float* y, int64_t y_stride, ThreadPool* pool,
            const MatmulOptions& options) {
  if (m <= 0 || w.rows <= 0) return;
  Problem p{x, m, x_stride, &w, bias, y, y_stride, options.accumulate, nullptr, 0};

  const int64_t panel_groups = (w.panels() + kPanelsPerTask - 1) / kPanelsPerTask;
  const int64_t row_chunks = (m + kRowsPerChunk - 1) / kRowsPerChunk;
  const int64_t tasks = panel_groups * row_chunks;
  auto task_range = [&](int t, int64_t* row_begin, int64_t* row_end, int64_t* panel0, int* nb) {
    const int64_t group = t / row_chunks, chunk = t % row_chunks;
    *row_begin = chunk * kRowsPerChunk;
    *row_end = std::min(m, *row_begin + kRowsPerChunk);
    *panel0 = group * kPanelsPerTask;
    *nb = static_cast<int>(std::min<int64_t>(kPanelsPerTask, w.panels() - *panel0));
  };

#ifdef TESSERA_AVX512_BF16
  const bool fast = w.dtype == DType::kBF16 && options.bf16_activation_min_rows > 0 &&
                    m >= options.bf16_activation_min_rows;
  // Reused across calls: no allocation on the hot path once warmed up.
  thread_local AlignedBuffer x_bf16;
  if (fast) {
    const int64_t pairs = (w.cols + 1) / 2;
    x_bf16.Reserve(static_cast<size_t>(m * pairs) * sizeof(uint32_t));
    uint16_t* dst = x_bf16.as<uint16_t>();
    p.x_bf16 = x_bf16.as<uint32_t>();
    p.x_bf16_stride = pairs;
    const int64_t per_task = (m + pool->num_threads() - 1) / pool->num_threads();
    pool->Run(pool->num_threads(), [&](int t) {
      for (int64_t r = t * per_task; r < std::min(m, (t + 1) * per_task); ++r) {
        for (int64_t c = 0; c < w.cols; ++c) dst[r * pairs * 2 + c] = FloatToBf16(x[r * x_stride + c]);
        if (w.cols % 2) dst[r * pairs * 2 + w.cols] = 0;
      }
    });
  }
  pool->Run(static_cast<int>(tasks), [&](int t) {
    int64_t rb, re, panel0;
    int nb;
    task_range(t, &rb, &re, &panel0, &nb);
    if (w.dtype == DType::kF32) {
      RunTask<Path::kF32>(p, rb, re, panel0, nb);
    } else if (fast) {
      RunTask<Path::kFastBf16>(p, rb, re, panel0, nb);
    } else {
      RunTask<Path::kExactBf16>(p, rb, re, panel0, nb);
    }
  });
#else
  pool->Run(static_cast<int>(tasks), [&](int t) {
    int64_t rb, re, panel0;
    int nb;
    task_range(t, &rb, &re, &panel0, &nb);
    RunTaskPortable(p, rb, re, panel0, nb);
  });
#endif
}

}  // namespace tessera::kernels
