// CUDA RMSNorm: host launcher only (no CUDA types leak to callers beyond a stream
// handle passed as void*). The CPU kernel in kernels/ops.h is its oracle.
#pragma once

#include <cstdint>

namespace tessera::kernels::cuda {

// out[r] = w ⊙ x[r] / sqrt(mean(x[r]²) + eps) for rows × dim fp32 device buffers.
// `stream` is a cudaStream_t (nullptr: the default stream). Returns a cudaError_t
// value (0 on success).
int LaunchRmsNorm(const float* x, const float* weight, float* out, int64_t rows, int64_t dim,
                  float eps, void* stream);

}  // namespace tessera::kernels::cuda
