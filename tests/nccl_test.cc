// The NCCL Communicator on real GPUs. Skips where no CUDA device is present; the
// multi-rank case needs one device per rank.
#include <cuda_runtime.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include <gtest/gtest.h>

#include "kernels/cuda/device.h"
#include "parallel/nccl_communicator.h"
#include "tests/safetensors_writer.h"

namespace tessera::parallel {
namespace {

// Each rank on its own device: all-reduce, all-gather and broadcast of device buffers.
int RunRank(int rank, int size, const std::string& dir) {
  FileRendezvousStore store(dir);
  NcclOptions options;
  options.device = rank;
  auto comm = CreateNcclCommunicator(rank, size, store, options);
  if (!comm.ok()) {
    std::fprintf(stderr, "rank %d: %s\n", rank, comm.status().ToString().c_str());
    return 10;
  }
  const size_t n = 4096;
  std::vector<float> host(n);
  for (size_t i = 0; i < n; ++i) host[i] = static_cast<float>(rank + i);
  float *data, *gathered;
  if (cudaMalloc(&data, n * sizeof(float)) != cudaSuccess) return 11;
  if (cudaMalloc(&gathered, n * size * sizeof(float)) != cudaSuccess) return 11;
  cudaMemcpy(data, host.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  if (!(*comm)->AllGather({data, n}, {gathered, n * size}).ok()) return 20;
  if (!(*comm)->AllReduceSum({data, n}).ok()) return 30;
  cudaMemcpy(host.data(), data, n * sizeof(float), cudaMemcpyDeviceToHost);
  for (size_t i = 0; i < n; ++i) {
    if (host[i] != static_cast<float>(size * i + size * (size - 1) / 2)) return 31;
  }
  std::vector<float> all(n * size);
  cudaMemcpy(all.data(), gathered, all.size() * sizeof(float), cudaMemcpyDeviceToHost);
  for (int p = 0; p < size; ++p) {
    if (all[p * n + 1] != static_cast<float>(p + 1)) return 21;
  }
  if (!(*comm)->Barrier().ok()) return 40;
  return 0;
}

// A process that has initialised CUDA cannot fork children that use it, so the device
// count comes from a child of its own and the test process never touches CUDA.
int DeviceCountFromChild() {
  const pid_t pid = fork();
  if (pid == 0) _exit(std::min(kernels::cuda::DeviceCount(), 100));
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 0;
}

TEST(NcclTest, CollectivesOnDeviceBuffers) {
  const int devices = DeviceCountFromChild();
  if (devices == 0) GTEST_SKIP() << "no CUDA device: NCCL tests skipped";
  const int size = std::min(devices, 2);  // one device per rank; a single GPU runs one rank
  const std::string dir = testing::MakeTempDir("nccl");
  std::vector<pid_t> pids;
  for (int r = 0; r < size; ++r) {
    const pid_t pid = fork();
    if (pid == 0) _exit(RunRank(r, size, dir));
    pids.push_back(pid);
  }
  for (pid_t p : pids) {
    int status = 0;
    waitpid(p, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "rank exit " << WEXITSTATUS(status);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera::parallel
