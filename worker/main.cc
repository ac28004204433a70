// tessera-worker: holds a model and executes the coordinator's steps.
//
//   tessera-worker --coordinator HOST:PORT [--listen HOST:PORT] [--device cpu|cuda:N] ...
//
// Every flag is in worker/config.cc (see --help).
//
// Lifecycle: serve the Worker service and the KV data plane, then the coordinator
// session (worker/coordinator_session.h): register, heartbeat, drain.
// A LoadModel this worker can never satisfy (--device cuda:N without that device, or a
// build without CUDA) makes it exit 1 with the reason, instead of rejoining forever.
// SIGTERM (or SIGINT) starts a drain: the coordinator sends no new requests, lets the
// running ones finish, then releases the worker, which exits 0.
#include <grpcpp/grpcpp.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/flags.h"
#include "common/log.h"
#include "common/signals.h"
#include "common/tls.h"
#include "kernels/cpu_isa.h"
#include "kvstore/block_server.h"
#include "tessera/v1/internal/worker.grpc.pb.h"
#include "worker/config.h"
#include "worker/coordinator_session.h"
#include "worker/worker_service.h"

namespace tessera::worker {
namespace {

std::atomic<bool> g_draining{false};

void WaitForSignals(sigset_t set) {
  int sig;
  sigwait(&set, &sig);
  g_draining = true;
}

int Fail(const std::string& m) {
  log::Info() << m;
  return kUsageExit;
}

// The local address this host's packets to `address` (host:port) leave from: a UDP
// socket "connected" there sends nothing, but the kernel picks the route and source.
std::string AddressToward(const std::string& address) {
  const size_t colon = address.rfind(':');
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* found = nullptr;
  if (colon == std::string::npos ||
      getaddrinfo(address.substr(0, colon).c_str(), address.substr(colon + 1).c_str(), &hints, &found) != 0) {
    return "";
  }
  std::string result;
  const int fd = ::socket(found->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_storage local{};
  socklen_t len = sizeof(local);
  char text[INET6_ADDRSTRLEN] = {};
  if (fd >= 0 && ::connect(fd, found->ai_addr, found->ai_addrlen) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0) {
    const void* in = local.ss_family == AF_INET6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(&local)->sin6_addr)
                                                 : static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(&local)->sin_addr);
    if (inet_ntop(local.ss_family, in, text, sizeof(text)) != nullptr) result = text;
  }
  if (fd >= 0) ::close(fd);
  freeaddrinfo(found);
  return result;
}

int Main(int argc, char** argv) {
  // Signals are taken by one thread; blocked everywhere before threads start.
  const sigset_t set = BlockTerminationSignals();
  log::SetProgram("tessera-worker");
  WorkerConfig config;
  if (std::optional<int> exit = ParseWorkerConfig(argc, argv, &config)) return *exit;
  log::ForServer(config.log_format);
  if (absl::Status isa = kernels::SelectCpuIsaNamed(config.cpu_isa, /*announce=*/true); !isa.ok()) {
    return Fail(std::string(isa.message()));
  }
  const std::string& listen = config.listen;
  std::string host = !config.advertise.empty() ? config.advertise : listen.substr(0, listen.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
    // Listening everywhere: peers reach us at the address we reach the coordinator from.
    host = AddressToward(config.coordinator);
    if (host.empty()) return Fail("cannot tell this host's address toward the coordinator; pass --advertise HOST");
  }

  WorkerOptions options = config.options;
  options.host = host;
  absl::StatusOr<std::shared_ptr<const tls::Material>> internal_tls =
      tls::Load(config.internal_tls, tls::Role::kMutual, "internal");
  if (!internal_tls.ok()) return Fail(std::string(internal_tls.status().message()));
  if (*internal_tls) {
    absl::StatusOr<std::shared_ptr<const tls::SocketTls>> data_plane = tls::SocketTls::Create(**internal_tls);
    if (!data_plane.ok()) return Fail(std::string(data_plane.status().message()));
    options.internal_tls = *internal_tls;
    options.data_plane_tls = *data_plane;
  }
  WorkerService service(options);
  grpc::EnableDefaultHealthCheckService(true);  // probes (Kubernetes gRPC probes need no shell)
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, tls::ServerCredentials(options.internal_tls.get(), /*mutual=*/true), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail(absl::StrCat("cannot listen on ", listen));
  const std::string address = absl::StrCat(host, ":", port);
  // The KV data plane: peers fetch this worker's host-tier blocks here.
  const std::string kv_listen = !config.kv_listen.empty() ? config.kv_listen : absl::StrCat(host, ":0");
  const size_t kv_colon = kv_listen.rfind(':');
  int kv_port = 0;
  if (kv_colon == std::string::npos || !absl::SimpleAtoi(kv_listen.substr(kv_colon + 1), &kv_port)) {
    return Fail(absl::StrCat("--kv-listen needs HOST:PORT, got '", kv_listen, "'"));
  }
  auto block_server = kvstore::BlockServer::Start(kv_listen.substr(0, kv_colon), kv_port, &service.host_tier(),
                                                  options.data_plane_tls);
  if (!block_server.ok()) return Fail(std::string(block_server.status().message()));
  const std::string kv_address = absl::StrCat(host, ":", (*block_server)->port());

  std::thread signals(WaitForSignals, set);
  signals.detach();

  auto coordinator = v1::internal::Coordinator::NewStub(tls::Dial(config.coordinator, options.internal_tls.get()));
  SessionOptions session_options;
  session_options.address = address;
  session_options.kv_address = kv_address;
  session_options.tp = config.tp;
  session_options.group = config.group;
  CoordinatorSession session(coordinator.get(), &service, block_server->get(), session_options);
  const absl::Status ended = session.Run(g_draining);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  if (ended.code() == absl::StatusCode::kInvalidArgument) return Fail(std::string(ended.message()));
  if (!ended.ok()) {
    log::Info() << ended.message();
    return 1;
  }
  log::Info() << "drained, exiting";
  return 0;
}

}  // namespace
}  // namespace tessera::worker

int main(int argc, char** argv) { return tessera::worker::Main(argc, argv); }
