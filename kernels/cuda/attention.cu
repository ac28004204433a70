#include <cuda_bf16.h>
#include <cuda_fp16.h>
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

// Element d of token `pos`'s K or V row: a head record is block_size rows of head_dim
// values, then (int8, fp8) their float scales (common/kv_dtype.h). The dtype is the
// same for the whole launch, so the switch never diverges.
__device__ int64_t KvIndex(const PagedKvView& kv, const int32_t* table, int kv_head, int64_t pos, int d,
                           int64_t* record) {
  *record = table[pos / kv.block_size] * kv.block_stride + kv_head * kv.head_stride;
  return (pos % kv.block_size) * kv.head_dim + d;
}

__device__ float LoadKv(const std::byte* base, const PagedKvView& kv, const int32_t* table, int kv_head, int64_t pos,
                        int d) {
  int64_t record;
  const int64_t i = KvIndex(kv, table, kv_head, pos, d, &record);
  const float* scales = reinterpret_cast<const float*>(base + record + kv.scales_offset);
  switch (kv.dtype) {
    case KvDtype::kBf16: return __bfloat162float(reinterpret_cast<const __nv_bfloat16*>(base + record)[i]);
    case KvDtype::kF16: return __half2float(reinterpret_cast<const __half*>(base + record)[i]);
    case KvDtype::kInt8: return reinterpret_cast<const int8_t*>(base + record)[i] * scales[pos % kv.block_size];
    case KvDtype::kFp8E4m3: return E4m3ToFloat(reinterpret_cast<const uint8_t*>(base + record)[i]) * scales[0];
    default: return reinterpret_cast<const float*>(base + record)[i];
  }
}

// Unscaled dtypes, element by element; rounds to nearest even, as the CPU's encoder
// (common/kv_dtype.h) does.
__device__ void StoreKv(std::byte* base, const PagedKvView& kv, const int32_t* table, int kv_head, int64_t pos, int d,
                        float x) {
  int64_t record;
  const int64_t i = KvIndex(kv, table, kv_head, pos, d, &record);
  switch (kv.dtype) {
    case KvDtype::kBf16: reinterpret_cast<__nv_bfloat16*>(base + record)[i] = __float2bfloat16_rn(x); break;
    case KvDtype::kF16: reinterpret_cast<__half*>(base + record)[i] = __float2half_rn(x); break;
    default: reinterpret_cast<float*>(base + record)[i] = x;
  }
}

__global__ void WriteKvKernel(const float* __restrict__ k, const float* __restrict__ v, int64_t stride,
                              PagedKvView kv, int num_kv_heads, DeviceRows rows) {
  const int64_t r = blockIdx.x;
  const int32_t* table = rows.block_tables + rows.table_offsets[r];
  const int64_t pos = rows.positions[r];
  for (int i = threadIdx.x; i < num_kv_heads * kv.head_dim; i += blockDim.x) {
    const int h = i / kv.head_dim, d = i % kv.head_dim;
    StoreKv(kv.k_base, kv, table, h, pos, d, k[r * stride + i]);
    StoreKv(kv.v_base, kv, table, h, pos, d, v[r * stride + i]);
  }
}

