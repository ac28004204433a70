// Single-process engine benchmark on a synthetic TinyLlama-1.1B-shaped model with
// random BF16 weights: batch-1 decode, batched decode and 512-token prefill, each set
// against a limit measured in the same run (memory read bandwidth, bf16 dot peak).
//
//   build/bin/engine_bench [--threads N] [--prompt 512] [--decode-steps 64] [--batch 16]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/synthetic_model.h"
#include "common/aligned_buffer.h"
#include "common/thread_pool.h"
#include "kvstore/block_allocator.h"
#include "models/generate.h"
#include "models/model.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

// STREAM-like read: every thread sums its slice of a 1 GiB buffer through four
// interleaved streams. Best of 60 passes, in GB/s: on this VM freshly touched memory
// reads slowly for the first ~20 passes (~33 GB/s) before settling near 45-48 GB/s,
// so a few passes would understate the limit that the (warm) weights are read at.
double MemoryReadBandwidth(ThreadPool& pool) {
  const size_t bytes = 1ull << 30;
  AlignedBuffer buffer(bytes);
  std::memset(buffer.data(), 1, bytes);
  const int threads = pool.num_threads();
  const size_t slice = bytes / threads / 256 * 256;
  std::vector<float> sinks(threads);
  double best = 0;
  for (int pass = 0; pass < 60; ++pass) {
    const auto t0 = Clock::now();
    pool.Run(threads, [&](int t) {
      const char* base = buffer.as<char>() + t * slice;
      const size_t quarter = slice / 4;
      __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (size_t off = 0; off < quarter; off += 64) {
        a0 = _mm512_add_ps(a0, _mm512_load_ps(reinterpret_cast<const float*>(base + off)));
        a1 = _mm512_add_ps(a1, _mm512_load_ps(reinterpret_cast<const float*>(base + quarter + off)));
        a2 = _mm512_add_ps(a2, _mm512_load_ps(reinterpret_cast<const float*>(base + 2 * quarter + off)));
        a3 = _mm512_add_ps(a3, _mm512_load_ps(reinterpret_cast<const float*>(base + 3 * quarter + off)));
      }
      sinks[t] = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    });
    best = std::max(best, static_cast<double>(slice) * threads / Seconds(t0, Clock::now()) / 1e9);
  }
  return best;
}

// The bf16 dot-product instruction's peak: 24 independent vdpbf16ps chains per
// thread, registers only. GFLOP/s (one vdpbf16ps = 16 lanes x 2 pairs x 2 FLOP).
double Bf16DotPeak(ThreadPool& pool) {
#if defined(__AVX512BF16__)
  const int64_t iters = 20'000'000;
  const int threads = pool.num_threads();
  std::vector<float> sinks(threads);
  double best = 0;
  for (int pass = 0; pass < 3; ++pass) {
    const auto t0 = Clock::now();
    pool.Run(threads, [&](int t) {
      __m512 acc[24];
      for (auto& a : acc) a = _mm512_setzero_ps();
      const __m512bh x = (__m512bh)_mm512_set1_epi32(0x3f803f80), y = x;
      for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 24
        for (auto& a : acc) a = _mm512_dpbf16_ps(a, x, y);
      }
      __m512 s = acc[0];
      for (int i = 1; i < 24; ++i) s = _mm512_add_ps(s, acc[i]);
      sinks[t] = _mm512_reduce_add_ps(s);
    });
    best = std::max(best, 64.0 * 24 * iters * threads / Seconds(t0, Clock::now()) / 1e9);
  }
  return best;
#else
  return 0;
#endif
}

struct Flags {
  int threads = 0;
  int prompt = 512;
  int decode_steps = 64;
  int batch = 16;
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i];
    int value = 0;
    if (!absl::SimpleAtoi(argv[i + 1], &value)) continue;
    if (name == "--threads") f.threads = value;
    if (name == "--prompt") f.prompt = value;
    if (name == "--decode-steps") f.decode_steps = value;
    if (name == "--batch") f.batch = value;
  }
  return f;
}

