// NodesTest: a gtest fixture whose machines are network namespaces made by
// tests/netns/nodes.sh (node0..N-1 on one switch, names in each node's /etc/hosts, a
// blackhole route for the subnet; all removed in TearDown, also on failure). It runs
// tessera processes on chosen nodes and talks to the coordinator from node0 through
// the CLI, since the test process itself sits in the root namespace. Skips where
// namespaces cannot be made (no root / CAP_NET_ADMIN).
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "nlohmann/json.hpp"

namespace tessera::testing {

class NodesTest : public ::testing::Test {
 protected:
  explicit NodesTest(int nodes) : nodes_(nodes) {}
  void SetUp() override;
  void TearDown() override;

  // Runs a shell command on the root namespace: nodes.sh subcommands, ip, tc.
  static bool Sh(const std::string& cmd);
  static std::string NodesScript();

  // Starts `argv` on node `node`, its stderr in `log` under the test's folder.
  pid_t SpawnOn(int node, std::vector<std::string> argv, const std::string& log);
  // A coordinator on node0 serving the golden LLaMA; sets coordinator().
  void StartCoordinator(const std::vector<std::string>& flags = {});
  pid_t StartWorker(int node, const std::vector<std::string>& flags = {});
  const std::string& coordinator() const { return coordinator_; }

  // `tessera info` from node0 (an empty object when it fails).
  nlohmann::json Info();
  int ReadyGroups();
  bool WaitForReadyGroups(int n, int timeout_s = 60);
  // Greedy ids after `prompt` from a client on node0 ("failed" on error).
  std::string Client(const std::vector<int32_t>& prompt, int max_tokens, const std::string& name);
  // tessera-bench serve from node0: the number of failed requests (-1 if it did not
  // report all of them).
  int Load(int prompts, int concurrency, const std::string& name);
  // Bytes node `node`'s interface has received.
  int64_t RxBytes(int node);

  std::string dir_;
  std::vector<pid_t> pids_;

 private:
  int nodes_;
  std::string coordinator_;
};

// proto3 JSON writes 64-bit integers as strings.
int64_t JsonInt(const nlohmann::json& j);
// The golden LLaMA's greedy continuation, comma-separated as `tessera client` prints it.
std::string GoldenReference(const std::vector<int32_t>& prompt, int n);

}  // namespace tessera::testing
