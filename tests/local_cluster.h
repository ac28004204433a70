// LocalCluster: a real tessera-coordinator and tessera-worker processes on loopback,
// for integration tests. Everything it starts is killed and reaped on destruction.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tessera/v1/tessera.grpc.pb.h"

namespace grpc {
class Channel;
}

namespace tessera::testing {

// Starts `argv` (argv[0] a path) as a child that dies with the test, its stderr
// appended to `log`. It dies with the thread that started it (PR_SET_PDEATHSIG), so
// start processes (AddWorker, RestartCoordinator) from the test's own thread.
pid_t SpawnProcess(const std::vector<std::string>& argv, const std::string& log);
// A tessera binary of this build.
std::string BinaryPath(const std::string& name);
// Waits for a --port-file to appear; its port, or "" after 10 s.
std::string WaitForPortFile(const std::string& path);

struct LocalClusterOptions {
  std::string model_dir;
  int workers = 1;
  std::vector<std::string> coordinator_flags;  // extra flags, e.g. {"--max-queue", "2"}
  std::vector<std::string> worker_flags;       // extra flags, e.g. {"--step-delay-ms", "20"}
  // The workers' API on a port of its own (--internal-listen); the workers dial it.
  bool internal_port = false;
  // TLS to the client API, verifying its certificate against this CA file ("" : plaintext).
  std::string client_ca;
  // The key Info() and the Wait* helpers send ("" : none).
  std::string api_key;
  // The OpenAI-compatible HTTP API too, on a port of its own (http_port()).
  bool http = false;
};

class LocalCluster {
 public:
  explicit LocalCluster(LocalClusterOptions options);
  ~LocalCluster();

  const std::string& address() const { return address_; }
  int http_port() const { return http_port_; }  // with options.http
  pid_t coordinator_pid() const { return coordinator_; }
  // Where the processes' logs are (coordinator.log, ...).
  const std::string& log_dir() const { return dir_; }
  // The workers' API: the client port, or the internal one with `internal_port`.
  const std::string& internal_address() const { return internal_address_; }
  // A channel to the client port (TLS with `client_ca`).
  std::shared_ptr<grpc::Channel> Channel() const;
  std::unique_ptr<v1::TesseraService::Stub> Stub() const;

  // Starts a worker with the options' worker flags and `extra_flags`.
  pid_t AddWorker(const std::vector<std::string>& extra_flags = {});
  // Kills the coordinator (SIGKILL) and starts a new one on the same port: the
  // workers find it on their next heartbeat.
  void RestartCoordinator();
  const std::vector<pid_t>& workers() const { return workers_; }
  // Sends `sig` to a worker; returns its exit status when `wait` (else -1).
  int Signal(pid_t worker, int sig, bool wait);
  // Waits for some worker to exit (reaping it); its exit status, or -1 on timeout.
  int WaitForAnyWorkerExit(std::chrono::seconds timeout);
  // Waits until `n` workers have registered.
  bool WaitForRegistered(int n, std::chrono::seconds timeout = std::chrono::seconds(30)) const;
  // Waits until GetServerInfo lists `n` READY groups.
  bool WaitForReadyGroups(int n, std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  v1::ServerInfo Info() const;

 private:
  void StartCoordinator(const std::string& listen);

  LocalClusterOptions options_;
  std::string dir_;
  std::string address_;
  std::string internal_address_;
  int http_port_ = 0;
  pid_t coordinator_ = -1;
  std::vector<pid_t> workers_;
};

}  // namespace tessera::testing
