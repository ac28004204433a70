// tessera-worker: holds a model and executes the coordinator's steps.
//
//   tessera-worker --coordinator HOST:PORT [--listen HOST:PORT] [--advertise HOST]
//                  [--kv-listen HOST:PORT] [--tp N] [--group NAME] [--threads N] [--device cpu|cuda:N]
//                  [--gpu-collectives nccl|gloo] [--busy-poll] [--step-delay-ms N]
//
// --advertise: the address the coordinator and peers reach this worker at (default:
// the --listen host, or, when that is 0.0.0.0, the address this host reaches the
// coordinator from).
//
// --kv-listen: where peers fetch this worker's host-tier KV blocks (the data plane;
// default: the advertised host, any port). --tp: join a tensor-parallel group of N
// workers (default: the coordinator's --tp). --group: form groups only with workers
// naming the same group (one StatefulSet's pods, one node's devices).
// --gpu-collectives: how a GPU worker's tensor/expert-parallel group communicates:
// NCCL (default), or Gloo over TCP staged through host memory (GPUs NCCL cannot join,
// several ranks on one GPU). --busy-poll: small collectives of a tensor-parallel group spin instead of sleeping
// (much lower latency; use when the worker has a core of its own).
//
// Lifecycle: serve the Worker service, register with the coordinator, heartbeat.
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
#include <iostream>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/cpu_kernels_flag.h"
#include "cli/signals.h"
#include "kvstore/block_transfer.h"
#include "tessera/v1/worker.grpc.pb.h"
#include "worker/worker_service.h"

