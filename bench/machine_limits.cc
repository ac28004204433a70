#include "bench/machine_limits.h"

#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <vector>

#include "common/aligned_buffer.h"
#include "kernels/cpu_isa.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;
using kernels::CpuIsa;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// Sums `bytes` at base through four interleaved streams; the result only keeps the
// loads alive.
__attribute__((target("avx512f"))) float SumAvx512(const char* base, size_t quarter) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t off = 0; off < quarter; off += 64) {
    a0 = _mm512_add_ps(a0, _mm512_load_ps(reinterpret_cast<const float*>(base + off)));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(reinterpret_cast<const float*>(base + quarter + off)));
    a2 = _mm512_add_ps(a2, _mm512_load_ps(reinterpret_cast<const float*>(base + 2 * quarter + off)));
    a3 = _mm512_add_ps(a3, _mm512_load_ps(reinterpret_cast<const float*>(base + 3 * quarter + off)));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

__attribute__((target("avx2"))) float SumAvx2(const char* base, size_t quarter) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t off = 0; off < quarter; off += 32) {
    a0 = _mm256_add_ps(a0, _mm256_load_ps(reinterpret_cast<const float*>(base + off)));
    a1 = _mm256_add_ps(a1, _mm256_load_ps(reinterpret_cast<const float*>(base + quarter + off)));
    a2 = _mm256_add_ps(a2, _mm256_load_ps(reinterpret_cast<const float*>(base + 2 * quarter + off)));
    a3 = _mm256_add_ps(a3, _mm256_load_ps(reinterpret_cast<const float*>(base + 3 * quarter + off)));
  }
  const __m256 s = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
  float lanes[8];
  _mm256_storeu_ps(lanes, s);
  return lanes[0];
}

float SumSse2(const char* base, size_t quarter) {
  __m128 a0 = _mm_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (size_t off = 0; off < quarter; off += 16) {
    a0 = _mm_add_ps(a0, _mm_load_ps(reinterpret_cast<const float*>(base + off)));
    a1 = _mm_add_ps(a1, _mm_load_ps(reinterpret_cast<const float*>(base + quarter + off)));
    a2 = _mm_add_ps(a2, _mm_load_ps(reinterpret_cast<const float*>(base + 2 * quarter + off)));
    a3 = _mm_add_ps(a3, _mm_load_ps(reinterpret_cast<const float*>(base + 3 * quarter + off)));
  }
  return _mm_cvtss_f32(_mm_add_ps(_mm_add_ps(a0, a1), _mm_add_ps(a2, a3)));
}

// 12 independent FMA chains of `iters` steps; returns FLOPs done.
constexpr int kChains = 12;
__attribute__((target("avx512f"))) double FmaAvx512(int64_t iters, float* sink) {
  __m512 acc[kChains];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-3f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (auto& a : acc) a = _mm512_fmadd_ps(a, x, y);
  }
  for (int i = 1; i < kChains; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  *sink = _mm512_reduce_add_ps(acc[0]);
  return 2.0 * 16 * kChains * iters;
}

__attribute__((target("avx2,fma"))) double FmaAvx2(int64_t iters, float* sink) {
  __m256 acc[kChains];
  for (auto& a : acc) a = _mm256_setzero_ps();
  const __m256 x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-3f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (auto& a : acc) a = _mm256_fmadd_ps(a, x, y);
  }
  for (int i = 1; i < kChains; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  float lanes[8];
  _mm256_storeu_ps(lanes, acc[0]);
  *sink = lanes[0];
  return 2.0 * 8 * kChains * iters;
}

double MulAddSse2(int64_t iters, float* sink) {
  __m128 acc[kChains];
  for (auto& a : acc) a = _mm_setzero_ps();
  const __m128 x = _mm_set1_ps(0.999f), y = _mm_set1_ps(1e-3f);
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (auto& a : acc) a = _mm_add_ps(_mm_mul_ps(a, x), y);
  }
  for (int i = 1; i < kChains; ++i) acc[0] = _mm_add_ps(acc[0], acc[i]);
  *sink = _mm_cvtss_f32(acc[0]);
  return 2.0 * 4 * kChains * iters;
}

// 24 vdpbf16ps chains (16 lanes x 2 pairs x 2 FLOP each).
__attribute__((target("avx512f,avx512bf16"))) double DotBf16(int64_t iters, float* sink) {
  __m512 acc[24];
  for (auto& a : acc) a = _mm512_setzero_ps();
  const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = x;
  for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 24
    for (auto& a : acc) a = _mm512_dpbf16_ps(a, x, y);
  }
  for (int i = 1; i < 24; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  *sink = _mm512_reduce_add_ps(acc[0]);
  return 64.0 * 24 * iters;
}

// Best of three passes of `kernel` on every thread at once, in GFLOP/s.
double ComputePeak(ThreadPool& pool, const std::function<double(int64_t, float*)>& kernel) {
  const int64_t iters = 20'000'000;
  const int threads = pool.num_threads();
  std::vector<float> sinks(threads);
  std::vector<double> flops(threads);
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    pool.Run(threads, [&](int t) { flops[t] = kernel(iters, &sinks[t]); });
    const double seconds = Seconds(t0, Clock::now());
    double total = 0;
    for (double f : flops) total += f;
    best = std::max(best, total / seconds / 1e9);
  }
  return best;
}

}  // namespace

double MemoryReadBandwidth(ThreadPool& pool) {
  const CpuIsa isa = kernels::ActiveCpuIsa();
  auto sum = isa >= CpuIsa::kAvx512 ? SumAvx512 : isa == CpuIsa::kAvx2 ? SumAvx2 : SumSse2;
  const size_t bytes = 1ull << 30;
  AlignedBuffer buffer(bytes);
  std::memset(buffer.data(), 1, bytes);
  const int threads = pool.num_threads();
  const size_t slice = bytes / threads / 256 * 256;
  std::vector<float> sinks(threads);
  double best = 0;
  for (int pass = 0; pass < 60; ++pass) {
    const auto t0 = Clock::now();
    pool.Run(threads, [&](int t) { sinks[t] = sum(buffer.as<char>() + t * slice, slice / 4); });
    best = std::max(best, static_cast<double>(slice) * threads / Seconds(t0, Clock::now()) / 1e9);
  }
  return best;
}

double Fp32FmaPeak(ThreadPool& pool) {
  const CpuIsa isa = kernels::ActiveCpuIsa();
  return ComputePeak(pool, isa >= CpuIsa::kAvx512 ? FmaAvx512 : isa == CpuIsa::kAvx2 ? FmaAvx2 : MulAddSse2);
}

double Bf16DotPeak(ThreadPool& pool) {
  return kernels::ActiveCpuIsa() == CpuIsa::kAvx512Bf16 ? ComputePeak(pool, DotBf16) : 0.0;
}

}  // namespace tessera::bench
