#include <cuda_runtime.h>

#include "kernels/cuda/norms.cuh"

namespace tessera::kernels::cuda {
namespace {

constexpr int kThreads = 256;

// The sum of `v` over the block, returned to every thread.
__device__ float BlockSum(float v) {
  __shared__ float warp_sums[kThreads / 32];
  __shared__ float total;
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  if (threadIdx.x % 32 == 0) warp_sums[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x < 32) {
    v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (threadIdx.x == 0) total = v;
  }
  __syncthreads();
  const float result = total;
  __syncthreads();  // the shared slots may be reused by the next call
  return result;
}

// One block per row. The fused residual add writes the row back before reading it.
__global__ void RmsNormKernel(float* __restrict__ residual, const float* __restrict__ delta,
                              const float* __restrict__ w, float* __restrict__ out, int64_t dim, float eps) {
  float* x = residual + blockIdx.x * dim;
  float* o = out + blockIdx.x * dim;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    if (delta != nullptr) x[i] += delta[blockIdx.x * dim + i];
    sum += x[i] * x[i];
  }
  const float inv = rsqrtf(BlockSum(sum) / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) o[i] = w[i] * (x[i] * inv);
}

__global__ void LayerNormKernel(float* __restrict__ residual, const float* __restrict__ delta,
                                const float* __restrict__ w, const float* __restrict__ b, float* __restrict__ out,
                                int64_t dim, float eps) {
  float* x = residual + blockIdx.x * dim;
  float* o = out + blockIdx.x * dim;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    if (delta != nullptr) x[i] += delta[blockIdx.x * dim + i];
    sum += x[i];
  }
  const float mean = BlockSum(sum) / static_cast<float>(dim);
  float sq = 0.0f;
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) sq += (x[i] - mean) * (x[i] - mean);
  const float inv = rsqrtf(BlockSum(sq) / static_cast<float>(dim) + eps);
  for (int64_t i = threadIdx.x; i < dim; i += blockDim.x) {
    o[i] = (x[i] - mean) * inv * w[i] + (b != nullptr ? b[i] : 0.0f);
  }
}

}  // namespace

int LaunchRmsNorm(float* residual, const float* delta, const float* weight, float* out, int64_t rows, int64_t dim,
                  float eps, void* stream) {
  if (rows <= 0) return cudaSuccess;
  RmsNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(residual, delta,
                                                                                                 weight, out, dim, eps);
  return static_cast<int>(cudaGetLastError());
}

int LaunchLayerNorm(float* residual, const float* delta, const float* weight, const float* bias, float* out,
                    int64_t rows, int64_t dim, float eps, void* stream) {
  if (rows <= 0) return cudaSuccess;
  LayerNormKernel<<<static_cast<unsigned>(rows), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      residual, delta, weight, bias, out, dim, eps);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tessera::kernels::cuda