// Matmul FLOPs of a forward over `tokens` new tokens with `context` before them, logits
// for the last token only; attention counts QK and PV over the causal triangle.
double ForwardFlops(const models::ModelSpec& s, int64_t tokens, int64_t context) {
  const double h = s.hidden_size, q = s.q_size(), kv = s.kv_size(), inner = s.intermediate_size;
  const double per_token = h * (q + 2 * kv) + q * h + 3 * h * inner;
  double attended = 0;
  for (int64_t t = 0; t < tokens; ++t) attended += static_cast<double>(context + t + 1);
  return s.num_layers * (2 * per_token * tokens + 4 * q * attended) + 2 * h * s.vocab_size;
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  models::ModelOptions options;
  options.num_threads = flags.threads;
  const models::ModelSpec spec = TinyLlamaSpec();
  std::printf("building synthetic TinyLlama-1.1B (bf16, random weights)...\n");
  std::unique_ptr<models::Model> model;
  {
    SyntheticLlama source(spec);
    model = *models::Model::Create(spec, source, options);
  }
  ThreadPool pool(model->num_threads());
  const double bandwidth = MemoryReadBandwidth(pool);
  const double peak = Bf16DotPeak(pool);
  std::printf("threads %d, weights %.2f GB, bytes read per decoded token %.2f GB\n", model->num_threads(),
              model->weight_bytes() / 1e9, model->decode_bytes_per_token() / 1e9);
  std::printf("memory read bandwidth (this run)   %8.1f GB/s\n", bandwidth);
  std::printf("bf16 dot peak (this run)           %8.1f GFLOP/s\n", peak);

  const int block = 16;
  const int64_t max_tokens = flags.prompt + flags.decode_steps + 16;
  kvstore::CpuKvStorage kv(model->KvLayoutFor(block),
                           static_cast<int32_t>((max_tokens / block + 1) * std::max(flags.batch, 1) + 64));
  kvstore::BlockAllocator allocator(kv.num_blocks());
  std::vector<float> logits;

  // Prefill: one 512-token step, best of three.
  std::vector<int32_t> prompt(flags.prompt);
  for (int i = 0; i < flags.prompt; ++i) prompt[i] = (i * 7919) % spec.vocab_size;
  kvstore::BlockTable table;
  (void)table.EnsureCapacity(max_tokens, block, allocator);
  double prefill_s = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    models::SequenceInput seq{prompt, 0, table.blocks(), false};
    const auto t0 = Clock::now();
    if (!model->Forward({&seq, 1}, kv, &logits).ok()) return 1;
    prefill_s = std::min(prefill_s, Seconds(t0, Clock::now()));
  }
  const double prefill_gflops = ForwardFlops(spec, flags.prompt, 0) / prefill_s / 1e9;
  std::printf("prefill %d tokens                  %8.1f tok/s  %6.1f GFLOP/s  = %.2f of bf16 peak\n", flags.prompt,
              flags.prompt / prefill_s, prefill_gflops, peak > 0 ? prefill_gflops / peak : 0.0);

  // Batch-1 decode after the prompt.
  int32_t token = models::ArgMax(logits.data(), spec.vocab_size);
  const auto t0 = Clock::now();
  for (int step = 0; step < flags.decode_steps; ++step) {
    models::SequenceInput seq{{&token, 1}, flags.prompt + step, table.blocks(), false};
    if (!model->Forward({&seq, 1}, kv, &logits).ok()) return 1;
    token = models::ArgMax(logits.data(), spec.vocab_size);
  }
  const double decode_tps = flags.decode_steps / Seconds(t0, Clock::now());
  const double decode_gbs = decode_tps * model->decode_bytes_per_token() / 1e9;
  std::printf("decode batch 1 (context %d)       %8.1f tok/s  %6.1f GB/s     = %.2f of read bandwidth\n",
              flags.prompt, decode_tps, decode_gbs, decode_gbs / bandwidth);
  table.Free(allocator);

  // Batched decode: `batch` sequences with 64-token prompts, one token each per step.
  if (flags.batch > 1) {
    std::vector<kvstore::BlockTable> tables(flags.batch);
    std::vector<int32_t> tokens(flags.batch);
    std::vector<int32_t> short_prompt(prompt.begin(), prompt.begin() + 64);
    for (auto& t : tables) (void)t.EnsureCapacity(64 + flags.decode_steps + 1, block, allocator);
    std::vector<models::SequenceInput> seqs;
    for (int b = 0; b < flags.batch; ++b) seqs.push_back({short_prompt, 0, tables[b].blocks(), false});
    if (!model->Forward(seqs, kv, &logits).ok()) return 1;
    const int steps = std::max(1, flags.decode_steps / 2);
    const auto b0 = Clock::now();
    for (int step = 0; step < steps; ++step) {
      for (int b = 0; b < flags.batch; ++b) {
        tokens[b] = models::ArgMax(logits.data() + static_cast<size_t>(b) * spec.vocab_size, spec.vocab_size);
        seqs[b] = {{&tokens[b], 1}, 64 + step, tables[b].blocks(), false};
      }
      if (!model->Forward(seqs, kv, &logits).ok()) return 1;
    }
    const double batch_tps = static_cast<double>(steps) * flags.batch / Seconds(b0, Clock::now());
    std::printf("decode batch %d (context 64)       %8.1f tok/s  = %.2fx batch 1\n", flags.batch, batch_tps,
                batch_tps / decode_tps);
  }
  return 0;
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) { return tessera::bench::Main(argc, argv); }
