#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include "kernels/cuda/elementwise.cuh"

namespace tessera::kernels::cuda {
namespace {

constexpr int kThreads = 256;

unsigned Blocks(int64_t n) { return static_cast<unsigned>((n + kThreads - 1) / kThreads); }

// The same formulas as kernels/cpu/ops.cc.
__device__ float Act(float x, Activation act) {
  switch (act) {
    case Activation::kSilu: return x / (1.0f + expf(-x));
    case Activation::kGeluTanh: {
      const float c = 0.7978845608028654f;  // sqrt(2/pi)
      return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
    }
    case Activation::kGeluErf: return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
    case Activation::kRelu: return x > 0.0f ? x : 0.0f;
  }
  return x;
}

// Row kernels: blockIdx.x is the row (rows may exceed gridDim.y's 65535), blockIdx.y
// the chunk of the row.
__global__ void EmbeddingKernel(const void* __restrict__ table, bool bf16, int64_t id0, int64_t table_rows,
                                const int32_t* __restrict__ ids, int64_t dim, float* __restrict__ out) {
  const int64_t row = blockIdx.x;
  const int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= dim) return;
  const int64_t local = static_cast<int64_t>(ids[row]) - id0;
  if (local < 0 || local >= table_rows) {
    out[row * dim + i] = 0.0f;
    return;
  }
  const int64_t src = local * dim + i;
  out[row * dim + i] = bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(table)[src])
                            : static_cast<const float*>(table)[src];
}

__global__ void GatedKernel(const float* __restrict__ gate_up, int64_t rows, int64_t inner, Activation act,
                            float* __restrict__ out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= rows * inner) return;
  const int64_t r = i / inner, c = i % inner;
  out[i] = Act(gate_up[r * 2 * inner + c], act) * gate_up[r * 2 * inner + inner + c];
}

__global__ void ActivationKernel(float* __restrict__ x, int64_t n, Activation act) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] = Act(x[i], act);
}

// One block per row; thread j of a head rotates the pair (j, j + rot_dim/2).
__global__ void RotaryKernel(float* __restrict__ x, int64_t stride, int heads, int head_dim, int rot_dim,
                             const int32_t* __restrict__ positions, const float* __restrict__ freqs,
                             int64_t freq_stride, float scale, const float* __restrict__ xpos_zeta,
                             float xpos_scale_base, int q_heads) {
  const int half = rot_dim / 2;
  const float* inv_freq = freqs + blockIdx.x * freq_stride;
  const float pos = static_cast<float>(positions[blockIdx.x]);
  for (int t = threadIdx.x; t < heads * half; t += blockDim.x) {
    const int h = t / half, j = t % half;
    const float angle = pos * inv_freq[j];
    const float c = static_cast<float>(cos(static_cast<double>(angle))) * scale;
    const float s = static_cast<float>(sin(static_cast<double>(angle))) * scale;
    float* head = x + blockIdx.x * stride + static_cast<int64_t>(h) * head_dim;
    const float a = head[j], b = head[j + half];
    float xpos = 1.0f;
    if (xpos_zeta != nullptr) {
      const double power = static_cast<double>(positions[blockIdx.x]) / xpos_scale_base;
      xpos = static_cast<float>(pow(static_cast<double>(xpos_zeta[j]), h < q_heads ? power : -power));
    }
    head[j] = (a * c - b * s) * xpos;
    head[j + half] = (b * c + a * s) * xpos;
  }
}

__global__ void AddBiasKernel(float* __restrict__ y, const float* __restrict__ bias, int64_t rows, int64_t n) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < rows * n) y[i] += bias[i % n];
}

__global__ void GatherRowsKernel(const float* __restrict__ src, const int32_t* __restrict__ rows, int64_t dim,
                                 float* __restrict__ dst) {
  const int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < dim) dst[blockIdx.x * dim + i] = src[static_cast<int64_t>(rows[blockIdx.x]) * dim + i];
}

__global__ void AddResidualKernel(float* __restrict__ residual, const float* __restrict__ partial,
                                  const float* __restrict__ bias, int64_t n, int64_t dim) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) residual[i] += partial[i] + (bias != nullptr ? bias[i % dim] : 0.0f);
}

__global__ void ScaleKernel(float* __restrict__ x, int64_t n, float alpha) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) x[i] *= alpha;
}

