// A tensor-parallel replica group whose two ranks live in separate network namespaces
// made by the test (ip netns + a veth pair on 10.77.0.0/24), so their collectives
// really cross an interface. A blackhole route for the subnet in the root namespace
// keeps any stray packet on this machine; everything is removed afterwards. Skips
// with a message where namespaces cannot be created (no root, no CAP_NET_ADMIN).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "models/generate.h"
#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/safetensors_writer.h"

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
  std::string dir_;
  std::vector<pid_t> pids_;
};

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

}  // namespace
}  // namespace tessera
