// The packed matmul's register tiles, compiled once per ISA level (simd.h says how).
//
// A tile is MR rows of x times NB weight panels (16 output columns each), accumulated
// in MR x NB x (16 / kLanes) vector registers over the whole k: each weight vector
// loaded is used for MR rows, each broadcast x value for NB panels. A task walks its
// rows a tile at a time while its panels stay in L2; batch-1 decode runs 1 x 4 tiles,
// four weight streams at once, which is what it takes to go past one stream's bandwidth.
#include "kernels/cpu/internal/isa_kernels.h"
#include "kernels/cpu/isa/kernel_entry_points.h"
#include "kernels/cpu/isa/simd.h"

namespace tessera::kernels::TESSERA_ISA_NS {
namespace {

using internal::kPanel;
using internal::MatmulTask;
using internal::WeightFormat;
using simd::Vec;

constexpr int kVecs = kPanel / simd::kLanes;  // vectors per panel row
// Accumulators a tile may hold, leaving room for the weights and the broadcasts: 16 of
// AVX-512's 32 registers, 8 of AVX2's 16.
constexpr int kMaxAcc = simd::kLanes == 16 ? 16 : 8;
constexpr int kRowTile = 4;  // rows per tile while at least that many remain

// Panels per tile for an MR-row tile: as many as the accumulators allow, at most 4.
constexpr int PanelsPerTile(int mr) {
  const int nb = kMaxAcc / (mr * kVecs);
  return nb < 1 ? 1 : (nb > 4 ? 4 : nb);
}

constexpr int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }

// Adds bias and (accumulating) the previous y, and stores the tile's valid columns.
template <int MR, int NB>
inline void StoreTile(const MatmulTask& t, int64_t row0, int64_t col0, Vec (&acc)[MR][NB][kVecs]) {
  for (int j = 0; j < NB; ++j) {
    for (int v = 0; v < kVecs; ++v) {
      const int64_t col = col0 + j * kPanel + v * simd::kLanes;
      const int valid = static_cast<int>(Min(simd::kLanes, t.n - col));
      if (valid <= 0) continue;
      const Vec b = t.bias ? simd::LoadN(t.bias + col, valid) : simd::Zero();
      for (int r = 0; r < MR; ++r) {
        float* out = t.y + (row0 + r) * t.y_stride + col;
        Vec value = simd::Add(acc[r][j][v], b);
        if (t.accumulate) value = simd::Add(value, simd::LoadN(out, valid));
        simd::StoreN(out, value, valid);
      }
    }
  }
}

// The weights of panel `panel` at k = 2·kp (even) and 2·kp + 1 (odd), widened to fp32.
// F32 and F16 panels are [k][16]; BF16 panels [k/2][16][2] (kernels/matmul.h).
template <WeightFormat F>
inline void LoadPair(const MatmulTask& t, int64_t panel, int64_t kp, Vec (&even)[kVecs], Vec (&odd)[kVecs]) {
  for (int v = 0; v < kVecs; ++v) {
    const int64_t lane0 = v * simd::kLanes;
    if constexpr (F == WeightFormat::kF32) {
      const float* base = static_cast<const float*>(t.w) + panel * t.panel_stride + 2 * kp * kPanel + lane0;
      even[v] = simd::LoadAligned(base);
      odd[v] = simd::LoadAligned(base + kPanel);
    } else if constexpr (F == WeightFormat::kF16) {
      const uint16_t* base = static_cast<const uint16_t*>(t.w) + panel * t.panel_stride + 2 * kp * kPanel + lane0;
      even[v] = simd::WidenF16(base);
      odd[v] = simd::WidenF16(base + kPanel);
    } else {
      const uint16_t* base = static_cast<const uint16_t*>(t.w) + panel * t.panel_stride + kp * 2 * kPanel + 2 * lane0;
      simd::WidenBf16Pairs(base, &even[v], &odd[v]);
    }
  }
}

// fp32 activations times weights widened to fp32, exact (fp32 accumulation in k order).
template <WeightFormat F, int MR, int NB>
void Tile(const MatmulTask& t, int64_t row0, int64_t panel0) {
  Vec acc[MR][NB][kVecs];
  for (auto& row : acc)
    for (auto& panel : row)
      for (Vec& a : panel) a = simd::Zero();
  const int64_t full_pairs = t.k / 2;
  for (int64_t kp = 0; kp < full_pairs; ++kp) {
    Vec even[NB][kVecs], odd[NB][kVecs];
    for (int j = 0; j < NB; ++j) LoadPair<F>(t, panel0 + j, kp, even[j], odd[j]);
    for (int r = 0; r < MR; ++r) {
      const float* xr = t.x + (row0 + r) * t.x_stride + 2 * kp;
      const Vec x0 = simd::Set1(xr[0]), x1 = simd::Set1(xr[1]);
      for (int j = 0; j < NB; ++j)
        for (int v = 0; v < kVecs; ++v) acc[r][j][v] = simd::Fma(x1, odd[j][v], simd::Fma(x0, even[j][v], acc[r][j][v]));
    }
  }
  if (t.k % 2) {  // the last k has no partner (its padding weights are zero)
    Vec even[NB][kVecs], odd[NB][kVecs];
    for (int j = 0; j < NB; ++j) LoadPair<F>(t, panel0 + j, full_pairs, even[j], odd[j]);
    for (int r = 0; r < MR; ++r) {
      const Vec x0 = simd::Set1(t.x[(row0 + r) * t.x_stride + t.k - 1]);
      for (int j = 0; j < NB; ++j)
        for (int v = 0; v < kVecs; ++v) acc[r][j][v] = simd::Fma(x0, even[j][v], acc[r][j][v]);
    }
  }
  StoreTile<MR, NB>(t, row0, panel0 * kPanel, acc);
}

// MR rows against `nb` panels, PanelsPerTile(MR) panels per tile.
template <WeightFormat F, int MR>
void RowTile(const MatmulTask& t, int64_t row0, int64_t panel0, int nb) {
  constexpr int kNb = PanelsPerTile(MR);
  for (int j = 0; j < nb; j += kNb) {
    switch (Min(kNb, nb - j)) {
      case 1: Tile<F, MR, 1>(t, row0, panel0 + j); break;
      case 2: Tile<F, MR, (kNb >= 2 ? 2 : 1)>(t, row0, panel0 + j); break;
      case 3: Tile<F, MR, (kNb >= 3 ? 3 : 1)>(t, row0, panel0 + j); break;
      default: Tile<F, MR, kNb>(t, row0, panel0 + j); break;
    }
  }
}

template <WeightFormat F>
void RunRows(const MatmulTask& t, int64_t row_begin, int64_t row_end, int64_t panel0, int nb) {
  int64_t row = row_begin;
  for (; row + kRowTile <= row_end; row += kRowTile) RowTile<F, kRowTile>(t, row, panel0, nb);
  switch (row_end - row) {
    case 1: RowTile<F, 1>(t, row, panel0, nb); break;
    case 2: RowTile<F, 2>(t, row, panel0, nb); break;
    case 3: RowTile<F, 3>(t, row, panel0, nb); break;
    default: break;
  }
}

#if defined(__AVX512BF16__)

// bf16 activations times bf16 weights with vdpbf16ps (two k per instruction, twice the
// FLOP rate; activations rounded to bf16). Six rows a tile: 24 accumulators.
template <int MR, int NB>
void TileBf16Dot(const MatmulTask& t, int64_t row0, int64_t panel0) {
  const int64_t pairs = (t.k + 1) / 2;
  const uint16_t* base = static_cast<const uint16_t*>(t.w) + panel0 * t.panel_stride;
  Vec acc[MR][NB][1];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NB; ++j) acc[r][j][0] = simd::Zero();
  for (int64_t kp = 0; kp < pairs; ++kp) {
    __m512bh w[NB];
    for (int j = 0; j < NB; ++j) w[j] = (__m512bh)_mm512_load_si512(base + j * t.panel_stride + kp * 2 * kPanel);
    for (int r = 0; r < MR; ++r) {
      const __m512bh xv =
          (__m512bh)_mm512_set1_epi32(static_cast<int>(t.x_bf16[(row0 + r) * t.x_bf16_stride + kp]));
      for (int j = 0; j < NB; ++j) acc[r][j][0] = _mm512_dpbf16_ps(acc[r][j][0], xv, w[j]);
    }
  }
  StoreTile<MR, NB>(t, row0, panel0 * kPanel, acc);
}

