// tessera serve --model DIR [--workers N] [--listen HOST:PORT] [--http-listen HOST:PORT|off]
//               [--threads-per-worker N] [--kv-memory-mb N] [--kv-cache-dtype D] [--tp N] [--ep M]
//               [--cpu-isa LEVEL] [--batch-invariant] [--embedding-pooling last|mean]
//               [--tool-call-parser none|hermes|llama3_json] [--chat-context-overflow error|truncate|summarize]
//               [--kv-policy full|window|sink-window] [--sink-tokens S] [--window W] [--quiet]
//               [--weight-cache DIR]
//
// Starts tessera-coordinator and N tessera-worker processes (from the directory of
// this binary), prints where it listens, and serves until SIGINT/SIGTERM; then it
// drains the workers (SIGTERM) and stops the coordinator.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/cpu_kernels_flag.h"
#include "kvstore/kv_layout.h"

namespace tessera::cli {
namespace {

namespace fs = std::filesystem;

pid_t Spawn(const std::vector<std::string>& argv) {
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // if `tessera serve` dies, its servers stop too
    // A shell starts background jobs with SIGINT ignored, and exec keeps that: undo it
    // so the servers' own sigwait sees the signals.
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    pthread_sigmask(SIG_SETMASK, &none, nullptr);
    std::vector<char*> cargv;
    for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    std::perror("exec");
    _exit(127);
  }
  return pid;
}

int Fail(const std::string& m) {
  std::cerr << "tessera: " << m << "\n";
  return kUsageExit;
}

}  // namespace

