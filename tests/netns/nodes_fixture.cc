#include "tests/netns/nodes_fixture.h"

#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "absl/strings/str_join.h"
#include "models/generate.h"
#include "models/model.h"
#include "tests/golden_fixture.h"
#include "tests/local_cluster.h"
#include "tests/safetensors_writer.h"

namespace tessera::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs `cmd`, its stdout into the file `out`.
bool ShInto(const std::string& cmd, const std::string& out) {
  return std::system((cmd + " > " + out + " 2>/dev/null").c_str()) == 0;
}

}  // namespace

std::string NodesTest::NodesScript() { return std::string(TESSERA_SOURCE_DIR) + "/tests/netns/nodes.sh"; }

bool NodesTest::Sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

void NodesTest::SetUp() {
  if (!Sh(NodesScript() + " up " + std::to_string(nodes_))) {
    Sh(NodesScript() + " down");
    GTEST_SKIP() << "cannot create network namespaces here (needs root / CAP_NET_ADMIN)";
  }
  dir_ = MakeTempDir("nodes");
}

void NodesTest::TearDown() {
  for (pid_t p : pids_) kill(p, SIGKILL);
  for (pid_t p : pids_) waitpid(p, nullptr, 0);
  Sh(NodesScript() + " down");
  if (!dir_.empty() && !HasFailure()) std::filesystem::remove_all(dir_);
}

pid_t NodesTest::SpawnOn(int node, std::vector<std::string> argv, const std::string& log) {
  argv.insert(argv.begin(), {NodesScript(), "exec", std::to_string(node)});
  const pid_t pid = SpawnProcess(argv, dir_ + "/" + log);
  pids_.push_back(pid);
  return pid;
}

void NodesTest::StartCoordinator(const std::vector<std::string>& flags) {
  const std::string port_file = dir_ + "/port";
  std::vector<std::string> argv = {BinaryPath("tessera-coordinator"), "--model", GoldenModelDir("llama"), "--listen",
                                   "0.0.0.0:0", "--port-file", port_file, "--heartbeat-ms", "100",
                                   "--heartbeat-timeout-ms", "1500"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  SpawnOn(0, argv, "coordinator.log");
  const std::string port = WaitForPortFile(port_file);
  ASSERT_FALSE(port.empty()) << "coordinator did not start; logs in " << dir_;
  coordinator_ = "node0:" + port;  // by name, through node0's /etc/hosts
}

pid_t NodesTest::StartWorker(int node, const std::vector<std::string>& flags) {
  std::vector<std::string> argv = {BinaryPath("tessera-worker"), "--coordinator", coordinator_, "--listen", "0.0.0.0:0",
                                   "--threads", "1"};
  argv.insert(argv.end(), flags.begin(), flags.end());
  return SpawnOn(node, argv, "worker-node" + std::to_string(node) + ".log");
}

nlohmann::json NodesTest::Info() {
  const std::string out = dir_ + "/info.json";
  nlohmann::json info = nlohmann::json::object();
  if (ShInto(NodesScript() + " exec 0 " + BinaryPath("tessera") + " info --address " + coordinator_, out)) {
    info = nlohmann::json::parse(ReadFile(out), nullptr, /*allow_exceptions=*/false);
  }
  return info.is_object() ? info : nlohmann::json::object();
}

int NodesTest::ReadyGroups() {
  int ready = 0;
  const nlohmann::json info = Info();
  for (const auto& g : info.value("groups", nlohmann::json::array())) ready += g.value("state", "") == "READY";
  return ready;
}

bool NodesTest::WaitForReadyGroups(int n, int timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (std::chrono::steady_clock::now() < until) {
    if (ReadyGroups() == n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

std::string NodesTest::Client(const std::vector<int32_t>& prompt, int max_tokens, const std::string& name) {
  const std::string out = dir_ + "/" + name + ".out";
  if (!ShInto(NodesScript() + " exec 0 " + BinaryPath("tessera") + " client --address " + coordinator_ + " --ids " +
                  absl::StrJoin(prompt, ",") + " --max-tokens " + std::to_string(max_tokens) +
                  " --temperature 0 --wait-ready 60",
              out)) {
    return "failed";
  }
  std::string line;
  std::getline(std::ifstream(out), line);
  return line;
}

int NodesTest::Load(int prompts, int concurrency, const std::string& name) {
  const std::string out = dir_ + "/" + name + ".out";
  std::system((NodesScript() + " exec 0 " + BinaryPath("tessera-bench") + " serve --address " + coordinator_ +
               " --num-prompts " + std::to_string(prompts) + " --concurrency " + std::to_string(concurrency) +
               " --input-len 24 --output-len 24 > " + out + " 2>&1")
                  .c_str());
  std::smatch m;
  const std::string text = ReadFile(out);
  if (!std::regex_search(text, m, std::regex(R"(successful requests\s+(\d+) \(failed (\d+)\))"))) return -1;
  return std::stoi(m[1]) == prompts ? std::stoi(m[2]) : -1;
}

int64_t NodesTest::RxBytes(int node) {
  const std::string out = dir_ + "/rx";
  ShInto(NodesScript() + " exec " + std::to_string(node) + " cat /sys/class/net/eth0/statistics/rx_bytes", out);
  int64_t n = 0;
  std::ifstream(out) >> n;
  return n;
}

int64_t JsonInt(const nlohmann::json& j) {
  if (j.is_string()) return std::stoll(j.get<std::string>());
  return j.is_number() ? j.get<int64_t>() : 0;
}

std::string GoldenReference(const std::vector<int32_t>& prompt, int n) {
  auto model = models::Model::Load(GoldenModelDir("llama"));
  models::GreedyOptions greedy;
  greedy.max_new_tokens = n;
  return absl::StrJoin(*models::GenerateGreedy(**model, prompt, greedy), ",");
}

}  // namespace tessera::testing
