// The KV cache's dtypes (common/kv_dtype.h) on a synthetic TinyLlama-1.1B-shaped model
// (random bf16 weights): for each dtype, the blocks and the sequences of a given length
// a fixed pool holds, and batch-1 decode tok/s at long contexts, next to the memory
// read bandwidth measured in the same run and the bytes a decoded token reads
// (weights + the K and V it attends to).
//
// The context's K and V are written as random values through the cache's encoder (the
// write path WriteKv takes) instead of a prefill of thousands of tokens: decode speed
// does not depend on the values, only on how many there are and their dtype.
//
//   build/bin/kv_cache_bench [--threads N] [--contexts 2048,8192] [--steps 16] [--pool-mb 1024]
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "bench/machine_limits.h"
#include "bench/synthetic_model.h"
#include "common/thread_pool.h"
#include "kernels/attention.h"
#include "kvstore/block_allocator.h"
#include "kvstore/cpu_kv_storage.h"
#include "models/generate.h"
#include "models/model.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kBlock = 16;
constexpr KvDtype kDtypes[] = {KvDtype::kF32, KvDtype::kBf16, KvDtype::kF16, KvDtype::kInt8, KvDtype::kFp8E4m3};

struct Flags {
  int threads = 0;
  std::vector<int> contexts = {2048, 8192};
  int steps = 16;
  int pool_mb = 1024;
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string name = argv[i], value = argv[i + 1];
    bool ok = true;
    if (name == "--threads") {
      ok = absl::SimpleAtoi(value, &f->threads);
    } else if (name == "--steps") {
      ok = absl::SimpleAtoi(value, &f->steps) && f->steps > 0;
    } else if (name == "--pool-mb") {
      ok = absl::SimpleAtoi(value, &f->pool_mb) && f->pool_mb > 0;
    } else if (name == "--contexts") {
      f->contexts.clear();
      for (absl::string_view c : absl::StrSplit(value, ',')) {
        int n = 0;
        ok = ok && absl::SimpleAtoi(c, &n) && n > 0;
        f->contexts.push_back(n);
      }
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "kv_cache_bench: bad flag %s %s\n", name.c_str(), value.c_str());
      return false;
    }
  }
  return true;
}

// Writes random K and V for the first `tokens` positions of `table` into every layer,
// through the kernels' own write path (kernels::WriteKv, encoding in the pool's dtype).
void FillContext(kvstore::CpuKvStorage& kv, const kvstore::BlockTable& table, int64_t tokens) {
  const kvstore::KvLayout& l = kv.layout();
  const int64_t row = static_cast<int64_t>(l.num_kv_heads) * l.head_dim;
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> k(tokens * row), v(tokens * row);
  const kernels::AttentionSequence seq{0, tokens, 0, table.blocks().data(), static_cast<int64_t>(table.blocks().size())};
  for (int layer = 0; layer < l.num_layers; ++layer) {
    for (float& x : k) x = dist(rng);
    for (float& x : v) x = dist(rng);
    kernels::WriteKv(k.data(), v.data(), row, models::LayerKvView(l, kv.data(), layer), l.num_kv_heads, {&seq, 1});
  }
}

// Batch-1 decode tok/s with `context` tokens already cached (0 and a message on error).
double DecodeAt(models::Model& model, KvDtype dtype, int context, int steps) {
  constexpr int kWarmup = 2;
  const int total = context + kWarmup + steps;
  kvstore::CpuKvStorage kv(model.KvLayoutFor(kBlock, dtype), total / kBlock + 1);
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable table;
  if (absl::Status s = table.EnsureCapacity(total, kBlock, allocator); !s.ok()) {
    std::fprintf(stderr, "kv_cache_bench: %s\n", std::string(s.message()).c_str());
    return 0;
  }
  FillContext(kv, table, context);
  std::vector<float> logits;
  int32_t token = 1;
  Clock::time_point t0;
  for (int step = 0; step < kWarmup + steps; ++step) {
    if (step == kWarmup) t0 = Clock::now();
    models::SequenceInput s{{&token, 1}, context + step, table.blocks(), false};
    if (absl::Status f = model.Forward({&s, 1}, kv, &logits); !f.ok()) {
      std::fprintf(stderr, "kv_cache_bench: %s\n", std::string(f.message()).c_str());
      return 0;
    }
    token = models::ArgMax(logits.data(), model.spec().vocab_size);
  }
  return steps / std::chrono::duration<double>(Clock::now() - t0).count();
}

int Main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, &flags)) return 2;
  const models::ModelSpec spec = TinyLlamaSpec();
  std::printf("building synthetic TinyLlama-1.1B (bf16, random weights)...\n");
  models::ModelOptions options;
  options.num_threads = flags.threads;
  std::unique_ptr<models::Model> model;
  {
    SyntheticLlama source(spec, 1, DType::kBF16);
    model = *models::Model::Create(spec, source, options);
  }
  ThreadPool pool(model->num_threads());
  const double bandwidth = MemoryReadBandwidth(pool);
  const double weights = static_cast<double>(model->decode_bytes_per_token());
  std::printf("threads %d, weights read per decoded token %.2f GB\n", model->num_threads(), weights / 1e9);
  std::printf("memory read bandwidth (this run)   %8.1f GB/s\n\n", bandwidth);

  const int64_t pool_bytes = static_cast<int64_t>(flags.pool_mb) << 20;
  const int seq_tokens = flags.contexts.front();
  std::printf("capacity of a %d MiB pool (block %d tokens):\n", flags.pool_mb, kBlock);
  const std::string seqs_header = "seqs of " + std::to_string(seq_tokens);
  std::printf("%-9s %12s %10s %14s %10s\n", "dtype", "block bytes", "blocks", seqs_header.c_str(), "vs f32");
  int64_t f32_blocks = 0;
  for (KvDtype d : kDtypes) {
    const int64_t block_bytes = model->KvLayoutFor(kBlock, d).block_bytes();
    const int64_t blocks = pool_bytes / block_bytes;
    if (d == KvDtype::kF32) f32_blocks = blocks;
    std::printf("%-9s %12lld %10lld %14lld %9.2fx\n", KvDtypeName(d), static_cast<long long>(block_bytes),
                static_cast<long long>(blocks), static_cast<long long>(blocks / ((seq_tokens + kBlock - 1) / kBlock)),
                static_cast<double>(blocks) / f32_blocks);
  }

  std::printf("\nbatch-1 decode (%d steps after 2 warm-up steps):\n", flags.steps);
  std::printf("%-9s %8s %14s %10s %9s %12s\n", "dtype", "context", "KV read/token", "tok/s", "vs f32", "GB/s (frac)");
  for (int context : flags.contexts) {
    double f32_tps = 0;
    for (KvDtype d : kDtypes) {
      const double kv_bytes = static_cast<double>(model->KvLayoutFor(kBlock, d).block_bytes()) * context / kBlock;
      const double tps = DecodeAt(*model, d, context, flags.steps);
      if (d == KvDtype::kF32) f32_tps = tps;
      const double gbs = tps * (weights + kv_bytes) / 1e9;
      std::printf("%-9s %8d %11.0f MB %10.2f %8.2fx %6.1f (%.2f)\n", KvDtypeName(d), context, kv_bytes / 1e6, tps,
                  tps / f32_tps, gbs, gbs / bandwidth);
    }
  }
  return 0;
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) { return tessera::bench::Main(argc, argv); }
