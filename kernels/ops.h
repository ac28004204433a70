// Element-wise and row-wise CPU ops of the transformer block, on fp32 buffers.
// Shapes are given as [rows, dim] with explicit row strides (in elements).
#pragma once

#include <cstdint>

#include "common/thread_pool.h"
#include "kernels/activation.h"

namespace tessera::kernels {

// out = w ⊙ x / sqrt(mean(x²) + eps), per row (HF RMSNorm, fp32).
void RmsNorm(const float* x, int64_t rows, int64_t x_stride, int64_t dim, const float* weight,
             float eps, float* out, int64_t out_stride);

// out = (x - mean) / sqrt(var + eps) ⊙ w + b, per row (biased variance, as torch).
void LayerNorm(const float* x, int64_t rows, int64_t x_stride, int64_t dim, const float* weight,
               const float* bias, float eps, float* out, int64_t out_stride);

// Gated MLP input: gate_up rows are [gate(inner) | up(inner)];
// out = act(gate) ⊙ up, [rows, inner].
void GatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act,
                     float* out, ThreadPool* pool);

// In place: x = act(x), [rows, dim] contiguous.
void ApplyActivation(float* x, int64_t rows, int64_t dim, Activation act, ThreadPool* pool);

// Rotary embedding in the "rotate_half" layout: dimension i pairs with i + rot_dim/2.
// cos/sin: [rot_dim/2] for this token's position. Rotates one head vector in place.
void ApplyRotary(float* head, const float* cos, const float* sin, int rot_dim);

// cos/sin [half] of position `pos` for inverse frequencies inv_freq[half], as torch:
// angle = float(pos) * inv_freq[j] in fp32, cos and sin in double, times `scale`
// (YaRN's attention factor; else 1).
void RotaryCosSin(const float* inv_freq, int half, int64_t pos, float scale, float* cos, float* sin);

// Softmax over a row of n logits, in place.
void Softmax(float* x, int n);

// MoE routing as HF: softmax over one row's expert logits (in place), then the k
// largest probabilities (ties: the lower expert), renormalised to sum to 1.
// ids, weights: [k], best first.
void RouteTopK(float* logits, int experts, int k, int32_t* ids, float* weights, bool renormalize = true);

}  // namespace tessera::kernels
