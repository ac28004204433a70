// The Gloo communicator with real processes on loopback: every collective at group
// sizes 2, 3 and 4, and a dead peer that must not hang the survivors.
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>

#include <gtest/gtest.h>

#include "parallel/communicator.h"
#include "tests/safetensors_writer.h"

namespace tessera::parallel {
namespace {

// Runs `body(rank)` in `size` forked processes; returns their exit codes.
std::vector<int> RunRanks(int size, const std::function<int(int)>& body) {
  std::vector<pid_t> pids;
  for (int r = 0; r < size; ++r) {
    const pid_t pid = fork();
    if (pid == 0) _exit(body(r));
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t p : pids) {
    int status = 0;
    waitpid(p, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }
  return codes;
}

// Each check returns a distinct exit code so a failure says which collective broke.
int Collectives(int rank, int size, bool busy_poll, const std::string& dir) {
  FileRendezvousStore store(dir);
  GlooOptions options;
  options.timeout = std::chrono::seconds(20);
  options.busy_poll = busy_poll;
  auto comm = CreateGlooCommunicator(rank, size, store, options);
  if (!comm.ok()) return 10;
  Communicator& c = **comm;
  if (c.rank() != rank || c.size() != size) return 11;

  // A hidden-size vector (the busy-poll path), and a large one (the ring), twice each
  // (the busy-poll path caches its algorithm per buffer).
  for (size_t n : {2048, 2048, 300000, 300000}) {
    std::vector<float> data(n);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<float>(rank + i % 1000);
    if (!c.AllReduceSum(data).ok()) return 20;
    for (size_t i = 0; i < data.size(); ++i) {
      if (data[i] != static_cast<float>(size * (i % 1000) + size * (size - 1) / 2)) return 21;
    }
  }

  const std::vector<float> mine = {static_cast<float>(rank), static_cast<float>(rank * 10)};
  std::vector<float> all(2 * size);
  if (!c.AllGather(mine, all).ok()) return 30;
  for (int p = 0; p < size; ++p) {
    if (all[2 * p] != p || all[2 * p + 1] != p * 10) return 31;
  }

  std::vector<float> b(5, static_cast<float>(rank));
  if (!c.Broadcast(b, size - 1).ok()) return 40;
  for (float v : b) {
    if (v != size - 1) return 41;
  }

  // Rank r sends p+1 values r*100+p to rank p; receives r+1 values from each rank.
  std::vector<int64_t> send_counts(size), recv_counts(size, rank + 1);
  std::vector<float> send;
  for (int p = 0; p < size; ++p) {
    send_counts[p] = p + 1;
    send.insert(send.end(), p + 1, static_cast<float>(rank * 100 + p));
  }
  std::vector<float> recv(static_cast<size_t>(size) * (rank + 1));
  if (!c.AllToAllV(send, send_counts, recv, recv_counts).ok()) return 50;
  for (int p = 0; p < size; ++p) {
    for (int k = 0; k < rank + 1; ++k) {
      if (recv[p * (rank + 1) + k] != p * 100 + rank) return 51;
    }
  }
  if (!c.Barrier().ok()) return 60;
  return 0;
}

// (group size, busy-poll small all-reduces)
class CommunicatorTest : public ::testing::TestWithParam<std::pair<int, bool>> {};

TEST_P(CommunicatorTest, EveryCollectiveAcrossProcesses) {
  const auto [size, busy_poll] = GetParam();
  const std::string dir = testing::MakeTempDir("gloo" + std::to_string(size) + (busy_poll ? "b" : ""));
  const std::vector<int> codes = RunRanks(size, [&](int rank) { return Collectives(rank, size, busy_poll, dir); });
  EXPECT_EQ(codes, std::vector<int>(size, 0));
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(GroupSizes, CommunicatorTest,
                         ::testing::Values(std::pair{2, false}, std::pair{3, false}, std::pair{4, false},
                                           std::pair{2, true}, std::pair{3, true}),
                         [](const ::testing::TestParamInfo<std::pair<int, bool>>& info) {
                           return std::to_string(info.param.first) + (info.param.second ? "_busy_poll" : "");
                         });

// Rank 1 leaves after connecting; rank 0's all-reduce must fail within its timeout,
// with sleeping waits and with busy polling.
TEST(CommunicatorFailureTest, DeadPeerFailsTheCollectiveInsteadOfHanging) {
  for (bool busy_poll : {false, true}) {
    const std::string dir = testing::MakeTempDir(busy_poll ? "gloo_dead_busy" : "gloo_dead");
    const auto start = std::chrono::steady_clock::now();
    const std::vector<int> codes = RunRanks(2, [&](int rank) {
      FileRendezvousStore store(dir);
      GlooOptions options;
      options.timeout = std::chrono::seconds(3);
      options.busy_poll = busy_poll;
      auto comm = CreateGlooCommunicator(rank, 2, store, options);
      if (!comm.ok()) return 10;
      if (!(*comm)->Barrier().ok()) return 11;  // both fully connected
      if (rank == 1) _exit(0);                  // then gone without a word
      std::vector<float> data(1024, 1.0f);
      absl::Status s = (*comm)->AllReduceSum(data);
      return s.ok() ? 20 : 0;
    });
    EXPECT_EQ(codes, (std::vector<int>{0, 0})) << "busy_poll=" << busy_poll;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
    std::filesystem::remove_all(dir);
  }
}

TEST(CommunicatorFailureTest, MissingPeerFailsTheRendezvous) {
  const std::string dir = testing::MakeTempDir("gloo_missing");
  FileRendezvousStore store(dir);
  GlooOptions options;
  options.timeout = std::chrono::milliseconds(500);
  const std::vector<int> codes = RunRanks(1, [&](int) {
    auto comm = CreateGlooCommunicator(0, 2, store, options);  // rank 1 never comes
    return comm.ok() ? 1 : 0;
  });
  EXPECT_EQ(codes, std::vector<int>{0});
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tessera::parallel
