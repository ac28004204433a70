// Single-process engine benchmark on a synthetic TinyLlama-1.1B-shaped model with
// random BF16 (or F16) weights: batch-1 decode, batched decode and 512-token prefill,
// each set against a limit measured in the same run (memory read bandwidth, fp32 FMA
// peak, bf16 dot peak), at the CPU kernel level selected (kernels/cpu_isa.h).
//
//   build/bin/engine_bench [--threads N] [--prompt 512] [--decode-steps 64] [--batch 16] [--tp 2]
//                          [--cpu-isa LEVEL] [--dtype bf16|f16] [--batch-invariant]
//   build/bin/engine_bench --mixtral --ep 2 ...   (Mixtral-shaped: EP=2 against TP=2)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/numbers.h"
#include "bench/machine_limits.h"
#include "bench/synthetic_model.h"
#include "common/aligned_buffer.h"
#include "common/thread_pool.h"
#include "kernels/cpu_isa.h"
#include "kvstore/block_allocator.h"
#include "kvstore/cpu_kv_storage.h"
#include "models/generate.h"
#include "models/model.h"
#include "parallel/communicator.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }

struct Flags {
  int threads = 0;
  int prompt = 512;
  int decode_steps = 64;
  int batch = 16;
  int tp = 0;  // > 1: also decode with TP ranks as processes, one thread each
  int ep = 0;  // > 1 (with --mixtral): also decode with EP ranks as processes
  bool mixtral = false;  // the Mixtral-shaped model instead of TinyLlama
  bool batch_invariant = false;  // exact fp32-activation matmuls at every batch size
  DType dtype = DType::kBF16;
  kernels::CpuIsa isa = kernels::BestCpuIsa();
};

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    if (name == "--mixtral" || name == "--batch-invariant") {
      (name == "--mixtral" ? f.mixtral : f.batch_invariant) = true;
      continue;
    }
    if (name == "--cpu-isa" && i + 1 < argc) {
      auto isa = kernels::ParseCpuIsa(argv[++i]);
      if (!isa.ok()) {
        std::fprintf(stderr, "engine_bench: %s\n", std::string(isa.status().message()).c_str());
        std::exit(2);
      }
      f.isa = *isa;
      continue;
    }
    if (name == "--dtype" && i + 1 < argc) {
      const std::string dtype = argv[++i];
      if (dtype != "bf16" && dtype != "f16") {
        std::fprintf(stderr, "engine_bench: --dtype must be bf16 or f16\n");
        std::exit(2);
      }
      f.dtype = dtype == "f16" ? DType::kF16 : DType::kBF16;
      continue;
    }
    int value = 0;
    if (i + 1 >= argc || !absl::SimpleAtoi(argv[i + 1], &value)) continue;
    ++i;
    if (name == "--threads") f.threads = value;
    if (name == "--prompt") f.prompt = value;
    if (name == "--decode-steps") f.decode_steps = value;
    if (name == "--batch") f.batch = value;
    if (name == "--tp") f.tp = value;
    if (name == "--ep") f.ep = value;
  }
  return f;
}

// Matmul FLOPs of a forward over `tokens` new tokens with `context` before them, logits
// for the last token only; attention counts QK and PV over the causal triangle.
double ForwardFlops(const models::ModelSpec& s, int64_t tokens, int64_t context) {
  const double h = s.hidden_size, q = s.q_size(), kv = s.kv_size(), inner = s.intermediate_size;
  const double experts_run = s.is_moe() ? s.experts_per_token : 1;  // MoE: the top-k experts
  const double per_token = h * (q + 2 * kv) + q * h + experts_run * 3 * h * inner + (s.is_moe() ? h * s.num_experts : 0);
  double attended = 0;
  for (int64_t t = 0; t < tokens; ++t) attended += static_cast<double>(context + t + 1);
  return s.num_layers * (2 * per_token * tokens + 4 * q * attended) + 2 * h * s.vocab_size;
}

// Batch-1 decode tok/s after a short prompt, on a fresh KV cache.
double DecodeTokensPerSecond(models::Model& model, int prompt_len, int steps) {
  const int block = 16;
  kvstore::CpuKvStorage kv(model.KvLayoutFor(block, KvDtype::kF32), (prompt_len + steps) / block + 2);
  kvstore::BlockAllocator allocator(kv.num_blocks());
  kvstore::BlockTable table;
  (void)table.EnsureCapacity(prompt_len + steps + 1, block, allocator);
  std::vector<int32_t> prompt(prompt_len);
  for (int i = 0; i < prompt_len; ++i) prompt[i] = (i * 7919) % model.spec().vocab_size;
  std::vector<float> logits;
  models::SequenceInput seq{prompt, 0, table.blocks(), false};
  if (!model.Forward({&seq, 1}, kv, &logits).ok()) return 0;
  int32_t token = models::ArgMax(logits.data(), model.spec().vocab_size);
  const auto t0 = Clock::now();
  for (int step = 0; step < steps; ++step) {
    models::SequenceInput s{{&token, 1}, prompt_len + step, table.blocks(), false};
    if (!model.Forward({&s, 1}, kv, &logits).ok()) return 0;
    token = models::ArgMax(logits.data(), model.spec().vocab_size);
  }
  return steps / Seconds(t0, Clock::now());
}

