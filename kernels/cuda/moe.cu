#include <cuda_runtime.h>

#include <cfloat>

#include "kernels/cuda/moe.cuh"

namespace tessera::kernels::cuda {
namespace {

constexpr int kMaxExperts = 256, kMaxK = 8;

// One warp per row: the softmax's max and sum by warp reductions, then k rounds of an
// arg-max over the probabilities not chosen yet.
__global__ void RouteKernel(const float* __restrict__ logits, int64_t rows, int experts, int k,
                            int32_t* __restrict__ ids, float* __restrict__ weights, bool renormalize) {
  const int64_t r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (r >= rows) return;
  const float* x = logits + r * experts;
  constexpr int kPerLane = kMaxExperts / 32;
  float p[kPerLane];
  float m = -FLT_MAX;
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < experts ? x[e] : -FLT_MAX;
    m = fmaxf(m, p[i]);
  }
  for (int o = 16; o > 0; o /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffffu, m, o));
  float sum = 0.0f;
  for (int i = 0; i < kPerLane; ++i) {
    const int e = lane + 32 * i;
    p[i] = e < experts ? expf(p[i] - m) : 0.0f;
    sum += p[i];
  }
  for (int o = 16; o > 0; o /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, o);
  for (int i = 0; i < kPerLane; ++i) p[i] = (lane + 32 * i) < experts ? p[i] / sum : -1.0f;

  float chosen_sum = 0.0f, chosen[kMaxK];
  int32_t chosen_id[kMaxK];
  for (int j = 0; j < k; ++j) {
    float best = -1.0f;
    int best_e = kMaxExperts;
    for (int i = 0; i < kPerLane; ++i) {
      const int e = lane + 32 * i;
      if (p[i] > best || (p[i] == best && e < best_e)) {
        best = p[i];
        best_e = e;
      }
    }
    for (int o = 16; o > 0; o /= 2) {
      const float other = __shfl_xor_sync(0xffffffffu, best, o);
      const int other_e = __shfl_xor_sync(0xffffffffu, best_e, o);
      if (other > best || (other == best && other_e < best_e)) {
        best = other;
        best_e = other_e;
      }
    }
    if (best_e % 32 == lane) p[best_e / 32] = -1.0f;  // taken
    chosen[j] = best;
    chosen_id[j] = best_e;
    chosen_sum += best;
  }
  if (lane == 0) {
    for (int j = 0; j < k; ++j) {
      ids[r * k + j] = chosen_id[j];
      weights[r * k + j] = renormalize ? chosen[j] / chosen_sum : chosen[j];
    }
  }
}

}  // namespace

int LaunchRouteTopK(const float* logits, int64_t rows, int experts, int k, int32_t* ids, float* weights,
                    bool renormalize, void* stream) {
  if (rows <= 0) return cudaSuccess;
  if (experts > kMaxExperts || k > kMaxK || k > experts) return static_cast<int>(cudaErrorInvalidValue);
  constexpr int kRowsPerBlock = 4;
  RouteKernel<<<static_cast<unsigned>((rows + kRowsPerBlock - 1) / kRowsPerBlock), kRowsPerBlock * 32, 0,
                static_cast<cudaStream_t>(stream)>>>(logits, rows, experts, k, ids, weights, renormalize);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tessera::kernels::cuda
