#include "worker/config.h"

#include "absl/strings/numbers.h"
#include "common/flags.h"
#include "common/log.h"
#include "kernels/cpu_isa.h"

namespace tessera::worker {
namespace {

std::vector<std::string> CpuIsaChoices() {
  std::vector<std::string> names = {"auto"};
  for (kernels::CpuIsa isa : kernels::AllCpuIsas()) names.push_back(kernels::CpuIsaName(isa));
  return names;
}

// The one table: flag, field, unit, help, range.
void AddFlags(FlagTable& t, WorkerConfig* c) {
  t.String("coordinator", &c->coordinator, "HOST:PORT", "the coordinator's address");
  t.RequireLast();
  t.String("listen", &c->listen, "HOST:PORT", "the Worker service (port 0 picks one)");
  t.String("advertise", &c->advertise, "HOST",
           "the address the coordinator and peers reach this worker at (default: the --listen host, or, "
           "when that is 0.0.0.0, the address this host reaches the coordinator from)");
  t.String("kv-listen", &c->kv_listen, "HOST:PORT",
           "where peers fetch this worker's host-tier KV blocks, the data plane (default: the advertised "
           "host, any port)");
  t.Int("tp", &c->tp, "N", "join a tensor-parallel group of N workers (0: the coordinator's --tp)", 0, 4096);
  t.String("group", &c->group, "NAME",
           "form groups only with workers naming the same group (one StatefulSet's pods, one node's devices)");
  t.Int("threads", &c->options.threads, "N", "kernel threads (0: every core this process may use, within its cgroup's CPU limit)", 0, 4096);
  t.String("device", &c->device, "cpu|cuda:N", "where the model runs");
  t.Choice("gpu-collectives", &c->gpu_collectives, {"nccl", "gloo"},
           "how a GPU worker's tensor/expert-parallel group communicates: NCCL, or Gloo over TCP staged "
           "through host memory (GPUs NCCL cannot join, several ranks on one GPU)");
  t.Choice("cpu-isa", &c->cpu_isa, CpuIsaChoices(),
           "CPU kernels: auto (the best this CPU runs) or a level it runs (docs/cpu-kernels.md)");
  t.String("model-root", &c->options.model_root, "DIR",
           "load models only from folders inside DIR (default: any folder the coordinator names)");
  t.String("weight-cache", &c->options.weight_cache_dir, "DIR",
           "keep the weights as packed for this CPU in DIR and read them from there on later starts instead "
           "of packing the checkpoint again (docs/weight-cache.md; default: off)");
  tls::AddInternalFlags(t, &c->internal_tls);
  t.Switch("quiet", &c->options.quiet, "no log lines about loading the model's weights (progress, time, rate)");
  t.Choice("log-format", &c->log_format, {"text", "json"}, "log lines as text or as JSON objects (for log collectors)");
  t.Switch("busy-poll", &c->options.busy_poll,
           "small collectives of a tensor-parallel group spin instead of sleeping (much lower latency; use "
           "when the worker has a core of its own)");
  t.Int("step-delay-ms", &c->options.step_delay_ms, "N", "testing: sleep this long before every step", 0);
  t.HideLast();
}

constexpr char kProgram[] = "tessera-worker";
constexpr char kDescription[] = "tessera-worker: holds a model and executes the coordinator's steps.";

}  // namespace

std::optional<int> ParseWorkerConfig(int argc, const char* const* argv, WorkerConfig* config) {
  *config = WorkerConfig{};
  FlagTable table(kProgram, kDescription);
  AddFlags(table, config);
  if (std::optional<int> exit = table.Parse(argc, argv)) return exit;
  const std::string& device = config->device;
  int cuda_device = -1;
  if (device != "cpu" && !(device.starts_with("cuda:") && absl::SimpleAtoi(device.substr(5), &cuda_device) &&
                           cuda_device >= 0)) {
    log::Info() << "--device must be cpu or cuda:N, got '" << device << "'";
    return kUsageExit;
  }
  config->options.cuda_device = cuda_device;
  config->options.gloo_on_gpu = config->gpu_collectives == "gloo";
  config->options.coordinator_address = config->coordinator;
  return std::nullopt;
}

std::string WorkerHelp() {
  WorkerConfig config;
  FlagTable table(kProgram, kDescription);
  AddFlags(table, &config);
  return table.Help();
}

}  // namespace tessera::worker
