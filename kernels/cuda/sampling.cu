#include <cuda_runtime.h>

#include <cfloat>
#include <cub/device/device_segmented_radix_sort.cuh>

#include "kernels/cuda/sampling.cuh"

namespace tessera::kernels::cuda {
namespace {

constexpr int kThreads = 256;

size_t Align(size_t n) { return (n + 255) / 256 * 256; }

// The workspace: probabilities and token ids, sorted copies, segment offsets, CUB's.
struct Workspace {
  float *probs, *sorted_probs;
  int32_t *ids, *sorted_ids, *offsets;
  void* cub;
  size_t cub_bytes;
};

size_t CubBytes(int64_t rows, int32_t vocab) {
  size_t bytes = 0;
  cub::DeviceSegmentedRadixSort::SortPairsDescending(nullptr, bytes, static_cast<const float*>(nullptr),
                                                     static_cast<float*>(nullptr), static_cast<const int32_t*>(nullptr),
                                                     static_cast<int32_t*>(nullptr), static_cast<int>(rows * vocab),
                                                     static_cast<int>(rows), static_cast<const int32_t*>(nullptr),
                                                     static_cast<const int32_t*>(nullptr) + 1);
  return bytes;
}

Workspace Carve(void* base, int64_t rows, int32_t vocab) {
  char* p = static_cast<char*>(base);
  const size_t n = static_cast<size_t>(rows) * vocab;
  Workspace w{};
  w.probs = reinterpret_cast<float*>(p);
  p += Align(n * sizeof(float));
  w.sorted_probs = reinterpret_cast<float*>(p);
  p += Align(n * sizeof(float));
  w.ids = reinterpret_cast<int32_t*>(p);
  p += Align(n * sizeof(int32_t));
  w.sorted_ids = reinterpret_cast<int32_t*>(p);
  p += Align(n * sizeof(int32_t));
  w.offsets = reinterpret_cast<int32_t*>(p);
  p += Align((rows + 1) * sizeof(int32_t));
  w.cub = p;
  w.cub_bytes = CubBytes(rows, vocab);
  return w;
}

// The block's max of `v` (every thread gets it).
__device__ float BlockMax(float v) {
  __shared__ float warp[kThreads / 32];
  __shared__ float result;
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if (threadIdx.x % 32 == 0) warp[threadIdx.x / 32] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    float m = warp[0];
    for (int i = 1; i < kThreads / 32; ++i) m = fmaxf(m, warp[i]);
    result = m;
  }
  __syncthreads();
  return result;
}

// Per row: penalties, then (greedy) the first arg-max, or the probabilities at
// temperature T with their token ids, for the sort and the draw.
__global__ void PrepareKernel(float* __restrict__ logits, int32_t vocab, const SampleRow* __restrict__ cfg,
                              const int32_t* __restrict__ penalty_tokens, const int32_t* __restrict__ penalty_counts,
                              Workspace w, int32_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const SampleRow row = cfg[r];
  const SamplingConfig& c = row.config;
  float* l = logits + r * vocab;
  for (int i = threadIdx.x; i < row.penalty_count; i += blockDim.x) {
    const int32_t t = penalty_tokens[row.penalty_offset + i], n = penalty_counts[row.penalty_offset + i];
    if (t < 0 || t >= vocab) continue;
    float v = l[t];
    if (c.repetition_penalty != 1.0f) v = v > 0 ? v / c.repetition_penalty : v * c.repetition_penalty;
    if (n > 0) v -= c.frequency_penalty * static_cast<float>(n) + c.presence_penalty;
    l[t] = v;
  }
  __syncthreads();
  float local = -FLT_MAX;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) local = fmaxf(local, l[i]);
  const float mx = BlockMax(local);
  if (threadIdx.x == 0) w.offsets[r] = static_cast<int32_t>(r * vocab);
  if (threadIdx.x == 0 && r == gridDim.x - 1) w.offsets[r + 1] = static_cast<int32_t>((r + 1) * vocab);
  if (c.temperature <= 0.0f) {
    if (threadIdx.x == 0) {  // the first maximum, as std::max_element
      int32_t best = 0;
      while (best < vocab - 1 && l[best] != mx) ++best;
      out[r] = best;
    }
    return;
  }
  const float inv_t = 1.0f / c.temperature;
  for (int i = threadIdx.x; i < vocab; i += blockDim.x) {
    w.probs[r * vocab + i] = expf((l[i] - mx) * inv_t);
    w.ids[r * vocab + i] = i;
  }
}

