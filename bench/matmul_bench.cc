// Matmul kernels against oneDNN (Debian's libdnnl, when installed) on the shapes of a
// TinyLlama-1.1B MLP: [m, 2048] x [5632, 2048]^T, bf16 weights, fp32 results, all
// cores. Decides where Tessera's own kernels are used (docs/benchmarks.md).
//
//   build/bin/matmul_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>
#include <thread>

#include "common/thread_pool.h"
#include "kernels/host_matrix.h"
#include "kernels/matmul.h"

#ifdef TESSERA_HAVE_ONEDNN
#include <omp.h>

#include "oneapi/dnnl/dnnl.hpp"
#endif

namespace tessera::bench {
namespace {

constexpr int64_t kN = 5632, kK = 2048;
// Matrices cycled through per iteration: 8 x 23 MB overflows the last-level cache, so
// small batches measure DRAM bandwidth as a real decode step does.
constexpr int kCopies = 8;

int Threads() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

std::vector<float> RandomMatrix(int64_t rows, int64_t cols) {
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> v(rows * cols);
  for (float& x : v) x = dist(rng);
  return v;
}

void SetCounters(benchmark::State& state, int64_t m) {
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * m * kN * kK, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
  state.counters["weight_GB/s"] =
      benchmark::Counter(2.0 * kN * kK, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}

const std::vector<kernels::PackedMatrix>& TesseraWeights() {
  static const auto* packed = [] {
    auto* v = new std::vector<kernels::PackedMatrix>;
    const std::vector<float> w = RandomMatrix(kN, kK);
    for (int i = 0; i < kCopies; ++i) v->push_back(kernels::PackMatrix(w.data(), kN, kK, DType::kBF16));
    return v;
  }();
  return *packed;
}

// Tessera, args (m, fast): fast=0 keeps activations fp32 (exact), fast=1 rounds them
// to bf16 for the dot-product instruction.
void BM_Tessera(benchmark::State& state) {
  const int64_t m = state.range(0);
  const auto& weights = TesseraWeights();
  kernels::MatmulOptions options;
  options.bf16_activation_min_rows = state.range(1) ? 1 : 0;
  std::vector<float> x = RandomMatrix(m, kK), y(m * kN);
  ThreadPool pool(Threads());
  int i = 0;
  for (auto _ : state) {
    kernels::Matmul(x.data(), m, kK, weights[i++ % kCopies], nullptr, y.data(), kN, &pool, options);
    benchmark::DoNotOptimize(y.data());
  }
  SetCounters(state, m);
}
// Packing one MLP weight at load (bf16 rows, as the checkpoint holds them, to panels),
// arg = threads: the rate weights are made ready at when the file is in the page cache.
void BM_Pack(benchmark::State& state) {
  const kernels::HostMatrix rows = kernels::HostMatrix::FromFloats(kN, kK, DType::kBF16, RandomMatrix(kN, kK).data());
  ThreadPool pool(static_cast<int>(state.range(0)));
  for (auto _ : state) {
    kernels::PackedMatrix packed = kernels::PackMatrix(rows.row_data(), kK, DType::kBF16, &pool);
    benchmark::DoNotOptimize(packed.data.data());
  }
  state.counters["GB/s"] =
      benchmark::Counter(2.0 * kN * kK, benchmark::Counter::kIsIterationInvariantRate, benchmark::Counter::kIs1000);
}
BENCHMARK(BM_Pack)->Arg(1)->Arg(2)->UseRealTime();

BENCHMARK(BM_Tessera)->Args({1, 0})->Args({1, 1})->Args({4, 0})->Args({4, 1})->Args({8, 0})->Args({8, 1})->Args({16, 0})->Args({16, 1})->Args({512, 1})->UseRealTime();

#ifdef TESSERA_HAVE_ONEDNN
// oneDNN matmul, bf16 x bf16 -> f32, weights reordered once into its preferred layout.
void BM_OneDnn(benchmark::State& state) {
  using dt = dnnl::memory::data_type;
  using tag = dnnl::memory::format_tag;
  const int64_t m = state.range(0);
  omp_set_num_threads(Threads());
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(eng);
  dnnl::memory::desc a_md({m, kK}, dt::bf16, tag::ab), b_md({kK, kN}, dt::bf16, tag::any),
      c_md({m, kN}, dt::f32, tag::ab);
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_md, c_md), eng);
  // User weights are [n, k] row-major, i.e. [k, n] in "ba" order.
  std::vector<float> w = RandomMatrix(kN, kK);
  dnnl::memory w_f32({{kK, kN}, dt::f32, tag::ba}, eng, w.data());
  std::vector<dnnl::memory> w_packed;
  for (int i = 0; i < kCopies; ++i) {
    w_packed.emplace_back(pd.weights_desc(), eng);
    dnnl::reorder(w_f32, w_packed.back()).execute(stream, w_f32, w_packed.back());
  }
  std::vector<float> x = RandomMatrix(m, kK);
  dnnl::memory x_f32({{m, kK}, dt::f32, tag::ab}, eng, x.data());
  dnnl::memory a(pd.src_desc(), eng), c(pd.dst_desc(), eng);
  dnnl::reorder(x_f32, a).execute(stream, x_f32, a);
  stream.wait();
  dnnl::matmul matmul(pd);
  int i = 0;
  for (auto _ : state) {
    matmul.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, w_packed[i++ % kCopies]}, {DNNL_ARG_DST, c}});
    stream.wait();
  }
  SetCounters(state, m);
}
BENCHMARK(BM_OneDnn)->Arg(1)->Arg(16)->Arg(512)->UseRealTime();
#endif

}  // namespace
}  // namespace tessera::bench

BENCHMARK_MAIN();
