#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>

#include "kernels/cuda/attention.cuh"

namespace tessera::kernels::cuda {
namespace {

constexpr int kWarps = 4;               // per thread block; each walks every kWarps-th key
constexpr int kMaxHeadDim = 256;        // 8 accumulators per lane
constexpr int kKeysPerSplit = 256;      // a split's share of a long context
constexpr int kMaxSplits = 32;

int Splits(int64_t max_keys) {
  return static_cast<int>(std::clamp<int64_t>((max_keys + kKeysPerSplit - 1) / kKeysPerSplit, 1, kMaxSplits));
}

__device__ const float* KeyOrValue(const float* base, const PagedKvView& kv, const int32_t* table, int kv_head,
                                   int64_t pos) {
  const int64_t block = table[pos / kv.block_size];
  return base + block * kv.block_stride + kv_head * kv.head_stride + (pos % kv.block_size) * kv.head_dim;
}

__global__ void WriteKvKernel(const float* __restrict__ k, const float* __restrict__ v, int64_t stride,
                              PagedKvView kv, int num_kv_heads, DeviceRows rows) {
  const int64_t r = blockIdx.x;
  const int32_t* table = rows.block_tables + rows.table_offsets[r];
  const int64_t pos = rows.positions[r];
  for (int i = threadIdx.x; i < num_kv_heads * kv.head_dim; i += blockDim.x) {
    const int h = i / kv.head_dim, d = i % kv.head_dim;
    const_cast<float*>(KeyOrValue(kv.k_base, kv, table, h, pos))[d] = k[r * stride + i];
    const_cast<float*>(KeyOrValue(kv.v_base, kv, table, h, pos))[d] = v[r * stride + i];
  }
}

// Block (row, head, split): kWarps warps walk the split's keys, one key per warp at a
// time (lanes split head_dim), each keeping an online-softmax state; the warps' states
// are merged at the end. With one split the result is final; otherwise (max, sum,
// unnormalised output) go to the workspace for MergeKernel.
__global__ void AttentionKernel(const float* __restrict__ q, int64_t q_stride, PagedKvView kv, AttentionShape shape,
                                DeviceRows rows, int splits, float* __restrict__ workspace, float* __restrict__ out,
                                int64_t out_stride) {
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y, split = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int dim = shape.head_dim, per_lane = (dim + 31) / 32;
  const int kv_head = h / (shape.num_heads / shape.num_kv_heads);
  const int32_t* table = rows.block_tables + rows.table_offsets[r];
  const int64_t pos = rows.positions[r];
  const int64_t lo = shape.window > 0 ? max(static_cast<int64_t>(0), pos - shape.window + 1) : 0;
  const int64_t n = pos - lo + 1, chunk = (n + splits - 1) / splits;
  const int64_t begin = lo + split * chunk, end = min(pos + 1, begin + chunk);

  float qv[kMaxHeadDim / 32], acc[kMaxHeadDim / 32];
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + 32 * i;
    qv[i] = d < dim ? q[r * q_stride + static_cast<int64_t>(h) * dim + d] * shape.scale : 0.0f;
    acc[i] = 0.0f;
  }
  float m = -FLT_MAX, l = 0.0f;
  for (int64_t t = begin + warp; t < end; t += kWarps) {
    const float* key = KeyOrValue(kv.k_base, kv, table, kv_head, t);
    float s = 0.0f;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + 32 * i;
      if (d < dim) s += qv[i] * key[d];
    }
    for (int offset = 16; offset > 0; offset /= 2) s += __shfl_xor_sync(0xffffffffu, s, offset);
    const float m_new = fmaxf(m, s), correction = expf(m - m_new), p = expf(s - m_new);
    const float* value = KeyOrValue(kv.v_base, kv, table, kv_head, t);
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + 32 * i;
      acc[i] = acc[i] * correction + (d < dim ? p * value[d] : 0.0f);
    }
    l = l * correction + p;
    m = m_new;
  }

  // Merge the warps: shared (m, l) per warp, then each warp's output rescaled.
  __shared__ float warp_m[kWarps], warp_l[kWarps];
  __shared__ float warp_acc[kWarps][kMaxHeadDim];
  if (lane == 0) {
    warp_m[warp] = m;
    warp_l[warp] = l;
  }
  for (int i = 0; i < per_lane; ++i) {
    const int d = lane + 32 * i;
    if (d < dim) warp_acc[warp][d] = acc[i];
  }
  __syncthreads();
  float m_all = -FLT_MAX;
  for (int w = 0; w < kWarps; ++w) m_all = fmaxf(m_all, warp_m[w]);
  float l_all = 0.0f;
  for (int w = 0; w < kWarps; ++w) l_all += warp_l[w] * (warp_l[w] > 0.0f ? expf(warp_m[w] - m_all) : 0.0f);
  const int64_t slot = (r * shape.num_heads + h) * splits + split;
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float o = 0.0f;
    for (int w = 0; w < kWarps; ++w) o += warp_l[w] > 0.0f ? warp_acc[w][d] * expf(warp_m[w] - m_all) : 0.0f;
    if (splits == 1) {
      out[r * out_stride + static_cast<int64_t>(h) * dim + d] = l_all > 0.0f ? o / l_all : 0.0f;
    } else {
      workspace[slot * (dim + 2) + 2 + d] = o;
    }
  }
  if (splits > 1 && threadIdx.x == 0) {
    workspace[slot * (dim + 2)] = m_all;
    workspace[slot * (dim + 2) + 1] = l_all;
  }
}

