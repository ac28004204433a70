// CUDA element-wise ops of the transformer block: embedding gather, the gated MLP's
// activation, plain activations, rotary embedding and the fp32 -> bf16 conversion that
// feeds cuBLAS. Host launchers only; the CPU kernels (kernels/ops.h) are the oracles.
// Conventions as in norms.cuh: device buffers, `stream` a cudaStream_t or nullptr,
// the result a cudaError_t value.
#pragma once

#include <cstdint>

#include "kernels/activation.h"

namespace tessera::kernels::cuda {

// out[r] = table[ids[r]] (dim floats); `table` is fp32, or bf16 when `table_bf16`.
int LaunchEmbedding(const void* table, bool table_bf16, const int32_t* ids, int64_t rows, int64_t dim, float* out,
                    void* stream);

// gate_up rows are [gate(inner) | up(inner)]; out = act(gate) ⊙ up, [rows, inner].
int LaunchGatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act, float* out,
                          void* stream);

// In place: x = act(x), rows x dim.
int LaunchActivation(float* x, int64_t rows, int64_t dim, Activation act, void* stream);

// Rotary embedding, "rotate_half" layout, in place on `heads` heads of `head_dim` in
// each row of x (row stride in elements), rotating the first `rot_dim` dims of each
// head. Row r is at position positions[r]: angle_j = float(pos) * inv_freq[j] (fp32,
// as torch), cos/sin in double, times `scale` (YaRN's attention factor; else 1). Every
// HF scaling variant differs only in inv_freq (models/rope.h computes it).
int LaunchRotary(float* x, int64_t rows, int64_t stride, int heads, int head_dim, int rot_dim,
                 const int32_t* positions, const float* inv_freq, float scale, void* stream);

// out = bf16(x), round to nearest even, n elements (out: uint16_t bit patterns).
int LaunchToBf16(const float* x, int64_t n, uint16_t* out, void* stream);

}  // namespace tessera::kernels::cuda
