// Tier 1 of the deployment tests: a cluster spread over nodes that are network
// namespaces on one switch (tests/netns/nodes.sh: real IPs, node names in each node's
// /etc/hosts, a blackhole route for the subnet, everything removed afterwards). The
// coordinator runs on node0, workers on the others; clients and the load generator
// (tessera-bench serve) run on node0 too. Skips where namespaces cannot be made.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_join.h"
#include "models/generate.h"
#include "models/model.h"
#include "nlohmann/json.hpp"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/safetensors_writer.h"

namespace tessera {
namespace {

const std::string kNodes = std::string(TESSERA_SOURCE_DIR) + "/tests/netns/nodes.sh";

bool Sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }
// Runs `cmd`, its stdout into the file `out`.
bool ShInto(const std::string& cmd, const std::string& out) {
  return std::system((cmd + " > " + out + " 2>/dev/null").c_str()) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

int64_t JsonInt(const nlohmann::json& j) {  // proto3 JSON writes 64-bit integers as strings
  if (j.is_string()) return std::stoll(j.get<std::string>());
  return j.is_number() ? j.get<int64_t>() : 0;
}

class ClusterNetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!Sh(kNodes + " up 5")) {
      Sh(kNodes + " down");
      GTEST_SKIP() << "cannot create network namespaces here (needs root / CAP_NET_ADMIN)";
    }
    dir_ = testing::MakeTempDir("cluster_netns");
  }
  void TearDown() override {
    for (pid_t p : pids_) kill(p, SIGKILL);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
    Sh(kNodes + " down");
    if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
  }

  pid_t SpawnOn(int node, std::vector<std::string> argv, const std::string& log) {
    argv.insert(argv.begin(), {kNodes, "exec", std::to_string(node)});
    const pid_t pid = testing::SpawnProcess(argv, dir_ + "/" + log);
    pids_.push_back(pid);
    return pid;
  }
  void StartCoordinator() {
    const std::string port_file = dir_ + "/port";
    SpawnOn(0,
            {testing::BinaryPath("tessera-coordinator"), "--model", testing::GoldenModelDir("llama"), "--listen",
             "0.0.0.0:0", "--port-file", port_file, "--heartbeat-ms", "100", "--heartbeat-timeout-ms", "1500"},
            "coordinator.log");
    const std::string port = testing::WaitForPortFile(port_file);
    ASSERT_FALSE(port.empty()) << "coordinator did not start; logs in " << dir_;
    coordinator_ = "node0:" + port;  // by name, through node0's /etc/hosts
  }
  pid_t StartWorker(int node, std::vector<std::string> flags = {}) {
    std::vector<std::string> argv = {testing::BinaryPath("tessera-worker"), "--coordinator", coordinator_, "--listen",
                                     "0.0.0.0:0", "--threads", "1"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    return SpawnOn(node, argv, "worker-node" + std::to_string(node) + ".log");
  }
  nlohmann::json Info() {
    const std::string out = dir_ + "/info.json";
    nlohmann::json info = nlohmann::json::object();
    if (ShInto(kNodes + " exec 0 " + testing::BinaryPath("tessera") + " info --address " + coordinator_, out)) {
      info = nlohmann::json::parse(ReadFile(out), nullptr, /*allow_exceptions=*/false);
    }
    return info.is_object() ? info : nlohmann::json::object();
  }
  int ReadyGroups() {
    int ready = 0;
    const nlohmann::json info = Info();
    for (const auto& g : info.value("groups", nlohmann::json::array())) ready += g.value("state", "") == "READY";
    return ready;
  }
  bool WaitForReadyGroups(int n, std::chrono::seconds timeout = std::chrono::seconds(60)) {
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < until) {
      if (ReadyGroups() == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return false;
  }
  // Greedy ids after `prompt`, from a client on node0.
  std::string Client(const std::vector<int32_t>& prompt, int max_tokens, const std::string& name) {
    const std::string out = dir_ + "/" + name + ".out";
    if (!ShInto(kNodes + " exec 0 " + testing::BinaryPath("tessera") + " client --address " + coordinator_ + " --ids " +
                    absl::StrJoin(prompt, ",") + " --max-tokens " + std::to_string(max_tokens) + " --temperature 0",
                out)) {
      return "failed";
    }
    std::string line;
    std::getline(std::ifstream(out), line);
    return line;
  }
  // Runs tessera-bench serve on node0; the number of failed requests (-1 if it did
  // not report).
  int Load(int prompts, int concurrency, const std::string& name) {
    const std::string out = dir_ + "/" + name + ".out";
    std::system((kNodes + " exec 0 " + testing::BinaryPath("tessera-bench") + " serve --address " + coordinator_ +
                 " --num-prompts " + std::to_string(prompts) + " --concurrency " + std::to_string(concurrency) +
                 " --input-len 24 --output-len 24 > " + out + " 2>&1")
                    .c_str());
    std::smatch m;
    const std::string text = ReadFile(out);
    if (!std::regex_search(text, m, std::regex(R"(successful requests\s+(\d+) \(failed (\d+)\))"))) return -1;
    return std::stoi(m[1]) == prompts ? std::stoi(m[2]) : -1;
  }

  std::string dir_, coordinator_;
  std::vector<pid_t> pids_;
};

bool Running(std::future<int>& load) { return load.wait_for(std::chrono::seconds(0)) == std::future_status::timeout; }

std::string Reference(const std::vector<int32_t>& prompt, int n) {
  auto model = models::Model::Load(testing::GoldenModelDir("llama"));
  models::GreedyOptions greedy;
  greedy.max_new_tokens = n;
  return absl::StrJoin(*models::GenerateGreedy(**model, prompt, greedy), ",");
}

// A TP=2 group spanning node1 and node2, a worker behind a 100 Mbit/s link (node3) and
// one behind a 20 ms delay line (node4): every group serves, every answer is exact.
TEST_F(ClusterNetnsTest, GenerationIsExactOverCappedDelayedAndSpanningLinks) {
  ASSERT_TRUE(Sh(kNodes + " cap 3 100mbit"));
  ASSERT_TRUE(Sh(kNodes + " delay 4 20"));
  StartCoordinator();
  StartWorker(1, {"--tp", "2", "--group", "spanning"});
  StartWorker(2, {"--tp", "2", "--group", "spanning"});
  StartWorker(3);
  StartWorker(4);
  ASSERT_TRUE(WaitForReadyGroups(3)) << "logs in " << dir_;
  std::vector<std::vector<int32_t>> prompts;
  for (int r = 0; r < 9; ++r) {
    prompts.emplace_back();
    for (int i = 0; i < 20 + r; ++i) prompts.back().push_back((r * 31 + i * 7) % 320);
  }
  std::vector<std::future<std::string>> served;
  for (size_t r = 0; r < prompts.size(); ++r) {
    served.push_back(std::async(std::launch::async, [&, r] { return Client(prompts[r], 12, "req" + std::to_string(r)); }));
  }
  for (size_t r = 0; r < prompts.size(); ++r) EXPECT_EQ(served[r].get(), Reference(prompts[r], 12)) << "request " << r;
  const nlohmann::json info = Info();
  ASSERT_EQ(info["groups"].size(), 3u);
  for (const auto& g : info["groups"]) EXPECT_GT(JsonInt(g["prefixCacheLookups"]), 0) << g.dump();  // it admitted some
}

// node2 is cut off the switch under load: its group is dropped after the heartbeat
// timeout and its requests are recomputed on node1; healed, its worker rejoins.
TEST_F(ClusterNetnsTest, APartitionedNodeLosesNoRequestAndRejoinsWhenHealed) {
  StartCoordinator();
  StartWorker(1, {"--step-delay-ms", "20"});
  StartWorker(2, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(2)) << "logs in " << dir_;
  auto load = std::async(std::launch::async, [&] { return Load(24, 6, "load"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  ASSERT_TRUE(Running(load)) << "the load ended before the partition";
  ASSERT_TRUE(Sh(kNodes + " partition 2"));
  ASSERT_TRUE(WaitForReadyGroups(1)) << "logs in " << dir_;
  EXPECT_EQ(load.get(), 0) << "logs in " << dir_;
  ASSERT_TRUE(Sh(kNodes + " heal 2"));
  EXPECT_TRUE(WaitForReadyGroups(2)) << "logs in " << dir_;
}

TEST_F(ClusterNetnsTest, ANodeKilledMidLoadLosesNoRequest) {
  StartCoordinator();
  for (int node : {1, 2, 3}) StartWorker(node, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(3)) << "logs in " << dir_;
  auto load = std::async(std::launch::async, [&] { return Load(30, 6, "load"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  ASSERT_TRUE(Running(load)) << "the load ended before the kill";
  ASSERT_TRUE(Sh("ip netns pids tessera-node2 | xargs -r kill -9"));  // the whole node dies
  EXPECT_EQ(load.get(), 0) << "logs in " << dir_;
  EXPECT_TRUE(WaitForReadyGroups(2));
}

// 2 -> 3 -> 1 groups under load: a node joins, then two drain (SIGTERM), and no
// request fails.
TEST_F(ClusterNetnsTest, ScalingTwoToThreeToOneGroupsUnderLoadFailsNothing) {
  StartCoordinator();
  const pid_t w1 = StartWorker(1, {"--step-delay-ms", "20"});
  const pid_t w2 = StartWorker(2, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(2)) << "logs in " << dir_;
  auto load = std::async(std::launch::async, [&] { return Load(48, 6, "load"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  StartWorker(3, {"--step-delay-ms", "20"});
  ASSERT_TRUE(WaitForReadyGroups(3)) << "logs in " << dir_;
  ASSERT_TRUE(Running(load)) << "the load ended before the drains";
  kill(w1, SIGTERM);
  kill(w2, SIGTERM);
  ASSERT_TRUE(WaitForReadyGroups(1)) << "logs in " << dir_;
  EXPECT_EQ(load.get(), 0) << "logs in " << dir_;
  for (pid_t w : {w1, w2}) {
    int status = 0;
    waitpid(w, &status, 0);
    std::erase(pids_, w);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a drained worker exits 0";
  }
}

}  // namespace
}  // namespace tessera
