// The worker's configuration: every flag of tessera-worker, typed, with its default
// taken from the options struct it fills (one place per default).
#pragma once

#include <optional>
#include <string>

#include "worker/worker_service.h"

namespace tessera::worker {

struct WorkerConfig {
  std::string coordinator;         // HOST:PORT of the coordinator's worker API
  std::string listen = "127.0.0.1:0";
  std::string advertise;           // "" : the --listen host, or the route toward the coordinator
  std::string kv_listen;           // "" : the advertised host, any port
  int tp = 0;                      // 0: the coordinator's --tp
  std::string group;               // form groups only with workers naming the same group
  std::string device = "cpu";      // cpu or cuda:N
  std::string gpu_collectives = "nccl";
  std::string cpu_isa = "auto";
  std::string log_format = "text";  // text or json lines
  tls::Files internal_tls;         // mutual TLS on the internal plane ("" : plaintext)
  WorkerOptions options;           // threads, busy_poll, step_delay_ms; cuda_device and
                                   // gloo_on_gpu from --device and --gpu-collectives
};

// Fills `config` from the command line and TESSERA_* variables. Returns the status to
// exit with when the process should stop (after --help, --version or a bad flag; the
// message already printed), nullopt to go on.
std::optional<int> ParseWorkerConfig(int argc, const char* const* argv, WorkerConfig* config);

// tessera-worker --help.
std::string WorkerHelp();

}  // namespace tessera::worker
