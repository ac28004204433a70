// tessera-coordinator: takes client requests over gRPC and drives the workers.
//
//   tessera-coordinator --model DIR [--listen HOST:PORT] [--port-file FILE] ...
//
// See --help for every flag. SIGTERM or SIGINT stops it.
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>

#include "absl/strings/str_cat.h"
#include "cli/args.h"
#include "cli/signals.h"
#include "coordinator/cluster.h"
#include "coordinator/frontend.h"
#include "models/model_spec.h"
#include "models/sharding.h"
#include "tokenizer/tokenizer.h"

namespace tessera::coordinator {
namespace {

constexpr char kUsage[] = R"(usage: tessera-coordinator --model DIR [flags]

  --model DIR              HuggingFace model folder (the workers load the same path)
  --model-name NAME        name clients use (default: the folder's name)
  --listen HOST:PORT       client and worker API (default 127.0.0.1:50051; port 0 picks one)
  --port-file FILE         write the port actually bound to FILE
  --block-size N           KV cache tokens per block (default 16)
  --kv-memory-mb N         KV cache per worker, MiB (default 256)
  --kv-blocks N            KV cache blocks per worker (overrides --kv-memory-mb)
  --max-step-tokens N      tokens computed per step, chunked prefill budget (default 512)
  --max-running N          sequences per batch (default 256)
  --max-queue N            waiting requests before RESOURCE_EXHAUSTED (default 1024)
  --heartbeat-ms N         worker heartbeat interval (default 500)
  --heartbeat-timeout-ms N drop a worker silent this long (default 3000)
  --tp N                   tensor parallelism: workers per replica group (default 1)
  --ep M                   expert parallelism (MoE models): groups of tp x ep workers (default 1)
  --collective-timeout-ms N  a rank's collectives give up after this (default 10000)
  --prefix-caching 0|1     reuse cached KV blocks of equal prefixes (default 1)
  --batch-invariant 0|1    every request's tokens independent of the batch it runs in:
                           exact fp32-activation matmuls for every batch size (default 0)
  --host-kv-blocks N       host tier per worker: full blocks are written through to it,
                           so evicted prefixes survive and other groups (other nodes)
                           can fetch them over the KV data plane (default 0: none)

Every flag may instead come from the environment: --kv-memory-mb from
TESSERA_KV_MEMORY_MB, and so on (the command line wins).
)";

int Fail(const std::string& m) {
  std::cerr << "tessera-coordinator: " << m << "\n";
  return cli::kUsageError;
}

int Main(int argc, char** argv) {
  const sigset_t set = cli::BlockTerminationSignals();
  cli::Args args;
  std::string error;
  if (!cli::ParseProgramArgs(argc, argv, "tessera-coordinator", {"help"}, &args, &error)) return Fail(error);
  if (args.Has("help")) {
    std::cout << kUsage;
    return 0;
  }
  const std::set<std::string> flags = {"model", "model-name", "listen", "port-file", "block-size", "kv-memory-mb",
                                       "kv-blocks", "max-step-tokens", "max-running", "max-queue", "heartbeat-ms",
                                       "heartbeat-timeout-ms", "tp", "ep", "collective-timeout-ms", "prefix-caching",
                                       "host-kv-blocks", "batch-invariant"};
  if (!cli::CheckFlags(args, flags, &error)) return Fail(error);
  cli::FlagsFromEnvironment(flags, {}, &args);
  if (!args.Has("model")) return Fail("needs --model DIR");
  const std::string model_dir = std::filesystem::absolute(args.flags.at("model")).string();
  int block_size, kv_mb, kv_blocks, step_tokens, max_running, max_queue, hb_ms, hb_timeout_ms, tp, ep, coll_ms,
      prefix_caching, host_blocks, batch_invariant;
  if (!cli::IntFlag(args, "block-size", 16, 1, &block_size, &error) ||
      !cli::IntFlag(args, "kv-memory-mb", 256, 1, &kv_mb, &error) ||
      !cli::IntFlag(args, "kv-blocks", 0, 0, &kv_blocks, &error) ||
      !cli::IntFlag(args, "max-step-tokens", 512, 1, &step_tokens, &error) ||
      !cli::IntFlag(args, "max-running", 256, 1, &max_running, &error) ||
      !cli::IntFlag(args, "max-queue", 1024, 1, &max_queue, &error) ||
      !cli::IntFlag(args, "heartbeat-ms", 500, 10, &hb_ms, &error) ||
      !cli::IntFlag(args, "heartbeat-timeout-ms", 3000, 50, &hb_timeout_ms, &error) ||
      !cli::IntFlag(args, "tp", 1, 1, &tp, &error) || !cli::IntFlag(args, "ep", 1, 1, &ep, &error) ||
      !cli::IntFlag(args, "collective-timeout-ms", 10000, 100, &coll_ms, &error) ||
      !cli::IntFlag(args, "prefix-caching", 1, 0, &prefix_caching, &error) ||
      !cli::IntFlag(args, "host-kv-blocks", 0, 0, &host_blocks, &error) ||
      !cli::IntFlag(args, "batch-invariant", 0, 0, &batch_invariant, &error)) {
    return Fail(error);
  }
  auto spec = models::LoadModelSpec(model_dir);
  if (!spec.ok()) return Fail(std::string(spec.status().message()));
  if (auto shard = models::ShardLayout::For(*spec, {0, tp}, {0, ep}); !shard.ok()) {
    return Fail(std::string(shard.status().message()));
  }
  // A folder without tokenizer.json is served with token ids only.
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  if (std::filesystem::exists(std::filesystem::path(model_dir) / "tokenizer.json")) {
    auto tok = tokenizer::Tokenizer::Load(model_dir);
    if (!tok.ok()) return Fail(std::string(tok.status().message()));
    tokenizer = std::move(*tok);
  }

  ClusterOptions cluster_options;
  cluster_options.group.model_dir = model_dir;
  cluster_options.group.tp = tp;
  cluster_options.group.ep = ep;
  cluster_options.group.collective_timeout_ms = coll_ms;
  cluster_options.group.prefix_caching = prefix_caching != 0;
  cluster_options.group.num_host_kv_blocks = host_blocks;
  cluster_options.group.batch_invariant = batch_invariant != 0;
  cluster_options.group.block_size = block_size;
  cluster_options.group.num_kv_blocks = kv_blocks;
  cluster_options.group.kv_memory_bytes = static_cast<int64_t>(kv_mb) << 20;
  cluster_options.group.max_step_tokens = step_tokens;
  cluster_options.group.max_running = max_running;
  cluster_options.heartbeat_interval = std::chrono::milliseconds(hb_ms);
  cluster_options.heartbeat_timeout = std::chrono::milliseconds(hb_timeout_ms);
  cluster_options.check_group_shape = [&spec](int group_tp, int group_ep) {
    return models::ShardLayout::For(*spec, {0, group_tp}, {0, group_ep}).status();
  };
  Cluster cluster(cluster_options);

  FrontendOptions frontend_options;
  frontend_options.model_name =
      args.Has("model-name") ? args.flags.at("model-name") : std::filesystem::path(model_dir).filename().string();
  frontend_options.max_queue = max_queue;
  frontend_options.tensor_parallel = tp;
  frontend_options.expert_parallel = ep;
  frontend_options.batch_invariant = batch_invariant != 0;
  Frontend frontend(frontend_options, *spec, std::move(tokenizer), &cluster);

  grpc::EnableDefaultHealthCheckService(true);
  const std::string listen = args.Has("listen") ? args.flags.at("listen") : "127.0.0.1:50051";
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&frontend);
  builder.RegisterService(&cluster);
  // A worker's KV snapshot (after a coordinator restart) lists every host-tier block:
  // ~36 bytes each, so a large host tier's heartbeat outgrows gRPC's 4 MB default.
  builder.SetMaxReceiveMessageSize(256 << 20);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server || port == 0) return Fail(absl::StrCat("cannot listen on ", listen));
  if (args.Has("port-file")) {
    const std::string path = args.flags.at("port-file");
    std::ofstream(path + ".tmp") << port << "\n";
    std::filesystem::rename(path + ".tmp", path);  // readers never see a partial file
  }
  std::cerr << "tessera-coordinator: serving " << frontend_options.model_name << " on port " << port << "\n";

  int sig;
  sigwait(&set, &sig);
  std::cerr << "tessera-coordinator: shutting down\n";
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  return 0;
}

}  // namespace
}  // namespace tessera::coordinator

int main(int argc, char** argv) { return tessera::coordinator::Main(argc, argv); }