template <int MR>
void RowTileBf16Dot(const MatmulTask& t, int64_t row0, int64_t panel0, int nb) {
  switch (nb) {
    case 1: TileBf16Dot<MR, 1>(t, row0, panel0); break;
    case 2: TileBf16Dot<MR, 2>(t, row0, panel0); break;
    case 3: TileBf16Dot<MR, 3>(t, row0, panel0); break;
    default: TileBf16Dot<MR, 4>(t, row0, panel0); break;
  }
}

void RunRowsBf16Dot(const MatmulTask& t, int64_t row_begin, int64_t row_end, int64_t panel0, int nb) {
  constexpr int kTile = 6;
  int64_t row = row_begin;
  for (; row + kTile <= row_end; row += kTile) RowTileBf16Dot<kTile>(t, row, panel0, nb);
  switch (row_end - row) {
    case 1: RowTileBf16Dot<1>(t, row, panel0, nb); break;
    case 2: RowTileBf16Dot<2>(t, row, panel0, nb); break;
    case 3: RowTileBf16Dot<3>(t, row, panel0, nb); break;
    case 4: RowTileBf16Dot<4>(t, row, panel0, nb); break;
    case 5: RowTileBf16Dot<5>(t, row, panel0, nb); break;
    default: break;
  }
}

#endif  // __AVX512BF16__

}  // namespace

void RunMatmulTask(const MatmulTask& t, int64_t row_begin, int64_t row_end, int64_t panel0, int num_panels) {
#if defined(__AVX512BF16__)
  if (t.x_bf16 != nullptr) return RunRowsBf16Dot(t, row_begin, row_end, panel0, num_panels);
#endif
  switch (t.format) {
    case WeightFormat::kF32: return RunRows<WeightFormat::kF32>(t, row_begin, row_end, panel0, num_panels);
    case WeightFormat::kF16: return RunRows<WeightFormat::kF16>(t, row_begin, row_end, panel0, num_panels);
    case WeightFormat::kBf16: return RunRows<WeightFormat::kBf16>(t, row_begin, row_end, panel0, num_panels);
  }
}

}  // namespace tessera::kernels::TESSERA_ISA_NS
