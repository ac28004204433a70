// CUDA normalisations, optionally fused with the residual add that precedes them in
// every transformer block. Host launchers only (STYLE.md §11): no CUDA types reach
// callers beyond a stream handle passed as void*. The CPU kernels in kernels/ops.h
// are their oracles (tests/cuda_kernels_test.cc).
#pragma once

#include <cstdint>

namespace tessera::kernels::cuda {

// Every launcher takes `stream`, a cudaStream_t (nullptr: the default stream), and
// returns a cudaError_t value (0 on success). Buffers are device memory, fp32,
// rows x dim, contiguous.

// With `delta`: residual += delta first (in place). Then
// out = w ⊙ residual / sqrt(mean(residual²) + eps) per row (HF RMSNorm).
int LaunchRmsNorm(float* residual, const float* delta, const float* weight, float* out, int64_t rows, int64_t dim,
                  float eps, void* stream);

// With `delta`: residual += delta first. Then out = (residual - mean) / sqrt(var + eps)
// ⊙ w + b per row (biased variance, as torch; `bias` may be null).
int LaunchLayerNorm(float* residual, const float* delta, const float* weight, const float* bias, float* out,
                    int64_t rows, int64_t dim, float eps, void* stream);

}  // namespace tessera::kernels::cuda
