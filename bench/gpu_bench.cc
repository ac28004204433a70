// gpu_bench: the CUDA kernels' speed against the card, measured in the same run.
//
//   gpu_bench [--device N]
//
// Prints the whole synthetic TinyLlama-1.1B model (models::Model, bf16) decoding a
// batch-1 step and prefilling 512 tokens, then, for a TinyLlama-1.1B-shaped and a
// Llama-8B-shaped model:
//   decode: every weight matrix of the model multiplied by a batch-1 (and batch-8)
//           activation through cuBLAS (bf16, fp32 accumulation), as one decode step
//           reads them; GB/s of weights against the device-to-device copy bandwidth
//           measured here (and the H200's nominal 4.8 TB/s)
//   prefill: the same matrices at 512 rows; TFLOP/s against the bf16 dense peak
//           (989 TFLOP/s nominal for H100/H200 SXM)
//   paged attention: decode rows over long contexts; GB/s of K and V read
//   host <-> device: pinned block copies on the copy stream (kvstore::BlockCopier), GB/s
// bench/gpu_check.sh runs it with the GPU tests and keeps the output.
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "kernels/cuda/attention.cuh"
#include "kvstore/cuda_block_copier.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/gemm.h"
#include "bench/synthetic_model.h"
#include "kvstore/block_allocator.h"
#include "kvstore/cuda_kv_pool.h"
#include "models/model.h"

