// CUDA MoE routing as HF (kernels::RouteTopK is the oracle): softmax over each row's
// expert logits, the k largest (ties: the lower expert), renormalised to sum to 1 when
// `renormalize`.
// Conventions as in norms.cuh.
#pragma once

#include <cstdint>

namespace tessera::kernels::cuda {

// logits: [rows, experts] (unchanged); ids, weights: [rows, k], best first.
// experts <= 256, k <= 8.
int LaunchRouteTopK(const float* logits, int64_t rows, int experts, int k, int32_t* ids, float* weights,
                    bool renormalize, void* stream);

}  // namespace tessera::kernels::cuda
