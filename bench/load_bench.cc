// Time to weights-ready for a TinyLlama-1.1B-shaped checkpoint (random BF16, 2.2 GB):
// Model::Load against reading the same file with read(2), cold (the file's pages
// dropped from the page cache with posix_fadvise DONTNEED) and warm, in one run.
//
//   build/bin/load_bench [--dir DIR] [--threads N] [--repeat N]
//
// The checkpoint is written into DIR (default /tmp/tessera-load-bench) on the first
// run and reused after.
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

double LoadModel(const std::string& dir, int threads) {
  models::ModelOptions options;
  options.num_threads = threads;
  const Clock::time_point start = Clock::now();
  auto model = models::Model::Load(dir, options);
  if (!model.ok()) {
    std::fprintf(stderr, "load_bench: %s\n", std::string(model.status().message()).c_str());
    std::exit(1);
  }
  return SecondsSince(start);
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

  double read_cold = 1e9, load_cold = 1e9, read_warm = 1e9, load_warm = 1e9;
  bool cold_ok = true;
  for (int r = 0; r < repeat; ++r) {
    cold_ok = cold_ok && DropFromCache(file);
    read_cold = std::min(read_cold, ReadFile(file));
    cold_ok = cold_ok && DropFromCache(file);
    load_cold = std::min(load_cold, LoadModel(dir, threads));
    read_warm = std::min(read_warm, ReadFile(file));
    load_warm = std::min(load_warm, LoadModel(dir, threads));
  }
  auto row = [&](const char* what, double read_s, double load_s) {
    std::printf("%-5s read %6.2f s (%5.2f GB/s)   load %6.2f s (%5.2f GB/s)   load/read %.2f\n", what, read_s,
                gb / read_s, load_s, gb / load_s, load_s / read_s);
  };
  if (cold_ok) {
    row("cold", read_cold, load_cold);
  } else {
    std::printf("cold: the page cache could not be dropped for %s; cold figures skipped\n", file.c_str());
  }
  row("warm", read_warm, load_warm);
  return 0;
}

}  // namespace
}  // namespace tessera::bench

int main(int argc, char** argv) { return tessera::bench::Main(argc, argv); }