// Block (row, head): the splits' states, merged.
__global__ void MergeKernel(const float* __restrict__ workspace, AttentionShape shape, int splits,
                            float* __restrict__ out, int64_t out_stride) {
  const int64_t r = blockIdx.x;
  const int h = blockIdx.y, dim = shape.head_dim;
  const float* state = workspace + (r * shape.num_heads + h) * splits * static_cast<int64_t>(dim + 2);
  float m = -FLT_MAX;
  for (int s = 0; s < splits; ++s) m = fmaxf(m, state[s * (dim + 2)]);
  float l = 0.0f;
  for (int s = 0; s < splits; ++s) {
    const float ls = state[s * (dim + 2) + 1];
    if (ls > 0.0f) l += ls * expf(state[s * (dim + 2)] - m);
  }
  for (int d = threadIdx.x; d < dim; d += blockDim.x) {
    float o = 0.0f;
    for (int s = 0; s < splits; ++s) {
      const float* st = state + s * (dim + 2);
      if (st[1] > 0.0f) o += st[2 + d] * expf(st[0] - m);
    }
    out[r * out_stride + static_cast<int64_t>(h) * dim + d] = l > 0.0f ? o / l : 0.0f;
  }
}

}  // namespace

int LaunchWriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv, int num_kv_heads,
                  const DeviceRows& rows, void* stream) {
  if (rows.count <= 0) return cudaSuccess;
  WriteKvKernel<<<static_cast<unsigned>(rows.count), 128, 0, static_cast<cudaStream_t>(stream)>>>(k, v, stride, kv,
                                                                                                 num_kv_heads, rows);
  return static_cast<int>(cudaGetLastError());
}

int64_t PagedAttentionWorkspace(int64_t rows, const AttentionShape& shape, int64_t max_keys) {
  const int splits = Splits(max_keys);
  return splits == 1 ? 0 : rows * shape.num_heads * splits * static_cast<int64_t>(shape.head_dim + 2);
}

int LaunchPagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv, const AttentionShape& shape,
                         const DeviceRows& rows, int64_t max_keys, float* workspace, float* out, int64_t out_stride,
                         void* stream) {
  if (rows.count <= 0) return cudaSuccess;
  if (shape.head_dim > kMaxHeadDim || shape.num_kv_heads <= 0 || shape.num_heads % shape.num_kv_heads != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  const int splits = Splits(max_keys);
  auto s = static_cast<cudaStream_t>(stream);
  AttentionKernel<<<dim3(static_cast<unsigned>(rows.count), shape.num_heads, splits), kWarps * 32, 0, s>>>(
      q, q_stride, kv, shape, rows, splits, workspace, out, out_stride);
  if (splits > 1) {
    MergeKernel<<<dim3(static_cast<unsigned>(rows.count), shape.num_heads), 128, 0, s>>>(workspace, shape, splits,
                                                                                       out, out_stride);
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tessera::kernels::cuda