// The scaled dtypes, bit for bit the CPU's encoding (common/kv_encoding.h): one warp
// per (kv head, K or V, z), each taking every gridDim.z-th row. int8 rows are
// independent, so z spans the rows; fp8 launches one z, a warp encoding the rows in
// order as the CPU does, because a record's scale depends on the tokens written before
// it (raised, and those tokens re-encoded, when a later one would not fit).
__global__ void WriteScaledKvKernel(const float* __restrict__ k, const float* __restrict__ v, int64_t stride,
                                    PagedKvView kv, DeviceRows rows) {
  const int h = blockIdx.x, lane = threadIdx.x, dim = kv.head_dim;
  const float* src = blockIdx.y == 0 ? k : v;
  std::byte* base = blockIdx.y == 0 ? kv.k_base : kv.v_base;
  for (int64_t r = blockIdx.z; r < rows.count; r += gridDim.z) {
    const int32_t* table = rows.block_tables + rows.table_offsets[r];
    const int64_t pos = rows.positions[r];
    const int slot = static_cast<int>(pos % kv.block_size);
    std::byte* record = base + table[pos / kv.block_size] * kv.block_stride + h * kv.head_stride;
    float* scales = reinterpret_cast<float*>(record + kv.scales_offset);
    const float* x = src + r * stride + static_cast<int64_t>(h) * dim;
    float amax = 0.0f;
    for (int d = lane; d < dim; d += 32) amax = fmaxf(amax, fabsf(x[d]));
    for (int offset = 16; offset > 0; offset /= 2) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, offset));
    if (kv.dtype == KvDtype::kInt8) {
      const float inv = amax > 0.0f ? kInt8Max / amax : 0.0f;
      int8_t* q = reinterpret_cast<int8_t*>(record) + static_cast<int64_t>(slot) * dim;
      for (int d = lane; d < dim; d += 32) q[d] = Int8Encode(x[d], inv);
      if (lane == 0) scales[slot] = amax / kInt8Max;
      continue;
    }
    uint8_t* q = reinterpret_cast<uint8_t*>(record);
    float scale = scales[0];
    if (slot == 0) {
      scale = Fp8ScaleFor(amax);
    } else if (amax > scale * kE4m3Max) {
      const float raised = Fp8ScaleFor(amax), ratio = scale / raised;
      for (int64_t i = lane; i < static_cast<int64_t>(slot) * dim; i += 32) q[i] = FloatToE4m3(E4m3ToFloat(q[i]) * ratio);
      scale = raised;
    }
    const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
    for (int d = lane; d < dim; d += 32) q[static_cast<int64_t>(slot) * dim + d] = FloatToE4m3(x[d] * inv);
    __syncwarp();  // every lane has read the old scale
    if (lane == 0) scales[0] = scale;
    __syncwarp();  // and sees the new one for the next row
  }
}

