// CUDA element-wise ops of the transformer block: embedding gather, the gated MLP's
// activation, plain activations, rotary embedding and the fp32 -> bf16 conversion that
// feeds cuBLAS. Host launchers only; the CPU kernels (kernels/ops.h) are the oracles.
// Conventions as in norms.cuh: device buffers, `stream` a cudaStream_t or nullptr,
// the result a cudaError_t value.
#pragma once

#include <cstdint>

#include "kernels/activation.h"

namespace tessera::kernels::cuda {

// out[r] = table[ids[r] - id0] (dim floats) for ids in [id0, id0 + table_rows), zeros
// for the others (a tensor-parallel rank holds one slice of the vocabulary; an
// all-reduce completes the rows). `table` is fp32, or bf16 when `table_bf16`.
int LaunchEmbedding(const void* table, bool table_bf16, int64_t id0, int64_t table_rows, const int32_t* ids,
                    int64_t rows, int64_t dim, float* out, void* stream);

// gate_up rows are [gate(inner) | up(inner)]; out = act(gate) ⊙ up, [rows, inner].
int LaunchGatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act, float* out,
                          void* stream);

// In place: x = act(x), rows x dim.
int LaunchActivation(float* x, int64_t rows, int64_t dim, Activation act, void* stream);

// Rotary embedding, "rotate_half" layout, in place on `heads` heads of `head_dim` in
// each row of x (row stride in elements), rotating the first `rot_dim` dims of each
// head. Row r is at position positions[r]: angle_j = float(pos) * inv_freq[j] (fp32,
// as torch), cos/sin in double, times `scale` (YaRN's attention factor; else 1). Every
// HF scaling variant differs only in inv_freq (models/rope.h computes it); row r uses
// inv_freq + r * inv_freq_stride (0: one set for every row; dynamic NTK scaling gives
// each sequence its own).
// With `xpos_zeta` (device, [rot_dim/2]; null: none), XPos: the first `q_heads` heads'
// pair j times zeta[j]^(pos / xpos_scale_base), the others' times its inverse.
int LaunchRotary(float* x, int64_t rows, int64_t stride, int heads, int head_dim, int rot_dim,
                 const int32_t* positions, const float* inv_freq, int64_t inv_freq_stride, float scale,
                 const float* xpos_zeta, float xpos_scale_base, int q_heads, void* stream);

// y[r, :] += bias for rows x n.
int LaunchAddBias(float* y, const float* bias, int64_t rows, int64_t n, void* stream);

// dst[i, :] = src[rows[i], :] for i < count, dim floats a row.
int LaunchGatherRows(const float* src, const int32_t* rows, int64_t count, int64_t dim, float* dst, void* stream);

// residual[r, :] += partial[r, :] + bias (bias may be null): a row-parallel layer's
// all-reduced output joining the residual stream, in the CPU's order.
int LaunchAddResidual(float* residual, const float* partial, const float* bias, int64_t rows, int64_t dim,
                      void* stream);

// x[i] *= alpha for i < n.
int LaunchScale(float* x, int64_t n, float alpha, void* stream);

// The MoE combine: out[r, :] = sum over j < k of weights[r*k + j] * src[slots[r*k + j], :],
// summed in j order, skipping slots < 0 (experts another rank runs); deterministic,
// no atomics. The caller orders each row's slots by expert, as the CPU sums them.
int LaunchCombineRows(const float* src, const int32_t* slots, const float* weights, int64_t rows, int k,
                      int64_t dim, float* out, void* stream);

// out = bf16(x), round to nearest even, n elements (out: uint16_t bit patterns).
int LaunchToBf16(const float* x, int64_t n, uint16_t* out, void* stream);

}  // namespace tessera::kernels::cuda