namespace tessera::bench {
namespace {

struct Shape {
  const char* name;
  int64_t hidden, inner, layers, heads, kv_heads, head_dim, vocab;
};
constexpr Shape kShapes[] = {
    {"TinyLlama-1.1B", 2048, 5632, 22, 32, 4, 64, 32000},
    {"Llama-8B", 4096, 14336, 32, 32, 8, 128, 128256},
};
// H200 SXM datasheet figures (dense): HBM3e bandwidth, bf16 tensor-core and fp32 CUDA-core peaks.
constexpr double kNominalHbmGBps = 4800, kNominalBf16Tflops = 989, kNominalFp32Tflops = 67;

#define CHECK_CUDA(x)                                                                \
  do {                                                                               \
    cudaError_t e = (x);                                                             \
    if (e != cudaSuccess) {                                                          \
      std::fprintf(stderr, "gpu_bench: %s: %s\n", #x, cudaGetErrorString(e));       \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

// Seconds per call of `fn` on the default stream, best of `reps` after a warm-up.
template <typename Fn>
double Time(Fn fn, int reps = 10) {
  fn();
  CHECK_CUDA(cudaDeviceSynchronize());
  double best = 1e30;
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  for (int r = 0; r < reps; ++r) {
    cudaEventRecord(start);
    fn();
    cudaEventRecord(stop);
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    best = std::min(best, ms / 1e3);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return best;
}

void* Alloc(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  CHECK_CUDA(cudaMemset(p, 0, bytes));
  return p;
}

double CopyBandwidthGBps() {
  const size_t bytes = size_t{2} << 30;
  void* a = Alloc(bytes);
  void* b = Alloc(bytes);
  const double s = Time([&] { cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice); });
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / s / 1e9;  // read + write
}

void Matmuls(const Shape& sh, double copy_gbps, kernels::cuda::Gemm& gemm) {
  // The matrices one decode step reads: q+k+v, o, gate+up, down per layer; the LM head.
  struct Matrix {
    int64_t n, k, count;
  };
  const int64_t qkv = (sh.heads + 2 * sh.kv_heads) * sh.head_dim;
  const std::vector<Matrix> matrices = {{qkv, sh.hidden, sh.layers},
                                        {sh.hidden, sh.heads * sh.head_dim, sh.layers},
                                        {2 * sh.inner, sh.hidden, sh.layers},
                                        {sh.hidden, sh.inner, sh.layers},
                                        {sh.vocab, sh.hidden, 1}};
  int64_t max_w = 0, weight_bytes = 0;
  for (const Matrix& m : matrices) {
    max_w = std::max(max_w, m.n * m.k);
    weight_bytes += m.n * m.k * 2 * m.count;
  }
  // One buffer per distinct matrix shape, reused across layers (the layers' distinct
  // weights would not fit twice; reads of a reused matrix still come from HBM: each
  // matrix is far larger than L2 except the smallest).
  std::vector<void*> weights;
  for (const Matrix& m : matrices) weights.push_back(Alloc(m.n * m.k * 2));
  void* x = Alloc(512 * std::max(sh.inner, sh.vocab) * 2);
  void* out = Alloc(512 * std::max(2 * sh.inner, sh.vocab) * 4);
  for (int64_t rows : {1, 8, 512}) {
    const double s = Time([&] {
      for (size_t i = 0; i < matrices.size(); ++i) {
        for (int64_t c = 0; c < matrices[i].count; ++c) {
          (void)gemm.Run(static_cast<uint16_t*>(x), rows, matrices[i].k, static_cast<uint16_t*>(weights[i]),
                         matrices[i].n, static_cast<float*>(out));
        }
      }
    }, 5);
    const double flops = 2.0 * rows * weight_bytes / 2;
    if (rows < 512) {
      const double gbps = weight_bytes / s / 1e9;
      std::printf("%s decode, batch %3ld: %.2f ms/step, weights %.2f GB at %.0f GB/s = %.2f of measured copy "
                  "bandwidth (%.0f GB/s), %.2f of nominal\n",
                  sh.name, static_cast<long>(rows), s * 1e3, weight_bytes / 1e9, gbps, gbps / copy_gbps, copy_gbps,
                  gbps / kNominalHbmGBps);
    } else {
      const double tflops = flops / s / 1e12;
      std::printf("%s prefill, %ld rows: %.2f ms, %.0f TFLOP/s = %.2f of the nominal bf16 dense peak\n", sh.name,
                  static_cast<long>(rows), s * 1e3, tflops, tflops / kNominalBf16Tflops);
    }
  }
  for (void* w : weights) cudaFree(w);
  cudaFree(x);
  cudaFree(out);
  (void)max_w;
}

// Paged attention over `seqs` sequences of `context` keys each, every key of the
// last `new_tokens` rows attended (1: decode; context: a whole prefill). Returns the
// seconds per call; *kv_bytes the K+V bytes read once.
double PagedAttentionTime(const Shape& sh, int64_t seqs, int64_t context, int64_t new_tokens, double* kv_bytes) {
  const int block_size = 16;
  const int64_t blocks_per_seq = context / block_size, blocks = seqs * blocks_per_seq, rows = seqs * new_tokens;
  const int64_t head_stride = block_size * sh.head_dim, block_stride = head_stride * sh.kv_heads;
  float* k = static_cast<float*>(Alloc(blocks * block_stride * 4));
  float* v = static_cast<float*>(Alloc(blocks * block_stride * 4));
  std::vector<int32_t> tables(blocks), positions, offsets;
  for (int64_t b = 0; b < blocks; ++b) tables[b] = static_cast<int32_t>((b * 7919) % blocks);
  for (int64_t sq = 0; sq < seqs; ++sq) {
    for (int64_t i = 0; i < new_tokens; ++i) {
      positions.push_back(static_cast<int32_t>(context - new_tokens + i));
      offsets.push_back(static_cast<int32_t>(sq * blocks_per_seq));
    }
  }
  const std::vector<int64_t> per_seq(seqs, new_tokens);
  const kernels::cuda::AttentionPlan plan = kernels::cuda::PlanAttention(per_seq.data(), seqs);
  auto upload = [](const std::vector<int32_t>& h) {
    void* d = Alloc(std::max<size_t>(1, h.size()) * 4);
    cudaMemcpy(d, h.data(), h.size() * 4, cudaMemcpyHostToDevice);
    return static_cast<int32_t*>(d);
  };
  int32_t *dt = upload(tables), *dp = upload(positions), *doff = upload(offsets), *dtiles = upload(plan.tiles),
          *dsingle = upload(plan.single_rows);
  kernels::AttentionShape shape{static_cast<int>(sh.heads), static_cast<int>(sh.kv_heads),
                                static_cast<int>(sh.head_dim), 0, 0.125f};
  kernels::PagedKvView kv{reinterpret_cast<std::byte*>(k), reinterpret_cast<std::byte*>(v), block_stride * 4,
                          head_stride * 4, block_size, static_cast<int>(sh.head_dim)};  // f32: strides in bytes
  const kernels::cuda::DeviceRows drows{dp, doff, dt, rows};
  const kernels::cuda::DevicePlan dplan{dtiles, plan.num_tiles(), dsingle,
                                        static_cast<int64_t>(plan.single_rows.size())};
  float* q = static_cast<float*>(Alloc(rows * sh.heads * sh.head_dim * 4));
  float* out = static_cast<float*>(Alloc(rows * sh.heads * sh.head_dim * 4));
  float* ws = static_cast<float*>(
      Alloc(std::max<int64_t>(4, kernels::cuda::PagedAttentionWorkspace(dplan.num_single, shape, context) * 4)));
  const double s = Time([&] {
    kernels::cuda::LaunchPagedAttention(q, sh.heads * sh.head_dim, kv, shape, drows, dplan, context, ws, out,
                                        sh.heads * sh.head_dim, nullptr);
  });
  *kv_bytes = 2.0 * blocks * block_stride * 4;
  for (void* p : {static_cast<void*>(k), static_cast<void*>(v), static_cast<void*>(q), static_cast<void*>(out),
                  static_cast<void*>(ws), static_cast<void*>(dt), static_cast<void*>(dp), static_cast<void*>(doff),
                  static_cast<void*>(dtiles), static_cast<void*>(dsingle)}) {
    cudaFree(p);
  }
  return s;
}

void Attention(const Shape& sh, double copy_gbps) {
  double bytes = 0;
  const double decode = PagedAttentionTime(sh, 32, 4096, 1, &bytes);
  std::printf("%s paged attention, 32 decode rows x 4096 keys (f32 KV): %.3f ms, %.0f GB/s of K+V = %.2f of measured "
              "copy bandwidth\n",
              sh.name, decode * 1e3, bytes / decode / 1e9, bytes / decode / 1e9 / copy_gbps);
  const int64_t n = 4096;
  const double prefill = PagedAttentionTime(sh, 1, n, n, &bytes);
  const double flops = 4.0 * sh.heads * sh.head_dim * (n * (n + 1) / 2.0);  // QK^T and PV over the causal half
  std::printf("%s paged attention, one %ld-token causal prefill (tiled kernel, f32 CUDA cores): %.2f ms, %.1f "
              "TFLOP/s = %.2f of the nominal fp32 peak\n",
              sh.name, static_cast<long>(n), prefill * 1e3, flops / prefill / 1e12,
              flops / prefill / 1e12 / kNominalFp32Tflops);
}

// The synthetic TinyLlama-1.1B on the GPU: a 512-token prefill, then batch-1 decode
// steps, the weights' bytes per step against the measured copy bandwidth.
void WholeModel(int device, double copy_gbps) {
  const models::ModelSpec spec = TinyLlamaSpec();
  SyntheticLlama source(spec);
  models::ModelOptions options;
  options.cuda_device = device;
  auto model = models::Model::Create(spec, source, options);
  if (!model.ok()) {
    std::printf("whole model: %s\n", std::string(model.status().message()).c_str());
    return;
  }
  const int block_size = 16, prompt = 512, steps = 32;
  auto kv = kvstore::CudaKvPool::Create((*model)->KvLayoutFor(block_size, KvDtype::kF32), 64);
  if (!kv.ok()) return;
  kvstore::BlockAllocator allocator(64);
  kvstore::BlockTable table;
  (void)table.EnsureCapacity(prompt + steps + 1, block_size, allocator);
  std::vector<int32_t> tokens(prompt);
  for (int i = 0; i < prompt; ++i) tokens[i] = (i * 7919) % spec.vocab_size;
  std::vector<float> logits;
  models::SequenceInput seq{tokens, 0, table.blocks(), false};
  auto start = std::chrono::steady_clock::now();
  (void)(*model)->Forward({&seq, 1}, **kv, &logits);  // synchronous: logits come back
  const double prefill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double flops = 2.0 * prompt * (*model)->weight_bytes() / 2;
  std::vector<int32_t> next = {1};
  start = std::chrono::steady_clock::now();
  for (int s = 0; s < steps; ++s) {
    const models::SequenceInput step{next, prompt + s, table.blocks(), false};
    (void)(*model)->Forward({&step, 1}, **kv, &logits);
  }
  const double step_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / steps;
  const double gbps = (*model)->weight_bytes() / step_s / 1e9;
  std::printf("TinyLlama-1.1B whole model (Model on the CUDA backend, bf16): prefill %d tokens %.1f ms (%.0f TFLOP/s = %.2f of peak); "
              "decode %.2f ms/token, %.0f GB/s of weights = %.2f of measured copy bandwidth\n",
              prompt, prefill_s * 1e3, flops / prefill_s / 1e12, flops / prefill_s / 1e12 / kNominalBf16Tflops,
              step_s * 1e3, gbps, gbps / copy_gbps);
}

void HostCopies(int device) {
  const int64_t block_bytes = 22 * 2 * 4 * 16 * 64 * 4;  // a TinyLlama-shaped f32 block
  const int32_t n = 512;
  auto copier = kvstore::BlockCopier::Create(block_bytes, device);
  std::vector<char> host(static_cast<size_t>(block_bytes) * n);  // as the worker's host tier: pinned in place
  auto pinned = kvstore::PinnedRegion::Create(host.data(), host.size());
  if (!copier.ok() || !pinned.ok()) {
    std::printf("host copies: %s\n", std::string((copier.ok() ? pinned.status() : copier.status()).message()).c_str());
    return;
  }
  char* pool = static_cast<char*>(Alloc(block_bytes * n));
  std::vector<kvstore::BlockCopier::Out> out;
  std::vector<kvstore::BlockCopier::In> in;
  for (int32_t b = 0; b < n; ++b) {
    out.push_back({pool + b * block_bytes, host.data() + b * block_bytes});
    in.push_back({host.data() + b * block_bytes, pool + b * block_bytes});
  }
  const double s_out = Time([&] {
    (void)(*copier)->CopyOut(out);
    (void)(*copier)->Synchronize();
  }, 3);
  const double s_in = Time([&] {
    (void)(*copier)->CopyIn(in);
    (void)(*copier)->Synchronize();
  }, 3);
  const double bytes = static_cast<double>(block_bytes) * n;
  std::printf("host <-> device, %d blocks of %ld KiB (host memory pinned in place, copy stream): device->host %.1f "
              "GB/s, host->device %.1f GB/s\n",
              n, static_cast<long>(block_bytes / 1024), bytes / s_out / 1e9, bytes / s_in / 1e9);
  cudaFree(pool);
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) {
  using namespace tessera;
  const int device = argc > 2 && std::string(argv[1]) == "--device" ? std::atoi(argv[2]) : 0;
  if (kernels::cuda::DeviceCount() == 0) {
    std::printf("gpu_bench: no CUDA device\n");
    return 1;
  }
  CHECK_CUDA(cudaSetDevice(device));
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, device);
  std::printf("device %d: %s, %.0f GiB\n", device, prop.name, prop.totalGlobalMem / 1073741824.0);
  const double copy_gbps = bench::CopyBandwidthGBps();
  std::printf("device-to-device copy: %.0f GB/s (read + write)\n", copy_gbps);
  auto gemm = kernels::cuda::Gemm::Create(nullptr);
  if (!gemm.ok()) {
    std::printf("gpu_bench: %s\n", std::string(gemm.status().message()).c_str());
    return 1;
  }
  bench::WholeModel(device, copy_gbps);
  for (const auto& shape : bench::kShapes) {
    bench::Matmuls(shape, copy_gbps, *gemm);
    bench::Attention(shape, copy_gbps);
  }
  bench::HostCopies(device);
  return 0;
}