// Block (row, head, split): kWarps warps walk the split's keys, one key per warp at a
// time (lanes split head_dim), each keeping an online-softmax state; the warps' states
// are merged at the end. With one split the result is final; otherwise (max, sum,
// unnormalised output) go to the workspace for MergeKernel.
__global__ void AttentionKernel(const float* __restrict__ q, int64_t q_stride, PagedKvView kv, AttentionShape shape,
                                DeviceRows rows, const int32_t* __restrict__ row_ids, int splits,
                                float* __restrict__ workspace, float* __restrict__ out, int64_t out_stride) {
  const int64_t r = row_ids[blockIdx.x];
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
    float s = 0.0f;
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + 32 * i;
      if (d < dim) s += qv[i] * LoadKv(kv.k_base, kv, table, kv_head, t, d);
    }
    for (int offset = 16; offset > 0; offset /= 2) s += __shfl_xor_sync(0xffffffffu, s, offset);
    const float m_new = fmaxf(m, s), correction = expf(m - m_new), p = expf(s - m_new);
    for (int i = 0; i < per_lane; ++i) {
      const int d = lane + 32 * i;
      acc[i] = acc[i] * correction + (d < dim ? p * LoadKv(kv.v_base, kv, table, kv_head, t, d) : 0.0f);
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
  const int64_t slot = (static_cast<int64_t>(blockIdx.x) * shape.num_heads + h) * splits + split;
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
__global__ void MergeKernel(const float* __restrict__ workspace, AttentionShape shape, const int32_t* __restrict__ row_ids,
                            int splits, float* __restrict__ out, int64_t out_stride) {
  const int64_t r = row_ids[blockIdx.x];
  const int h = blockIdx.y, dim = shape.head_dim;
  const float* state =
      workspace + (static_cast<int64_t>(blockIdx.x) * shape.num_heads + h) * splits * static_cast<int64_t>(dim + 2);
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


// Block (query tile, head): kTileWarps warps, each owning kPrefillTile / kTileWarps rows
// of the tile. Per key tile, the block stages kTileKeys keys and values in shared
// memory (K rows padded by one float so that lanes reading different keys hit
// different banks); lane j scores key j against each of its warp's rows, the warp
// updates the row's online softmax, and every lane accumulates its head_dim slice of
// p·V. Rows keep (max, sum, output) in registers until the last key.
constexpr int kTileKeys = 32;  // one per lane
constexpr int kTileWarps = 4;
constexpr int kRowsPerWarp = kPrefillTile / kTileWarps;

size_t PrefillSharedBytes(int head_dim) {
  return sizeof(float) * (static_cast<size_t>(kPrefillTile) * head_dim + kTileKeys * (head_dim + 1) +
                          static_cast<size_t>(kTileKeys) * head_dim);
}

__global__ void __launch_bounds__(kTileWarps * 32)
    PrefillKernel(const float* __restrict__ q, int64_t q_stride, PagedKvView kv, AttentionShape shape, DeviceRows rows,
                  const int32_t* __restrict__ tiles, float* __restrict__ out, int64_t out_stride) {
  extern __shared__ float smem[];
  const int dim = shape.head_dim, pitch = dim + 1;
  float* q_tile = smem;                                // [kPrefillTile][dim], pre-scaled
  float* k_tile = q_tile + kPrefillTile * dim;         // [kTileKeys][pitch]
  float* v_tile = k_tile + kTileKeys * pitch;          // [kTileKeys][dim]
  const int64_t first = tiles[2 * blockIdx.x];
  const int count = tiles[2 * blockIdx.x + 1];
  const int h = blockIdx.y;
  const int kv_head = h / (shape.num_heads / shape.num_kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int32_t* table = rows.block_tables + rows.table_offsets[first];
  const int64_t pos0 = rows.positions[first], last = pos0 + count - 1;
  const int64_t lo0 = shape.window > 0 ? max(static_cast<int64_t>(0), pos0 - shape.window + 1) : 0;

  for (int i = threadIdx.x; i < count * dim; i += blockDim.x) {
    const int row = i / dim, d = i % dim;
    q_tile[i] = q[(first + row) * q_stride + static_cast<int64_t>(h) * dim + d] * shape.scale;
  }

  float m[kRowsPerWarp], l[kRowsPerWarp], acc[kRowsPerWarp][kMaxHeadDim / 32];
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    m[i] = -FLT_MAX;
    l[i] = 0.0f;
#pragma unroll
    for (int c = 0; c < kMaxHeadDim / 32; ++c) acc[i][c] = 0.0f;
  }

  for (int64_t t0 = lo0; t0 <= last; t0 += kTileKeys) {
    __syncthreads();  // the previous tile is consumed (and, the first time, q_tile written)
    for (int i = threadIdx.x; i < kTileKeys * dim; i += blockDim.x) {
      const int j = i / dim, d = i % dim;
      const int64_t t = t0 + j;
      const bool present = t <= last;
      k_tile[j * pitch + d] = present ? LoadKv(kv.k_base, kv, table, kv_head, t, d) : 0.0f;
      v_tile[j * dim + d] = present ? LoadKv(kv.v_base, kv, table, kv_head, t, d) : 0.0f;
    }
    __syncthreads();
    const int64_t t = t0 + lane;  // this lane's key
#pragma unroll
    for (int i = 0; i < kRowsPerWarp; ++i) {
      const int row = warp * kRowsPerWarp + i;
      if (row >= count) continue;  // uniform across the warp
      const int64_t p = pos0 + row;
      const int64_t lo = shape.window > 0 ? max(static_cast<int64_t>(0), p - shape.window + 1) : 0;
      const bool visible = t >= lo && t <= p;
      float s = -FLT_MAX;
      if (visible) {
        s = 0.0f;
        const float* qr = q_tile + row * dim;
        const float* kr = k_tile + lane * pitch;
        for (int d = 0; d < dim; ++d) s += qr[d] * kr[d];
      }
      float tile_max = s;
      for (int offset = 16; offset > 0; offset /= 2) tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, offset));
      if (tile_max == -FLT_MAX) continue;  // no key of this tile is visible to the row
      const float m_new = fmaxf(m[i], tile_max), correction = expf(m[i] - m_new);
      const float prob = visible ? expf(s - m_new) : 0.0f;
      float sum = prob;
      for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
      l[i] = l[i] * correction + sum;
      m[i] = m_new;
#pragma unroll
      for (int c = 0; c < kMaxHeadDim / 32; ++c) acc[i][c] *= correction;
      for (int j = 0; j < kTileKeys; ++j) {
        const float pj = __shfl_sync(0xffffffffu, prob, j);
        const float* vr = v_tile + j * dim;
#pragma unroll
        for (int c = 0; c < kMaxHeadDim / 32; ++c) {
          const int d = lane + 32 * c;
          if (d < dim) acc[i][c] += pj * vr[d];
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < kRowsPerWarp; ++i) {
    const int row = warp * kRowsPerWarp + i;
    if (row >= count) continue;
    float* o = out + (first + row) * out_stride + static_cast<int64_t>(h) * dim;
#pragma unroll
    for (int c = 0; c < kMaxHeadDim / 32; ++c) {
      const int d = lane + 32 * c;
      if (d < dim) o[d] = l[i] > 0.0f ? acc[i][c] / l[i] : 0.0f;
    }
  }
}

}  // namespace

AttentionPlan PlanAttention(const int64_t* new_tokens, int64_t sequences) {
  AttentionPlan plan;
  int32_t row = 0;
  for (int64_t s = 0; s < sequences; ++s) {
    const int32_t n = static_cast<int32_t>(new_tokens[s]);
    if (n >= kMinTiledRows) {
      for (int32_t first = 0; first < n; first += kPrefillTile) {
        plan.tiles.push_back(row + first);
        plan.tiles.push_back(std::min(kPrefillTile, n - first));
      }
    } else {
      for (int32_t i = 0; i < n; ++i) plan.single_rows.push_back(row + i);
    }
    row += n;
  }
  return plan;
}

int LaunchWriteKv(const float* k, const float* v, int64_t stride, const PagedKvView& kv, int num_kv_heads,
                  const DeviceRows& rows, void* stream) {
  if (rows.count <= 0) return cudaSuccess;
  if (kv.dtype == KvDtype::kInt8 || kv.dtype == KvDtype::kFp8E4m3) {
    const unsigned z = kv.dtype == KvDtype::kInt8 ? static_cast<unsigned>(std::min<int64_t>(rows.count, 65535)) : 1;
    WriteScaledKvKernel<<<dim3(static_cast<unsigned>(num_kv_heads), 2, z), 32, 0, static_cast<cudaStream_t>(stream)>>>(
        k, v, stride, kv, rows);
  } else {
    WriteKvKernel<<<static_cast<unsigned>(rows.count), 128, 0, static_cast<cudaStream_t>(stream)>>>(k, v, stride, kv,
                                                                                                   num_kv_heads, rows);
  }
  return static_cast<int>(cudaGetLastError());
}

int64_t PagedAttentionWorkspace(int64_t single_rows, const AttentionShape& shape, int64_t max_keys) {
  const int splits = Splits(max_keys);
  return splits == 1 ? 0 : single_rows * shape.num_heads * splits * static_cast<int64_t>(shape.head_dim + 2);
}

int LaunchPagedAttention(const float* q, int64_t q_stride, const PagedKvView& kv, const AttentionShape& shape,
                         const DeviceRows& rows, const DevicePlan& plan, int64_t max_keys, float* workspace,
                         float* out, int64_t out_stride, void* stream) {
  if (shape.head_dim > kMaxHeadDim || shape.num_kv_heads <= 0 || shape.num_heads % shape.num_kv_heads != 0) {
    return static_cast<int>(cudaErrorInvalidValue);
  }
  auto s = static_cast<cudaStream_t>(stream);
  if (plan.num_tiles > 0) {
    const size_t shared = PrefillSharedBytes(shape.head_dim);
    if (shared > 48 * 1024) {  // beyond the default: opt in (head_dim > 128)
      const cudaError_t e =
          cudaFuncSetAttribute(PrefillKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(shared));
      if (e != cudaSuccess) return static_cast<int>(e);
    }
    PrefillKernel<<<dim3(static_cast<unsigned>(plan.num_tiles), shape.num_heads), kTileWarps * 32, shared, s>>>(
        q, q_stride, kv, shape, rows, plan.tiles, out, out_stride);
  }
  if (plan.num_single > 0) {
    const int splits = Splits(max_keys);
    AttentionKernel<<<dim3(static_cast<unsigned>(plan.num_single), shape.num_heads, splits), kWarps * 32, 0, s>>>(
        q, q_stride, kv, shape, rows, plan.single_rows, splits, workspace, out, out_stride);
    if (splits > 1) {
      MergeKernel<<<dim3(static_cast<unsigned>(plan.num_single), shape.num_heads), 128, 0, s>>>(
          workspace, shape, plan.single_rows, splits, out, out_stride);
    }
  }
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tessera::kernels::cuda
