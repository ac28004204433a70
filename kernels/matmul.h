// Matrix multiplication against pre-packed weights: y[m, n] = x[m, k] · W[n, k]ᵀ + b.
//
// Weights are packed once at load into panels of 16 output rows, 64-byte aligned:
//   F32:  [n/16][k][16]          float
//   F16:  [n/16][k][16]          IEEE half (a panel row is one F16C conversion)
//   BF16: [n/16][k/2][16][2]     bf16 (pairs of k interleaved, the operand layout of
//                                 the AVX-512 BF16 dot-product instruction)
// (n and k are padded with zeros to a multiple of 16 and 2.)
//
// The tiles run at the ISA level kernels/cpu_isa.h selects (AVX-512 BF16, AVX-512,
// AVX2 or portable); every level computes the same sums in the same k order.
// Accumulation is always fp32, and F16/BF16 weights are widened in registers (exact).
// For BF16 weights there are two paths:
//   exact: activations stay fp32 (a float32 reference that widens the weights, like
//          HuggingFace does, up to the order of the sums);
//   fast:  activations are rounded to bf16 and multiplied with vdpbf16ps (twice the
//          FLOP rate; ~1e-2 relative error), used for batches of at least
//          MatmulOptions::bf16_activation_min_rows rows, on the AVX-512 BF16 level only.
//
// Thread-safety: a PackedMatrix is immutable after packing; Matmul may run concurrently
// on the same matrix with different outputs.
#pragma once

#include <cstdint>
#include <span>

#include "common/aligned_buffer.h"
#include "common/dtype.h"
#include "common/thread_pool.h"

namespace tessera::kernels {

struct PackedMatrix {
  int64_t rows = 0;  // n: output features
  int64_t cols = 0;  // k: input features
  DType dtype = DType::kF32;
  AlignedBuffer data;

  int64_t panels() const { return (rows + 15) / 16; }
  size_t bytes() const { return data.size(); }
};

// Bytes of the packed form of a [rows, cols] matrix of `dtype` (its padded panels).
size_t PackedMatrixBytes(int64_t rows, int64_t cols, DType dtype);

// Packs a matrix given as rows of `cols` elements already in `dtype` (a checkpoint's
// bytes, kernels::HostMatrix), a panel per task over `pool` (null: on this thread).
PackedMatrix PackMatrix(std::span<const uint8_t* const> rows, int64_t cols, DType dtype, ThreadPool* pool);

// Packs a row-major [rows, cols] float matrix, rounded to `dtype` (tests, benchmarks).
PackedMatrix PackMatrix(const float* src, int64_t rows, int64_t cols, DType dtype);

// The inverse: the matrix row-major [rows, cols] in its stored dtype (float, or half /
// bf16 bit patterns as uint16_t): what the tests check the packing against.
void UnpackMatrix(const PackedMatrix& w, void* out);

struct MatmulOptions {
  // Batches with at least this many rows use the fast bf16-activation path on BF16
  // weights. 0 disables the fast path (every product exact in fp32 activations), and so
  // makes every row's result independent of how many rows the call has.
  int bf16_activation_min_rows = 8;
  // y += x·Wᵀ (+ b) instead of y = x·Wᵀ (+ b): residual adds cost no extra pass.
  bool accumulate = false;
};

// x: [m, w.cols] fp32 row-major with row stride x_stride (elements).
// y: [m, w.rows] fp32 row-major with row stride y_stride.
// bias: [w.rows] or nullptr.
void Matmul(const float* x, int64_t m, int64_t x_stride, const PackedMatrix& w,
            const float* bias, float* y, int64_t y_stride, ThreadPool* pool,
            const MatmulOptions& options = {});

// True when the selected ISA level has the fast bf16-activation path (vdpbf16ps).
bool MatmulHasBf16Dot();

}  // namespace tessera::kernels
