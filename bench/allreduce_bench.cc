// All-reduce latency and bandwidth of the CPU (Gloo) communicator between processes
// on loopback, for hidden-size vectors and larger.
//
//   build/bin/allreduce_bench [--ranks 2] [--iters 2000] [--busy-poll]
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "parallel/communicator.h"

namespace {

int Rank(int rank, int ranks, int iters, bool busy_poll, const std::string& dir) {
  tessera::parallel::FileRendezvousStore store(dir);
  tessera::parallel::GlooOptions options;
  options.busy_poll = busy_poll;
  auto comm = tessera::parallel::CreateGlooCommunicator(rank, ranks, store, options);
  if (!comm.ok()) return 1;
  if (rank == 0) std::printf("%d ranks, loopback TCP (Gloo)%s\n%12s %12s %14s %14s\n", ranks,
                             busy_poll ? ", busy-poll" : "", "floats", "bytes",
                             "latency us", "bus GB/s");
  for (size_t n : {2048, 4096, 8192, 65536, 1 << 20}) {
    std::vector<float> data(n, 1.0f);
    const int reps = n >= 65536 ? std::max(20, iters / 20) : iters;
    for (int i = 0; i < 10; ++i) (void)(*comm)->AllReduceSum(data);  // warm up
    (void)(*comm)->Barrier();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) {
      if (!(*comm)->AllReduceSum(data).ok()) return 2;
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
    // Bus bandwidth as NCCL reports it: 2 (n-1)/n of the buffer crosses each link.
    const double bus = 2.0 * (ranks - 1) / ranks * n * sizeof(float) / seconds / 1e9;
    if (rank == 0) std::printf("%12zu %12zu %14.1f %14.2f\n", n, n * sizeof(float), seconds * 1e6, bus);
    std::fflush(stdout);  // the ranks leave with _exit
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int ranks = 2, iters = 2000;
  bool busy_poll = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--busy-poll") busy_poll = true;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--ranks") (void)absl::SimpleAtoi(argv[i + 1], &ranks);
    if (std::string(argv[i]) == "--iters") (void)absl::SimpleAtoi(argv[i + 1], &iters);
  }
  const std::string dir = (std::filesystem::temp_directory_path() / ("tessera_allreduce_" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  std::vector<pid_t> pids;
  for (int r = 0; r < ranks; ++r) {
    const pid_t pid = fork();
    if (pid == 0) _exit(Rank(r, ranks, iters, busy_poll, dir));
    pids.push_back(pid);
  }
  int failed = 0;
  for (pid_t p : pids) {
    int status;
    waitpid(p, &status, 0);
    failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  std::filesystem::remove_all(dir);
  return failed ? 1 : 0;
}