__global__ void CombineRowsKernel(const float* __restrict__ src, const int32_t* __restrict__ slots,
                                  const float* __restrict__ weights, int k, int64_t dim, float* __restrict__ out) {
  const int64_t i = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= dim) return;
  const int64_t row = blockIdx.x;
  float acc = 0.0f;
  for (int j = 0; j < k; ++j) {
    const int32_t slot = slots[row * k + j];
    // Rounded multiply, then add (no fused multiply-add): the CPU's combine, bit for bit.
    if (slot >= 0) acc = __fadd_rn(acc, __fmul_rn(weights[row * k + j], src[static_cast<int64_t>(slot) * dim + i]));
  }
  out[row * dim + i] = acc;
}

__global__ void ToBf16Kernel(const float* __restrict__ x, int64_t n, __nv_bfloat16* __restrict__ out) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i < n) out[i] = __float2bfloat16_rn(x[i]);
}

}  // namespace

int LaunchEmbedding(const void* table, bool table_bf16, int64_t id0, int64_t table_rows, const int32_t* ids,
                    int64_t rows, int64_t dim, float* out, void* stream) {
  if (rows <= 0) return cudaSuccess;
  EmbeddingKernel<<<dim3(static_cast<unsigned>(rows), Blocks(dim)), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      table, table_bf16, id0, table_rows, ids, dim, out);
  return static_cast<int>(cudaGetLastError());
}

int LaunchGatedActivation(const float* gate_up, int64_t rows, int64_t inner, Activation act, float* out,
                          void* stream) {
  if (rows * inner <= 0) return cudaSuccess;
  GatedKernel<<<Blocks(rows * inner), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(gate_up, rows, inner, act,
                                                                                         out);
  return static_cast<int>(cudaGetLastError());
}

int LaunchActivation(float* x, int64_t rows, int64_t dim, Activation act, void* stream) {
  if (rows * dim <= 0) return cudaSuccess;
  ActivationKernel<<<Blocks(rows * dim), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, rows * dim, act);
  return static_cast<int>(cudaGetLastError());
}

int LaunchRotary(float* x, int64_t rows, int64_t stride, int heads, int head_dim, int rot_dim,
                 const int32_t* positions, const float* inv_freq, int64_t inv_freq_stride, float scale,
                 const float* xpos_zeta, float xpos_scale_base, int q_heads, void* stream) {
  if (rows <= 0) return cudaSuccess;
  RotaryKernel<<<static_cast<unsigned>(rows), 128, 0, static_cast<cudaStream_t>(stream)>>>(
      x, stride, heads, head_dim, rot_dim, positions, inv_freq, inv_freq_stride, scale, xpos_zeta, xpos_scale_base,
      q_heads);
  return static_cast<int>(cudaGetLastError());
}

int LaunchAddBias(float* y, const float* bias, int64_t rows, int64_t n, void* stream) {
  if (rows * n <= 0) return cudaSuccess;
  AddBiasKernel<<<Blocks(rows * n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(y, bias, rows, n);
  return static_cast<int>(cudaGetLastError());
}

int LaunchGatherRows(const float* src, const int32_t* rows, int64_t count, int64_t dim, float* dst, void* stream) {
  if (count <= 0) return cudaSuccess;
  GatherRowsKernel<<<dim3(static_cast<unsigned>(count), Blocks(dim)), kThreads, 0,
                     static_cast<cudaStream_t>(stream)>>>(src, rows, dim, dst);
  return static_cast<int>(cudaGetLastError());
}

int LaunchAddResidual(float* residual, const float* partial, const float* bias, int64_t rows, int64_t dim,
                      void* stream) {
  if (rows * dim <= 0) return cudaSuccess;
  AddResidualKernel<<<Blocks(rows * dim), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(residual, partial, bias,
                                                                                             rows * dim, dim);
  return static_cast<int>(cudaGetLastError());
}

int LaunchScale(float* x, int64_t n, float alpha, void* stream) {
  if (n <= 0) return cudaSuccess;
  ScaleKernel<<<Blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, n, alpha);
  return static_cast<int>(cudaGetLastError());
}

int LaunchCombineRows(const float* src, const int32_t* slots, const float* weights, int64_t rows, int k,
                      int64_t dim, float* out, void* stream) {
  if (rows <= 0) return cudaSuccess;
  CombineRowsKernel<<<dim3(static_cast<unsigned>(rows), Blocks(dim)), kThreads, 0,
                      static_cast<cudaStream_t>(stream)>>>(src, slots, weights, k, dim, out);
  return static_cast<int>(cudaGetLastError());
}

int LaunchToBf16(const float* x, int64_t n, uint16_t* out, void* stream) {
  if (n <= 0) return cudaSuccess;
  ToBf16Kernel<<<Blocks(n), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, n, reinterpret_cast<__nv_bfloat16*>(out));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tessera::kernels::cuda