int RunServe(const Args& args, const char* argv0) {
  std::string error;
  if (!CheckFlags(args, {"model", "workers", "listen", "http-listen", "threads-per-worker", "kv-memory-mb",
                         "kv-cache-dtype", "embedding-pooling", "tool-call-parser", "chat-context-overflow", "kv-policy",
                         "sink-tokens", "window", "tp", "ep", "cpu-isa", "batch-invariant", "quiet", "weight-cache"},
                  &error)) {
    return Fail(error);
  }
  if (!args.Has("model")) return Fail("'serve' needs --model DIR");
  int workers, threads, kv_mb, tp, ep;
  const int default_kv_mb = static_cast<int>(kvstore::kDefaultKvMemoryBytes >> 20);
  if (!IntFlag(args, "workers", 2, 1, &workers, &error) || !IntFlag(args, "threads-per-worker", 1, 0, &threads, &error) ||
      !IntFlag(args, "kv-memory-mb", default_kv_mb, 1, &kv_mb, &error) || !IntFlag(args, "tp", 1, 1, &tp, &error) ||
      !IntFlag(args, "ep", 1, 1, &ep, &error)) {
    return Fail(error);
  }
  // Checked here so that a bad level fails once, before any process starts.
  if (absl::Status isa = SelectCpuKernels(args, /*announce=*/false); !isa.ok()) {
    return Fail(std::string(isa.message()));
  }
  if (workers % (tp * ep) != 0) return Fail("--workers must be a multiple of tp x ep (workers per replica group)");
  const fs::path bin = fs::canonical("/proc/self/exe").parent_path();
  (void)argv0;
  const std::string listen = args.Has("listen") ? args.flags.at("listen") : "127.0.0.1:50051";
  const std::string http_listen = args.Has("http-listen") ? args.flags.at("http-listen") : "127.0.0.1:8000";
  const bool http = http_listen != "off";
  const std::string port_file = (fs::temp_directory_path() / absl::StrCat("tessera-serve-", getpid(), ".port")).string();
  const std::string http_port_file = port_file + ".http";
  const std::string internal_port_file = port_file + ".internal";
  // The workers' API on a loopback port of its own: the client port serves clients only.
  const std::string internal_listen = "127.0.0.1:0";
  fs::remove(port_file);
  fs::remove(http_port_file);
  fs::remove(internal_port_file);

  // Ctrl-C and SIGTERM are taken by sigwait below, not by default handlers (and not
  // ignored, as a shell's background job would have them).
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  std::vector<std::string> coordinator_args = {
      (bin / "tessera-coordinator").string(), "--model", args.flags.at("model"), "--listen", listen, "--port-file",
      port_file, "--internal-listen", internal_listen, "--internal-port-file", internal_port_file,
      "--kv-memory-mb", std::to_string(kv_mb), "--tp", std::to_string(tp), "--ep", std::to_string(ep),
      "--batch-invariant", args.Has("batch-invariant") ? "1" : "0"};
  // The coordinator checks their values.
  for (const char* flag : {"kv-cache-dtype", "embedding-pooling", "tool-call-parser", "chat-context-overflow",
                           "kv-policy", "sink-tokens", "window"}) {
    if (args.Has(flag)) coordinator_args.insert(coordinator_args.end(), {absl::StrCat("--", flag), args.flags.at(flag)});
  }
  if (http) coordinator_args.insert(coordinator_args.end(), {"--http-listen", http_listen, "--http-port-file", http_port_file});
  const pid_t coordinator = Spawn(coordinator_args);
  // The coordinator writes each port once it listens; HOST:PORT for clients.
  auto wait_for_port = [coordinator](const std::string& file, const std::string& listen_at) -> std::string {
    std::string port;
    for (int i = 0; i < 600 && port.empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      std::ifstream(file) >> port;
      if (waitpid(coordinator, nullptr, WNOHANG) == coordinator) return "";
    }
    fs::remove(file);
    if (port.empty()) return "";
    const std::string host = listen_at.substr(0, listen_at.rfind(':'));
    return absl::StrCat(host == "0.0.0.0" ? "127.0.0.1" : host, ":", port);
  };
  const std::string address = wait_for_port(port_file, listen);
  if (address.empty()) return Fail("the coordinator did not start (its messages are above)");
  const std::string internal_address = wait_for_port(internal_port_file, internal_listen);
  if (internal_address.empty()) return Fail("the coordinator's workers' API did not start (its messages are above)");
  const std::string http_address = http ? wait_for_port(http_port_file, http_listen) : "";
  if (http && http_address.empty()) return Fail("the coordinator's HTTP API did not start (its messages are above)");
  std::vector<pid_t> worker_pids;
  for (int i = 0; i < workers; ++i) {
    std::vector<std::string> worker_args = {(bin / "tessera-worker").string(), "--coordinator", internal_address, "--threads",
                                            std::to_string(threads)};
    if (args.Has("cpu-isa")) worker_args.insert(worker_args.end(), {"--cpu-isa", args.flags.at("cpu-isa")});
    if (args.Has("quiet")) worker_args.push_back("--quiet");
    if (args.Has("weight-cache")) worker_args.insert(worker_args.end(), {"--weight-cache", args.flags.at("weight-cache")});
    worker_pids.push_back(Spawn(worker_args));
  }
  std::cerr << "tessera: serving " << args.flags.at("model") << " on " << address << " with " << workers
            << " workers (Ctrl-C to stop)\n";
  if (http) std::cerr << "tessera: OpenAI-compatible API on http://" << http_address << "/v1\n";

  while (true) {
    int sig;
    sigwait(&set, &sig);
    if (sig == SIGCHLD) {
      int status;
      pid_t pid;
      while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        if (pid == coordinator) {
          for (pid_t w : worker_pids) kill(w, SIGTERM);
          return Fail("the coordinator exited");
        }
        std::erase(worker_pids, pid);
        std::cerr << "tessera: worker " << pid << " exited\n";
      }
      continue;
    }
    break;
  }
  std::cerr << "tessera: draining workers...\n";
  for (pid_t w : worker_pids) kill(w, SIGTERM);
  for (pid_t w : worker_pids) waitpid(w, nullptr, 0);
  kill(coordinator, SIGTERM);
  waitpid(coordinator, nullptr, 0);
  return 0;
}

}  // namespace tessera::cli
