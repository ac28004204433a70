// Time to weights-ready for a TinyLlama-1.1B-shaped checkpoint (random BF16, 2.2 GB):
// Model::Load from the checkpoint, and from the packed-weight cache (--weight-cache,
// models/weight_cache.h), against reading the checkpoint with read(2), cold (the
// files' pages dropped from the page cache with posix_fadvise DONTNEED) and warm, in
// one run.
//
//   build/bin/load_bench [--dir DIR] [--threads N] [--repeat N]
//
// The checkpoint is written into DIR (default /tmp/tessera-load-bench) on the first
// run and reused after; the cache goes to DIR/weight-cache, written by this run.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "bench/synthetic_model.h"
#include "common/aligned_buffer.h"
#include "models/model.h"

namespace tessera::bench {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Drops the file's pages from the page cache (they are clean: nothing to write back).
bool DropFromCache(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED) == 0;
  close(fd);
  return ok;
}

// Reads the whole file as `cat file > /dev/null` does; seconds.
double ReadFile(const std::string& path) {
  const Clock::time_point start = Clock::now();
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    std::perror(path.c_str());
    std::exit(1);
  }
  AlignedBuffer buffer(4 << 20);
  while (read(fd, buffer.data(), buffer.size()) > 0) {
  }
  close(fd);
  return SecondsSince(start);
}

// Loads the model (through the weight cache in `cache_dir` when not empty, which must
// do `expected`); seconds to weights-ready. Sets `*cache_file` to the cache's file and
// `*until_freed` to the seconds until the model is freed, after a cache file's writing.
double LoadModel(const std::string& dir, int threads, const std::string& cache_dir = "",
                 models::WeightCacheUse::Outcome expected = models::WeightCacheUse::Outcome::kOff,
                 std::string* cache_file = nullptr, double* until_freed = nullptr) {
  models::ModelOptions options;
  options.num_threads = threads;
  options.weight_cache_dir = cache_dir;
  const Clock::time_point start = Clock::now();
  auto model = models::Model::Load(dir, options);
  const double seconds = SecondsSince(start);
  if (!model.ok()) {
    std::fprintf(stderr, "load_bench: %s\n", std::string(model.status().message()).c_str());
    std::exit(1);
  }
  if ((*model)->weight_cache().outcome != expected) {
    std::fprintf(stderr, "load_bench: unexpected: %s\n", (*model)->weight_cache().Describe().c_str());
    std::exit(1);
  }
  if (cache_file != nullptr) *cache_file = (*model)->weight_cache().path;
  model->reset();
  if (until_freed != nullptr) *until_freed = SecondsSince(start);
  return seconds;
}

int Main(int argc, char** argv) {
  std::string dir = "/tmp/tessera-load-bench";
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  int repeat = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--dir") {
      dir = argv[i + 1];
    } else if ((flag == "--threads" && absl::SimpleAtoi(argv[i + 1], &threads) && threads > 0) ||
               (flag == "--repeat" && absl::SimpleAtoi(argv[i + 1], &repeat) && repeat > 0)) {
    } else {
      std::fprintf(stderr, "usage: load_bench [--dir DIR] [--threads N] [--repeat N]\n");
      return 2;
    }
  }
  const std::string file = dir + "/model.safetensors";
  if (!std::filesystem::exists(file)) {
    std::printf("writing the TinyLlama-1.1B-shaped checkpoint to %s ...\n", dir.c_str());
    std::filesystem::create_directories(dir);
    const models::ModelSpec spec = TinyLlamaSpec();
    if (absl::Status s = SyntheticLlama(spec).WriteCheckpoint(spec, dir); !s.ok()) {
      std::fprintf(stderr, "load_bench: %s\n", std::string(s.message()).c_str());
      return 1;
    }
  }
  const double gb = static_cast<double>(std::filesystem::file_size(file)) / 1e9;
  std::printf("checkpoint %.2f GB, %d threads; best of %d\n", gb, threads, repeat);

  using Outcome = models::WeightCacheUse::Outcome;
  const std::string cache_dir = dir + "/weight-cache";
  std::filesystem::remove_all(cache_dir);
  sync();  // no earlier run's writes still going to disk while this one writes
  std::string cache_file;
  // A plain load first, in the same state (the process's first, warm checkpoint), to
  // compare the first load with the cache against.
  const double plain_first = LoadModel(dir, threads);
  double written = 0;
  const double write_cache = LoadModel(dir, threads, cache_dir, Outcome::kWriting, &cache_file, &written);

  double read_cold = 1e9, load_cold = 1e9, hit_cold = 1e9, read_warm = 1e9, load_warm = 1e9, hit_warm = 1e9;
  bool cold_ok = true;
  for (int r = 0; r < repeat; ++r) {
    cold_ok = cold_ok && DropFromCache(file);
    read_cold = std::min(read_cold, ReadFile(file));
    cold_ok = cold_ok && DropFromCache(file);
    load_cold = std::min(load_cold, LoadModel(dir, threads));
    cold_ok = cold_ok && DropFromCache(file) && DropFromCache(cache_file);
    hit_cold = std::min(hit_cold, LoadModel(dir, threads, cache_dir, Outcome::kHit));
    read_warm = std::min(read_warm, ReadFile(file));
    load_warm = std::min(load_warm, LoadModel(dir, threads));
    hit_warm = std::min(hit_warm, LoadModel(dir, threads, cache_dir, Outcome::kHit));
  }
  auto row = [&](const char* what, double read_s, double load_s, double hit_s) {
    std::printf("%-5s read %6.2f s (%5.2f GB/s)   load %6.2f s (%5.2f GB/s, %.2fx read)   "
                "from the cache %6.2f s (%5.2f GB/s, %.2fx read)\n",
                what, read_s, gb / read_s, load_s, gb / load_s, load_s / read_s, hit_s, gb / hit_s, hit_s / read_s);
  };
  if (cold_ok) {
    row("cold", read_cold, load_cold, hit_cold);
  } else {
    std::printf("cold: the page cache could not be dropped for %s; cold figures skipped\n", file.c_str());
  }
  row("warm", read_warm, load_warm, hit_warm);
  std::printf("first load with the cache: ready in %.2f s (the load before it, without: %.2f s), its file "
              "(%.2f GB) written %.2f s after the start\n",
              write_cache, plain_first, static_cast<double>(std::filesystem::file_size(cache_file)) / 1e9, written);
  std::filesystem::remove_all(cache_dir);
  return 0;
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) { return tessera::bench::Main(argc, argv); }
