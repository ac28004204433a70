#include "tests/local_cluster.h"

#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "tests/safetensors_writer.h"

namespace tessera::testing {

pid_t SpawnProcess(const std::vector<std::string>& argv, const std::string& log) {
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test, even if it crashes
    FILE* f = std::freopen(log.c_str(), "a", stderr);
    (void)f;
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }
  return pid;
}

std::string BinaryPath(const std::string& name) { return std::string(TESSERA_BIN_DIR) + "/" + name; }

std::string WaitForPortFile(const std::string& path) {
  std::string port;
  for (int i = 0; i < 400 && port.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
    std::ifstream(path) >> port;
  }
  return port;
}

LocalCluster::LocalCluster(LocalClusterOptions options) : options_(std::move(options)) {
  dir_ = MakeTempDir("cluster");
  StartCoordinator("127.0.0.1:0");
  for (int i = 0; i < options_.workers; ++i) AddWorker();
}

void LocalCluster::StartCoordinator(const std::string& listen) {
  const std::string port_file = dir_ + "/port";
  std::filesystem::remove(port_file);
  std::vector<std::string> argv = {BinaryPath("tessera-coordinator"), "--model", options_.model_dir, "--listen",
                                   listen, "--port-file", port_file, "--heartbeat-ms", "100",
                                   "--heartbeat-timeout-ms", "1500", "--kv-memory-mb", "64"};
  const std::string internal_port_file = dir_ + "/internal-port";
  if (options_.internal_port) {
    std::filesystem::remove(internal_port_file);
    const std::string port = internal_address_.empty() ? "0" : internal_address_.substr(internal_address_.rfind(':') + 1);
    argv.insert(argv.end(), {"--internal-listen", "127.0.0.1:" + port, "--internal-port-file", internal_port_file});
  }
  const std::string http_port_file = dir_ + "/http-port";
  if (options_.http) {
    std::filesystem::remove(http_port_file);
    const std::string port = http_port_ ? std::to_string(http_port_) : "0";
    argv.insert(argv.end(), {"--http-listen", "127.0.0.1:" + port, "--http-port-file", http_port_file});
  }
  argv.insert(argv.end(), options_.coordinator_flags.begin(), options_.coordinator_flags.end());
  coordinator_ = SpawnProcess(argv, dir_ + "/coordinator.log");
  const std::string port = WaitForPortFile(port_file);
  if (port.empty()) throw std::runtime_error("coordinator did not start; see " + dir_);
  address_ = "127.0.0.1:" + port;
  internal_address_ = address_;
  if (options_.internal_port) {
    const std::string internal = WaitForPortFile(internal_port_file);
    if (internal.empty()) throw std::runtime_error("coordinator's internal port did not open; see " + dir_);
    internal_address_ = "127.0.0.1:" + internal;
  }
  if (options_.http) {
    const std::string http = WaitForPortFile(http_port_file);
    if (http.empty()) throw std::runtime_error("coordinator's HTTP API did not start; see " + dir_);
    http_port_ = std::stoi(http);
  }
}

void LocalCluster::RestartCoordinator() {
  kill(coordinator_, SIGKILL);
  waitpid(coordinator_, nullptr, 0);
  StartCoordinator(address_);
}

LocalCluster::~LocalCluster() {
  for (pid_t w : workers_) kill(w, SIGKILL);
  if (coordinator_ > 0) kill(coordinator_, SIGKILL);
  for (pid_t w : workers_) waitpid(w, nullptr, 0);
  if (coordinator_ > 0) waitpid(coordinator_, nullptr, 0);
  if (std::getenv("TESSERA_KEEP_TEST_LOGS") == nullptr) std::filesystem::remove_all(dir_);
}

std::shared_ptr<grpc::Channel> LocalCluster::Channel() const {
  if (options_.client_ca.empty()) return grpc::CreateChannel(address_, grpc::InsecureChannelCredentials());
  std::ifstream in(options_.client_ca);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return grpc::CreateChannel(address_, grpc::SslCredentials(tls));
}

std::unique_ptr<v1::TesseraService::Stub> LocalCluster::Stub() const { return v1::TesseraService::NewStub(Channel()); }

pid_t LocalCluster::AddWorker(const std::vector<std::string>& extra_flags) {
  std::vector<std::string> argv = {BinaryPath("tessera-worker"), "--coordinator", internal_address_, "--threads", "1"};
  argv.insert(argv.end(), options_.worker_flags.begin(), options_.worker_flags.end());
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  const pid_t pid = SpawnProcess(argv, dir_ + "/workers.log");
  workers_.push_back(pid);
  return pid;
}

int LocalCluster::Signal(pid_t worker, int sig, bool wait) {
  kill(worker, sig);
  if (!wait) return -1;
  int status = 0;
  waitpid(worker, &status, 0);
  std::erase(workers_, worker);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int LocalCluster::WaitForAnyWorkerExit(std::chrono::seconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    for (pid_t w : workers_) {
      int status = 0;
      if (waitpid(w, &status, WNOHANG) == w) {
        std::erase(workers_, w);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

v1::ServerInfo LocalCluster::Info() const {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  if (!options_.api_key.empty()) ctx.AddMetadata("authorization", "Bearer " + options_.api_key);
  v1::ServerInfo info;
  Stub()->GetServerInfo(&ctx, v1::GetServerInfoRequest(), &info);
  return info;
}

bool LocalCluster::WaitForRegistered(int n, std::chrono::seconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    if (Info().registered_workers() >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

bool LocalCluster::WaitForReadyGroups(int n, std::chrono::seconds timeout) const {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    int ready = 0;
    const v1::ServerInfo info = Info();
    for (const auto& g : info.groups()) ready += g.state() == "READY";
    if (ready >= n) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

}  // namespace tessera::testing
