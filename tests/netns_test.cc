// Two nodes as network namespaces made by the test (ip netns + a veth pair on
// 10.77.0.0/24): a tensor-parallel group whose ranks' collectives really cross an
// interface, and a KV prefix fetched from one node's workers by the other's. A blackhole route for the subnet in the root namespace
// keeps any stray packet on this machine; everything is removed afterwards. Skips
// with a message where namespaces cannot be created (no root, no CAP_NET_ADMIN).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <future>

#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/generate.h"
#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/safetensors_writer.h"
#include "nlohmann/json.hpp"

namespace tessera {
namespace {

const std::string kNsA = "tessera-test-a", kNsB = "tessera-test-b";
const std::string kSubnet = "10.77.0.0/24", kIpA = "10.77.0.1", kIpB = "10.77.0.2";

bool Sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// Runs `cmd` (through the shell), its stdout into `out`.
bool ShInto(const std::string& cmd, const std::string& out) {
  return std::system((cmd + " > " + out + " 2>&1").c_str()) == 0;
}

using testing::BinaryPath;

// A tessera binary run inside network namespace `ns`.
pid_t SpawnIn(const std::string& ns, std::vector<std::string> argv, const std::string& log) {
  argv.insert(argv.begin(), {"/usr/sbin/ip", "netns", "exec", ns});
  return testing::SpawnProcess(argv, log);
}

class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Cleanup();
    if (!Sh("ip netns add " + kNsA)) GTEST_SKIP() << "cannot create network namespaces here (needs root / CAP_NET_ADMIN)";
    ASSERT_TRUE(Sh("ip route add blackhole " + kSubnet));  // nothing for this subnet leaves the machine
    ASSERT_TRUE(Sh("ip netns add " + kNsB));
    ASSERT_TRUE(Sh("ip link add tsa type veth peer name tsb"));
    ASSERT_TRUE(Sh("ip link set tsa netns " + kNsA) && Sh("ip link set tsb netns " + kNsB));
    ASSERT_TRUE(Sh("ip -n " + kNsA + " addr add " + kIpA + "/24 dev tsa") &&
                Sh("ip -n " + kNsB + " addr add " + kIpB + "/24 dev tsb"));
    for (const auto& [ns, dev] : {std::pair{kNsA, "tsa"}, std::pair{kNsB, "tsb"}}) {
      ASSERT_TRUE(Sh("ip -n " + ns + " link set lo up") && Sh("ip -n " + ns + " link set " + dev + " up"));
    }
    dir_ = testing::MakeTempDir("netns");
  }
  void TearDown() override {
    for (pid_t p : pids_) kill(p, SIGKILL);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
    Cleanup();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  static void Cleanup() {
    Sh("ip netns del " + kNsA);
    Sh("ip netns del " + kNsB);
    Sh("ip route del blackhole " + kSubnet);
  }
  static int64_t RxBytes(const std::string& ns, const std::string& dev) {
    const std::string file = testing::MakeTempDir("netns_rx") + "/rx";
    ShInto("ip netns exec " + ns + " cat /sys/class/net/" + dev + "/statistics/rx_bytes", file);
    int64_t n = 0;
    std::ifstream(file) >> n;
    return n;
  }
  // Starts a coordinator in namespace A with `flags`; its address.
  std::string StartCoordinator(const std::vector<std::string>& flags) {
    const std::string port_file = dir_ + "/port";
    std::vector<std::string> argv = {BinaryPath("tessera-coordinator"), "--model", testing::GoldenModelDir("llama"),
                                     "--listen", kIpA + ":0", "--port-file", port_file, "--heartbeat-ms", "100"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    pids_.push_back(SpawnIn(kNsA, argv, dir_ + "/coordinator.log"));
    const std::string port = testing::WaitForPortFile(port_file);
    return port.empty() ? "" : kIpA + ":" + port;
  }
  void StartWorker(const std::string& ns, const std::string& ip, const std::string& coordinator,
                   const std::vector<std::string>& flags = {}) {
    std::vector<std::string> argv = {BinaryPath("tessera-worker"), "--coordinator", coordinator, "--listen", ip + ":0",
                                     "--threads", "1"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    pids_.push_back(SpawnIn(ns, argv, dir_ + "/worker-" + ns + ".log"));
  }
  // `tessera info` from inside namespace A.
  nlohmann::json Info(const std::string& coordinator) {
    const std::string out = dir_ + "/info.json";
    if (!ShInto("ip netns exec " + kNsA + " " + BinaryPath("tessera") + " info --address " + coordinator, out)) return {};
    return nlohmann::json::parse(std::ifstream(out), nullptr, /*allow_exceptions=*/false);
  }
  // Greedy ids after `prompt`, served through a client in namespace A.
  std::string Client(const std::string& coordinator, const std::vector<int32_t>& prompt, int max_tokens,
                     const std::string& name) {
    const std::string out = dir_ + "/" + name + ".out";
    if (!ShInto("ip netns exec " + kNsA + " " + BinaryPath("tessera") + " client --address " + coordinator +
                    " --ids " + absl::StrJoin(prompt, ",") + " --max-tokens " + std::to_string(max_tokens) +
                    " --temperature 0 --wait-ready 60",
                out)) {
      return "failed";
    }
    std::string served;
    std::getline(std::ifstream(out), served);
    return served;
  }
  std::string dir_;
  std::vector<pid_t> pids_;
};

// proto3 JSON writes 64-bit integers as strings.
int64_t JsonInt(const nlohmann::json& j) {
  if (j.is_string()) return std::stoll(j.get<std::string>());
  return j.is_number() ? j.get<int64_t>() : 0;
}

std::string Reference(const std::vector<int32_t>& prompt, int n) {
  auto model = models::Model::Load(testing::GoldenModelDir("llama"));
  models::GreedyOptions greedy;
  greedy.max_new_tokens = n;
  return absl::StrJoin(*models::GenerateGreedy(**model, prompt, greedy), ",");
}

TEST_F(NetnsTest, TensorParallelRanksAcrossAnInterface) {
  const std::string model = testing::GoldenModelDir("llama");
  const std::string port_file = dir_ + "/port";
  pids_.push_back(SpawnIn(kNsA,
                          {BinaryPath("tessera-coordinator"), "--model", model, "--listen", kIpA + ":0", "--port-file",
                           port_file, "--tp", "2", "--heartbeat-ms", "100"},
                          dir_ + "/coordinator.log"));
  const std::string port = testing::WaitForPortFile(port_file);
  ASSERT_FALSE(port.empty()) << "coordinator did not start";
  const std::string coordinator = kIpA + ":" + port;
  pids_.push_back(SpawnIn(kNsA, {BinaryPath("tessera-worker"), "--coordinator", coordinator, "--listen", kIpA + ":0", "--threads", "1"},
                          dir_ + "/worker-a.log"));
  pids_.push_back(SpawnIn(kNsB, {BinaryPath("tessera-worker"), "--coordinator", coordinator, "--listen", kIpB + ":0", "--threads", "1"},
                          dir_ + "/worker-b.log"));
  const int64_t rx_before = RxBytes(kNsB, "tsb");

  const std::vector<int32_t> prompt = {3, 14, 15, 92, 65, 35};
  const std::string out = dir_ + "/client.out";
  ASSERT_TRUE(ShInto("ip netns exec " + kNsA + " " + BinaryPath("tessera") + " client --address " + coordinator + " --ids " +
                         absl::StrJoin(prompt, ",") + " --max-tokens 16 --temperature 0 --wait-ready 60",
                     out))
      << "client failed; logs in " << dir_;
  std::string served;
  std::getline(std::ifstream(out), served);

  auto reference = models::Model::Load(model);
  ASSERT_TRUE(reference.ok());
  models::GreedyOptions greedy;
  greedy.max_new_tokens = 16;
  EXPECT_EQ(served, absl::StrJoin(*models::GenerateGreedy(**reference, prompt, greedy), ","));
  // Step streams, weights loading and the all-reduces crossed the veth pair.
  EXPECT_GT(RxBytes(kNsB, "tsb") - rx_before, 10000);
}

// A KV prefix cached by a group on node A is fetched over the veth pair by a group on
// node B (the bulk data plane between the workers' block servers) instead of being
// recomputed, and the output is exact.
TEST_F(NetnsTest, RemotePrefixFetchCrossesNodes) {
  const std::string coordinator = StartCoordinator({"--host-kv-blocks", "64", "--block-size", "16"});
  ASSERT_FALSE(coordinator.empty()) << "coordinator did not start";
  StartWorker(kNsA, kIpA, coordinator, {"--step-delay-ms", "10"});
  std::vector<int32_t> prefix(64);
  for (int i = 0; i < 64; ++i) prefix[i] = (i * 43 + 17) % 320;
  auto with = [&](std::initializer_list<int32_t> tail) {
    std::vector<int32_t> p = prefix;
    p.insert(p.end(), tail);
    return p;
  };
  ASSERT_NE(Client(coordinator, with({1}), 4, "first"), "failed") << "logs in " << dir_;  // cached on node A
  StartWorker(kNsB, kIpB, coordinator);
  bool ready = false;
  for (int i = 0; i < 300 && !ready; ++i) {
    const nlohmann::json info = Info(coordinator);
    int groups = 0;
    for (const auto& g : info.value("groups", nlohmann::json::array())) groups += g.value("state", "") == "READY";
    ready = groups == 2 && JsonInt(info["kvIndex"]["entries"]) >= 4;
    if (!ready) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(ready) << "logs in " << dir_;
  // Node A's group busy with a long request on the same prefix: the next one goes to B.
  auto busy = std::async(std::launch::async, [&] { return Client(coordinator, with({7}), 60, "busy"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const int64_t rx_before = RxBytes(kNsB, "tsb");
  const std::vector<int32_t> second = with({5, 6});
  EXPECT_EQ(Client(coordinator, second, 16, "second"), Reference(second, 16)) << "logs in " << dir_;
  const int64_t rx = RxBytes(kNsB, "tsb") - rx_before;
  EXPECT_NE(busy.get(), "failed");
  int64_t fetched = 0;
  const nlohmann::json info = Info(coordinator);
  for (const auto& g : info["groups"]) fetched += JsonInt(g.value("remoteFetchedBlocks", nlohmann::json()));
  EXPECT_EQ(fetched, 4) << info.dump();
  auto model = models::Model::Load(testing::GoldenModelDir("llama"));
  const int64_t block_bytes = (*model)->KvLayoutFor(16).block_elems() * 4;
  EXPECT_GT(rx, 4 * block_bytes);  // the blocks came over the link
}

}  // namespace
}  // namespace tessera