// Decode with tp x ep ranks as forked processes (one kernel thread each) sharing the
// synthetic weights; returns rank 0's tok/s.
double ParallelDecode(const models::ModelSpec& spec, const SyntheticLlama& source, int tp, int ep, int prompt_len,
                      int steps, bool busy_poll) {
  const std::string dir = "/tmp/tessera-bench-tp-" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return 0;
  std::vector<pid_t> pids;
  for (int rank = 0; rank < tp * ep; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) {
      parallel::FileRendezvousStore store(dir);
      parallel::GlooOptions gloo;
      gloo.busy_poll = busy_poll;
      gloo.prefix = ep > 1 ? "all" : "tp";
      auto comm = parallel::CreateGlooCommunicator(rank, tp * ep, store, gloo);
      if (!comm.ok()) _exit(1);
      models::ModelOptions options;
      options.num_threads = 1;
      if (ep > 1) {  // experts spread, attention replicated (tp = 1 here)
        options.ep = {rank, ep};
        options.moe_communicator = comm->get();
      } else {
        options.tp = {rank, tp};
        options.communicator = comm->get();
      }
      auto model = models::Model::Create(spec, source, options);
      if (!model.ok()) _exit(1);
      (void)(*comm)->Barrier();
      const double tps = DecodeTokensPerSecond(**model, prompt_len, steps);
      if (rank == 0 && write(pipe_fds[1], &tps, sizeof(tps)) != sizeof(tps)) _exit(1);
      _exit(0);
    }
    pids.push_back(pid);
  }
  close(pipe_fds[1]);
  double tps = 0;
  if (read(pipe_fds[0], &tps, sizeof(tps)) != sizeof(tps)) tps = 0;
  close(pipe_fds[0]);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
  std::filesystem::remove_all(dir);
  return tps;
}

int Main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  if (absl::Status selected = kernels::SelectCpuIsa(flags.isa); !selected.ok()) {
    std::fprintf(stderr, "engine_bench: %s\n", std::string(selected.message()).c_str());
    return 2;
  }
  models::ModelOptions options;
  options.num_threads = flags.threads;
  if (flags.batch_invariant) options.matmul.bf16_activation_min_rows = 0;
  const models::ModelSpec spec = flags.mixtral ? SmallMixtralSpec() : TinyLlamaSpec();
  std::printf("building synthetic %s (%s, random weights)...\n",
              flags.mixtral ? "Mixtral-shaped model (8 experts, top-2)" : "TinyLlama-1.1B",
              std::string(DTypeName(flags.dtype)).c_str());
  std::unique_ptr<models::Model> model;
  auto source = std::make_unique<SyntheticLlama>(spec, 1, flags.dtype);
  model = *models::Model::Create(spec, *source, options);
  if (flags.tp <= 1 && flags.ep <= 1) source.reset();
  ThreadPool pool(model->num_threads());
  const double bandwidth = MemoryReadBandwidth(pool);
  const double fma_peak = Fp32FmaPeak(pool);
  const double bf16_peak = Bf16DotPeak(pool);
  std::printf("CPU kernels %s (this CPU runs up to %s)%s\n", kernels::CpuIsaName(flags.isa),
              kernels::CpuIsaName(kernels::BestCpuIsa()), flags.batch_invariant ? ", batch-invariant" : "");
  std::printf("threads %d, weights %.2f GB, bytes read per decoded token %.2f GB\n", model->num_threads(),
              model->weight_bytes() / 1e9, model->decode_bytes_per_token() / 1e9);
  std::printf("memory read bandwidth (this run)   %8.1f GB/s\n", bandwidth);
  std::printf("fp32 FMA peak (this run)           %8.1f GFLOP/s\n", fma_peak);
  if (bf16_peak > 0) std::printf("bf16 dot peak (this run)           %8.1f GFLOP/s\n", bf16_peak);

  const int block = 16;
  const int64_t max_tokens = flags.prompt + flags.decode_steps + 16;
  kvstore::CpuKvStorage kv(model->KvLayoutFor(block, KvDtype::kF32),
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
  std::printf("prefill %d tokens                  %8.1f tok/s  %6.1f GFLOP/s  = %.2f of fp32 FMA peak", flags.prompt,
              flags.prompt / prefill_s, prefill_gflops, prefill_gflops / fma_peak);
  if (bf16_peak > 0) std::printf(", %.2f of bf16 peak", prefill_gflops / bf16_peak);
  std::printf("\n");

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

  // Tensor parallelism: TP ranks as processes with one thread each, against one
  // process with all threads, back to back on the same machine.
  if (flags.tp > 1 || flags.ep > 1) {
    const int context = 128, steps = std::max(8, flags.decode_steps / 2);
    const double single = DecodeTokensPerSecond(*model, context, steps);
    const int threads = model->num_threads();
    model.reset();
    if (flags.ep > 1) {
      const double ep = ParallelDecode(spec, *source, 1, flags.ep, context, steps, /*busy_poll=*/true);
      const double tp = ParallelDecode(spec, *source, flags.ep, 1, context, steps, /*busy_poll=*/true);
      std::printf("decode batch 1, context %d: one process (%d threads) %.1f tok/s; EP=%d %.1f tok/s (%.2f); "
                  "TP=%d %.1f tok/s (%.2f); EP/TP = %.2f\n",
                  context, threads, single, flags.ep, ep, ep / single, flags.ep, tp, tp / single, tp > 0 ? ep / tp : 0.0);
      return 0;
    }
    for (bool busy_poll : {false, true}) {
      const double sharded = ParallelDecode(spec, *source, flags.tp, 1, context, steps, busy_poll);
      std::printf("decode batch 1, context %d: TP=1 (%d threads) %.1f tok/s, TP=%d (%d processes x 1 thread, %s)"
                  " %.1f tok/s = %.2f of TP=1\n",
                  context, threads, single, flags.tp, flags.tp, busy_poll ? "busy-poll" : "sleeping waits", sharded,
                  single > 0 ? sharded / single : 0.0);
    }
  }
  return 0;
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) { return tessera::bench::Main(argc, argv); }