namespace tessera::worker {
namespace {

using Clock = std::chrono::steady_clock;

std::atomic<bool> g_draining{false};

void WaitForSignals(sigset_t set) {
  int sig;
  sigwait(&set, &sig);
  g_draining = true;
}

int Fail(const std::string& m) {
  std::cerr << "tessera-worker: " << m << "\n";
  return cli::kUsageError;
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
  const sigset_t set = cli::BlockTerminationSignals();
  cli::Args args;
  std::string error;
  if (!cli::ParseProgramArgs(argc, argv, "tessera-worker", {"help", "busy-poll"}, &args, &error)) return Fail(error);
  if (args.Has("help")) {
    std::cout << "usage: tessera-worker --coordinator HOST:PORT [--listen HOST:PORT] [--advertise HOST]"
                 " [--kv-listen HOST:PORT] [--tp N] [--group NAME] [--threads N] [--device cpu|cuda:N]"
                 " [--gpu-collectives nccl|gloo] [--cpu-isa LEVEL] [--busy-poll] [--step-delay-ms N (testing)]\n"
              << cli::kCpuIsaHelp << "\n"
              << "Every flag may instead come from the environment: --kv-listen from TESSERA_KV_LISTEN, and so on\n"
                 "(the command line wins; switches take 1 or true).\n";
    return 0;
  }
  const std::set<std::string> flags = {"coordinator", "listen",    "advertise",        "kv-listen",
                                       "tp",          "group",     "threads",          "device",
                                       "step-delay-ms", "busy-poll", "gpu-collectives",
                                       "cpu-isa"};
  if (!cli::CheckFlags(args, flags, &error)) return Fail(error);
  cli::FlagsFromEnvironment(flags, {"busy-poll"}, &args);
  if (!args.Has("coordinator")) return Fail("needs --coordinator HOST:PORT");
  int threads, step_delay_ms, tp;
  if (!cli::IntFlag(args, "threads", 0, 0, &threads, &error) || !cli::IntFlag(args, "tp", 0, 0, &tp, &error) ||
      !cli::IntFlag(args, "step-delay-ms", 0, 0, &step_delay_ms, &error)) {
    return Fail(error);
  }
  const std::string device = args.Has("device") ? args.flags.at("device") : "cpu";
  int cuda_device = -1;
  if (device != "cpu" && !(device.starts_with("cuda:") && absl::SimpleAtoi(device.substr(5), &cuda_device) &&
                           cuda_device >= 0)) {
    return Fail(absl::StrCat("--device must be cpu or cuda:N, got '", device, "'"));
  }
  const std::string collectives = args.Has("gpu-collectives") ? args.flags.at("gpu-collectives") : "nccl";
  if (collectives != "nccl" && collectives != "gloo") {
    return Fail(absl::StrCat("--gpu-collectives must be nccl or gloo, got '", collectives, "'"));
  }
  if (absl::Status isa = cli::SelectCpuKernels(args, "tessera-worker", /*announce=*/true); !isa.ok()) {
    return Fail(std::string(isa.message()));
  }
  const std::string listen = args.Has("listen") ? args.flags.at("listen") : "127.0.0.1:0";
  std::string host = args.Has("advertise") ? args.flags.at("advertise") : listen.substr(0, listen.rfind(':'));
  if (host == "0.0.0.0" || host == "[::]" || host.empty()) {
    // Listening everywhere: peers reach us at the address we reach the coordinator from.
    host = AddressToward(args.flags.at("coordinator"));
    if (host.empty()) return Fail("cannot tell this host's address toward the coordinator; pass --advertise HOST");
  }

  WorkerOptions options;
  options.threads = threads;
  options.cuda_device = cuda_device;
  options.gloo_on_gpu = collectives == "gloo";
  options.step_delay_ms = step_delay_ms;
  options.coordinator_address = args.flags.at("coordinator");
  options.host = host;
  options.busy_poll = args.Has("busy-poll");
  WorkerService service(options);
  grpc::EnableDefaultHealthCheckService(true);  // probes (Kubernetes gRPC probes need no shell)
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(64 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail(absl::StrCat("cannot listen on ", listen));
  const std::string address = absl::StrCat(host, ":", port);
  // The KV data plane: peers fetch this worker's host-tier blocks here.
  const std::string kv_listen = args.Has("kv-listen") ? args.flags.at("kv-listen") : absl::StrCat(host, ":0");
  const size_t kv_colon = kv_listen.rfind(':');
  int kv_port = 0;
  if (kv_colon == std::string::npos || !absl::SimpleAtoi(kv_listen.substr(kv_colon + 1), &kv_port)) {
    return Fail(absl::StrCat("--kv-listen needs HOST:PORT, got '", kv_listen, "'"));
  }
  auto block_server = kvstore::BlockServer::Start(kv_listen.substr(0, kv_colon), kv_port, &service.host_tier());
  if (!block_server.ok()) return Fail(std::string(block_server.status().message()));
  const std::string kv_address = absl::StrCat(host, ":", (*block_server)->port());

  std::thread signals(WaitForSignals, set);
  signals.detach();

  auto coordinator = v1::internal::Coordinator::NewStub(
      grpc::CreateChannel(args.flags.at("coordinator"), grpc::InsecureChannelCredentials()));
  std::string worker_id;
  auto interval = std::chrono::milliseconds(500);
  auto last_contact = Clock::now();
  while (true) {
    if (worker_id.empty()) {
      v1::internal::RegisterRequest req;
      req.set_address(address);
      req.set_device(device);
      req.set_threads(threads);
      req.set_tp(tp);
      if (args.Has("group")) req.set_group(args.flags.at("group"));
      req.set_memory_bytes(static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE));
      v1::internal::RegisterResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      const grpc::Status registered = coordinator->Register(&ctx, req, &resp);
      if (registered.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
        return Fail(absl::StrCat("the coordinator refused this worker: ", registered.error_message()));
      }
      if (registered.ok()) {
        worker_id = resp.worker_id();
        interval = std::chrono::milliseconds(std::max(50, resp.heartbeat_interval_ms()));
        last_contact = Clock::now();
        std::cerr << "tessera-worker: registered as " << worker_id << " at " << address << "\n";
      }
    } else {
      v1::internal::HeartbeatRequest req;
      req.set_worker_id(worker_id);
      req.set_draining(g_draining);
      const bool reports_kv = service.host_tier().num_blocks() > 0;
      if (reports_kv) service.host_tier().FillEvents(kv_address, req.mutable_kv());
      v1::internal::HeartbeatResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
      if (coordinator->Heartbeat(&ctx, req, &resp).ok()) {
        last_contact = Clock::now();
        if (reports_kv) service.host_tier().Ack(resp.kv_acked_seq(), resp.kv_resync());
        if (resp.release()) break;
        if (!resp.known()) worker_id.clear();  // the coordinator restarted: register again
      }
    }
    // Draining with no coordinator to drain through: nothing can be running, exit.
    if (g_draining && Clock::now() - last_contact > std::chrono::seconds(10)) break;
    if (const std::optional<std::string> fatal = service.fatal_error()) {
      std::cerr << "tessera-worker: cannot run the model it was given: " << *fatal << "\n";
      server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
      return 1;
    }
    std::this_thread::sleep_for(interval);
  }
  std::cerr << "tessera-worker: drained, exiting\n";
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

}  // namespace
}  // namespace tessera::worker

int main(int argc, char** argv) { return tessera::worker::Main(argc, argv); }