// Per row, one thread, in the CPU's order: the truncations over the sorted candidates
// (or none, over the tokens in id order), then the draw.
__global__ void DrawKernel(int32_t vocab, const SampleRow* __restrict__ cfg, Workspace w, bool sorted,
                           int32_t* __restrict__ out) {
  const int64_t r = blockIdx.x;
  const SampleRow row = cfg[r];
  const SamplingConfig& c = row.config;
  if (threadIdx.x != 0 || c.temperature <= 0.0f) return;
  const bool truncate = c.top_k > 0 || c.top_p < 1.0f || c.min_p > 0.0f;
  const float* p = (truncate && sorted ? w.sorted_probs : w.probs) + r * vocab;
  const int32_t* ids = (truncate && sorted ? w.sorted_ids : w.ids) + r * vocab;
  int64_t keep = vocab;
  double sum = 0.0;
  if (truncate) {
    if (c.top_k > 0 && c.top_k < vocab) keep = c.top_k;
    double kept = 0.0;
    for (int64_t i = 0; i < keep; ++i) kept += p[i];
    if (c.top_p < 1.0f) {
      double cumulative = 0.0;
      for (int64_t i = 0; i < keep; ++i) {
        cumulative += p[i] / kept;
        if (cumulative >= c.top_p) {
          keep = i + 1;
          break;
        }
      }
    }
    if (c.min_p > 0.0f) {
      const float threshold = c.min_p * p[0];
      int64_t i = 1;
      while (i < keep && p[i] >= threshold) ++i;
      keep = i;
    }
  }
  for (int64_t i = 0; i < keep; ++i) sum += p[i];
  const double target = row.uniform * sum;
  double cumulative = 0.0;
  int32_t token = ids[keep - 1];
  for (int64_t i = 0; i < keep; ++i) {
    cumulative += p[i];
    if (cumulative > target) {
      token = ids[i];
      break;
    }
  }
  out[r] = token;
}

}  // namespace

size_t SampleWorkspaceBytes(int64_t rows, int32_t vocab) {
  const size_t n = static_cast<size_t>(rows) * vocab;
  return 2 * Align(n * sizeof(float)) + 2 * Align(n * sizeof(int32_t)) + Align((rows + 1) * sizeof(int32_t)) +
         CubBytes(rows, vocab);
}

int LaunchSample(float* logits, int64_t rows, int32_t vocab, const SampleRow* rows_cfg,
                 const int32_t* penalty_tokens, const int32_t* penalty_counts, void* workspace,
                 size_t workspace_bytes, int32_t* out_tokens, void* stream) {
  if (rows <= 0) return cudaSuccess;
  if (workspace_bytes < SampleWorkspaceBytes(rows, vocab)) return static_cast<int>(cudaErrorInvalidValue);
  auto s = static_cast<cudaStream_t>(stream);
  const Workspace w = Carve(workspace, rows, vocab);
  PrepareKernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(logits, vocab, rows_cfg, penalty_tokens,
                                                                  penalty_counts, w, out_tokens);
  // Every row sorted (rows without truncation read the unsorted copy): one launch.
  size_t cub_bytes = w.cub_bytes;
  const cudaError_t sorted = cub::DeviceSegmentedRadixSort::SortPairsDescending(
      w.cub, cub_bytes, w.probs, w.sorted_probs, w.ids, w.sorted_ids, static_cast<int>(rows * vocab),
      static_cast<int>(rows), w.offsets, w.offsets + 1, 0, static_cast<int>(sizeof(float) * 8), s);
  if (sorted != cudaSuccess) return static_cast<int>(sorted);
  DrawKernel<<<static_cast<unsigned>(rows), 32, 0, s>>>(vocab, rows_cfg, w, true, out_tokens);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace tessera::kernels::cuda
